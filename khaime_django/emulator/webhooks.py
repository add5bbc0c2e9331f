"""Webhook delivery: a small pool of sender threads, Khaime's retry rules, and the faults.

Delivery never runs on the buyer's request. ``webhook_workers`` threads (a real provider sends
concurrently too) take due deliveries from one queue. Each *delivery* (one copy of one event to
one URL) makes up to ``webhook_attempts`` attempts, ``webhook_retry_delay`` seconds apart; any 2xx
ends it. Retries are re-scheduled rather than slept on, so a failing receiver does not hold back
other events (as with real retries, a retried event can therefore land after a later one). A
delivery is *finished* when it succeeded or used its last attempt; ``wait_for_finished`` counts
those.

``webhook_order="shuffled"``: a new delivery is held back for ``SHUFFLE_WINDOW`` seconds counted
from the first held one; when the window closes, everything held is released in a random order
(drawn from ``seed``). Events produced together, e.g. by a test that completes five sessions in a
row, therefore arrive out of order, and an event produced alone arrives ``SHUFFLE_WINDOW`` late.

What the receiver answered is not kept beyond its status code: the emulator must not become a
way to read the answers of whatever a webhook URL points at.
"""

from __future__ import annotations

import heapq
import http.client
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from .events import API_VERSION, Event, khaime_sign
from .timestamps import iso_millis, utcnow

SHUFFLE_WINDOW = 0.3

logger = logging.getLogger("khaime_django.emulator")


@dataclass
class _Delivery:
    delivery_id: int
    event: Event
    url: str
    signature: str
    max_attempts: int
    retry_delay: float
    timeout: float
    generation: int
    attempt: int = 0

    def headers(self) -> dict:
        return {
            "Content-Type": "application/json",
            "User-Agent": "khaime-emulator-webhooks",
            "X-Khaime-Signature": self.signature,
            "X-Khaime-Event": self.event.event_type,
            "X-Khaime-Event-Id": self.event.event_id,
            "X-Khaime-Api-Version": API_VERSION,
        }


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect answers the delivery with a 3xx, i.e. a failure; Khaime does not follow it."""

    def redirect_request(self, *args, **kwargs):
        return None


# No proxies: webhooks from the emulator go straight to the (normally local) receiver.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _RefuseRedirects())


class WebhookDispatcher:
    def __init__(self, seed: int | None = None):
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, _Delivery]] = []  # heap of (due, sequence, delivery)
        self._held: list[_Delivery] = []
        self._release_at: float | None = None
        self._sequence = 0
        self._generation = 0
        self._attempts: list[dict] = []
        self._finished = 0
        self._random = random.Random(seed)
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._longest_timeout = 0.0

    # --- lifecycle ---

    def start(self, workers: int) -> None:
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, name=f"khaime-emulator-webhooks-{number}", daemon=True)
            for number in range(1, workers + 1)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the senders; an attempt in flight may take up to its timeout to give up."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + self._longest_timeout + 1
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def reset(self, seed: int | None) -> None:
        """Drop everything queued or recorded; an attempt in flight is not recorded."""
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self._held.clear()
            self._release_at = None
            self._attempts.clear()
            self._finished = 0
            self._random.seed(seed)
            self._cond.notify_all()

    def reseed(self, seed: int | None) -> None:
        with self._cond:
            self._random.seed(seed)

    # --- producing ---

    def enqueue(self, event: Event, config) -> None:
        signature = khaime_sign(event.body, config.webhook_secret)
        copies = 2 if config.duplicate_webhooks else 1
        with self._cond:
            self._longest_timeout = max(self._longest_timeout, config.webhook_timeout)
            now = time.monotonic()
            for _ in range(copies):
                self._sequence += 1
                delivery = _Delivery(
                    delivery_id=self._sequence,
                    event=event,
                    url=config.webhook_url,
                    signature=signature,
                    max_attempts=config.webhook_attempts,
                    retry_delay=config.webhook_retry_delay,
                    timeout=config.webhook_timeout,
                    generation=self._generation,
                )
                if config.webhook_order == "shuffled":
                    if not self._held:
                        self._release_at = now + SHUFFLE_WINDOW
                    self._held.append(delivery)
                else:
                    self._schedule(delivery, now)
            self._cond.notify_all()

    # --- observing ---

    def attempts(self) -> list[dict]:
        with self._cond:
            return [dict(attempt) for attempt in self._attempts]

    def wait_for_finished(self, count: int, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._finished >= count, timeout):
                raise TimeoutError(f"{self._finished} of {count} webhook deliveries finished within {timeout} s")

    # --- the worker ---

    def _schedule(self, delivery: _Delivery, due: float) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (due, self._sequence, delivery))

    def _release_held(self, now: float) -> None:
        if self._held and self._release_at is not None and now >= self._release_at:
            self._random.shuffle(self._held)
            for delivery in self._held:
                self._schedule(delivery, now)
            self._held.clear()
            self._release_at = None

    def _next_due(self) -> _Delivery | None:
        """Block until a delivery is due (returned) or the dispatcher stops (None)."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                self._release_held(now)
                if self._queue and self._queue[0][0] <= now:
                    return heapq.heappop(self._queue)[2]
                wake_times = [self._queue[0][0]] if self._queue else []
                if self._release_at is not None:
                    wake_times.append(self._release_at)
                self._cond.wait(min(wake_times) - now if wake_times else None)
            return None

    def _run(self) -> None:
        while (delivery := self._next_due()) is not None:
            delivery.attempt += 1
            sent_at = utcnow()
            started = time.monotonic()
            status_code, error = _post(delivery)
            succeeded = status_code is not None and 200 <= status_code < 300
            record = {
                "delivery_id": delivery.delivery_id,
                "event_id": delivery.event.event_id,
                "event_type": delivery.event.event_type,
                "url": delivery.url,
                "attempt": delivery.attempt,
                "status_code": status_code,
                "error": error,
                "succeeded": succeeded,
                "sent_at": iso_millis(sent_at),
                "duration_ms": round((time.monotonic() - started) * 1000),
            }
            logger.info(
                "webhook %s %s -> %s attempt %d/%d: %s",
                delivery.event.event_type,
                delivery.event.event_id,
                delivery.url,
                delivery.attempt,
                delivery.max_attempts,
                status_code if status_code is not None else error,
            )
            with self._cond:
                if delivery.generation != self._generation:
                    continue  # reset() happened while this attempt was in flight
                self._attempts.append(record)
                if succeeded or delivery.attempt >= delivery.max_attempts:
                    self._finished += 1
                    self._cond.notify_all()
                else:
                    self._schedule(delivery, time.monotonic() + delivery.retry_delay)


def _post(delivery: _Delivery) -> tuple[int | None, str | None]:
    """POST the event; answer (status code or None, transport error). The body is not read."""
    request = urllib.request.Request(
        delivery.url,
        data=delivery.event.body,
        headers=delivery.headers(),
        method="POST",
    )
    try:
        with _opener.open(request, timeout=delivery.timeout) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, None
    except urllib.error.URLError as exc:
        return None, str(exc.reason)
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc) or type(exc).__name__

"""The transport under :class:`~khaime_django.client.KhaimeClient`: :class:`Transport` sends one
request to Khaime and gets back its ``data`` or a typed error.

- One pooled ``requests.Session`` per configuration (keep-alive saves a TLS handshake per call).
- A (connect, read) timeout on every call.
- Bounded retries with capped exponential backoff and full jitter. GET is safe to repeat, so it
  is retried on connection errors, timeouts, 429 and 5xx. Khaime documents no idempotency key,
  so a POST is retried only where Khaime cannot have acted: the connection was never made, or
  Khaime answered 429. A 429 waits at least ``MIN_RATE_LIMIT_DELAY`` and honours ``Retry-After``
  up to ``MAX_RETRY_AFTER``; a longer one is raised at once.
- A 429 holds the whole client, not just the call that got it: until Khaime's wait has passed
  (``Retry-After``, at least ``MIN_RATE_LIMIT_DELAY``, at most ``MAX_HOLD``), every call of this
  client (every thread of the process) waits before it sends, or, if it cannot wait that long,
  fails with the rate-limit error without sending. A request Khaime would refuse is not spent
  from the quota.
- Our own retry loop, not urllib3's ``Retry``: ``Retry`` decides per method from one
  ``allowed_methods`` list, so it cannot retry a POST on 429 while refusing it on 5xx and read
  errors without a second ``Retry`` per request; it sleeps inside urllib3, where the wait is
  neither logged with Khaime's reason nor injectable in tests; and after the last attempt it
  hands back a response or a ``MaxRetryError`` instead of the typed error of that attempt. The
  loop below is two short methods (``_request``, ``_retry_delay``).
- Every failure is a typed ``KhaimeError`` (see exceptions.py); what Khaime's answer means is
  decided in responses.py. The API key never appears in a log record, an exception or a repr.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from urllib3 import exceptions as urllib3_exceptions
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .. import __version__
from ..exceptions import (
    KhaimeConfigurationError,
    KhaimeConnectionError,
    KhaimeError,
    KhaimeRateLimitError,
    KhaimeTimeoutError,
)
from .responses import parse_response

#: The client's one logger, under the name it had as a single module (merchants configure it).
logger = logging.getLogger("khaime_django.client")

#: A 429 is retried after at least this long, whatever Retry-After says.
MIN_RATE_LIMIT_DELAY = 0.5
#: A 429 whose Retry-After asks for longer than this is raised at once, not waited out.
MAX_RETRY_AFTER = 10.0
#: The longest a 429 holds the client's calls (seconds): after a long ``Retry-After`` (an hourly
#: quota) one call a minute per process still asks, in case the quota came back earlier.
MAX_HOLD = 60.0


class Transport:
    """The pooled session, the timeouts and the retry loop. The endpoint classes
    (sessions.py, subscriptions.py, refunds.py) build on it and call ``self._request``."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: tuple[float, float] = (3.05, 10),
        max_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not api_key:
            raise KhaimeConfigurationError("KHAIME['API_KEY'] is not set.")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._api_key = api_key  # only to scrub it from Khaime's error messages
        self._hold_until = 0.0  # time.monotonic() before which no call is sent (after a 429)
        self._http = requests.Session()
        _read_environment_once(self._http, self.base_url)
        self._http.headers.update(
            {
                "X-API-Key": api_key,
                "Accept": "application/json",
                "User-Agent": f"khaime-django/{__version__}",
            }
        )

    def longest_call(self) -> float:
        """The longest one call can take, retries and waits included (seconds)."""
        return longest_call(self.timeout, self.max_retries, self.backoff_max)

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, *, json=None, timeout=None, deadline: float | None = None) -> dict:
        url = self.base_url + path
        ends = None if deadline is None else time.monotonic() + deadline
        attempt = 0
        while True:
            try:
                if attempt == 0:  # a retry has already waited out its own 429 (_retry_delay)
                    self._wait_for_hold(ends)
                return self._send_once(method, url, json=json, timeout=timeout or self.timeout, ends=ends)
            except KhaimeError as error:
                delay = self._retry_delay(method, error, attempt)
                if delay is not None and ends is not None and time.monotonic() + delay >= ends:
                    delay = None  # no time left for another attempt
                if delay is None:
                    raise
                logger.warning(
                    "Khaime %s %s failed (%s); retry %d of %d in %.2fs",
                    method,
                    path,
                    error,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                self._sleep(delay)
                attempt += 1

    def _send_once(self, method: str, url: str, *, json, timeout, ends: float | None = None) -> dict:
        started = time.monotonic()
        try:
            if ends is None:
                response = self._http.request(method, url, json=json, timeout=timeout)
            else:
                response = self._request_until(ends, method, url, json=json, timeout=timeout)
        except requests.Timeout as exc:
            error: KhaimeConnectionError = KhaimeTimeoutError(f"Khaime did not answer within {timeout}s.")
            error.never_sent = isinstance(exc, requests.ConnectTimeout)
            raise error from None
        except requests.ConnectionError as exc:
            error = KhaimeConnectionError(f"Khaime could not be reached: {type(_root_cause(exc)).__name__}.")
            error.never_sent = _connection_never_made(exc)
            raise error from None
        except requests.RequestException as exc:
            raise KhaimeConnectionError(f"Request to Khaime failed: {type(exc).__name__}.") from None
        logger.debug(
            "Khaime %s %s -> %s in %.0f ms",
            method,
            urlsplit(url).path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        try:
            return parse_response(response)
        except KhaimeRateLimitError as error:
            error.retry_after = _retry_after(response.headers.get("Retry-After"))
            self._hold(error.retry_after)
            _redact(error, self._api_key)
            raise
        except KhaimeError as error:
            # Khaime's own words go into logs, last_error and admin messages: if it ever echoes
            # the key back ("Invalid API key pk_live_..."), it must not travel on from here.
            _redact(error, self._api_key)
            raise

    def clear_hold(self) -> None:
        """Send the next call at once, whatever the last 429 asked (tests, an operator's retry)."""
        self._hold_until = 0.0

    def _hold(self, retry_after: float | None) -> None:
        """After a 429: no call of this client is sent before Khaime's wait has passed."""
        wait = min(_rate_limit_wait(retry_after), MAX_HOLD)
        self._hold_until = max(self._hold_until, time.monotonic() + wait)

    def _wait_for_hold(self, ends: float | None) -> None:
        """Wait out a 429's hold before sending, or raise the rate-limit error without sending
        when the wait is longer than a call may wait (``MAX_RETRY_AFTER``) or than ``ends``."""
        wait = self._hold_until - time.monotonic()
        if wait <= 0:
            return
        if wait > MAX_RETRY_AFTER or (ends is not None and time.monotonic() + wait >= ends):
            error = KhaimeRateLimitError(
                f"Khaime asked us to wait {wait:.1f}s more before the next request (429); not sent.",
                status_code=429,
            )
            error.retry_after = wait
            raise error
        self._sleep(wait)

    def _request_until(self, ends: float, method: str, url: str, *, json, timeout) -> requests.Response:
        """One request that ends by ``ends`` (a ``time.monotonic()`` value) however Khaime
        answers: each socket wait is capped by the time left, and the body is read in chunks that
        stop at the deadline (a (connect, read) timeout alone bounds each wait, not the sum)."""
        remaining = ends - time.monotonic()
        if remaining <= 0:
            raise requests.ReadTimeout("deadline passed before the request")
        connect, read = timeout
        response = self._http.request(
            method, url, json=json, timeout=(min(connect, remaining), min(read, remaining)), stream=True
        )
        chunks = []
        try:
            while True:
                remaining = ends - time.monotonic()
                if remaining <= 0:
                    raise requests.ReadTimeout("deadline passed while reading the answer")
                chunk = _read_some(response, remaining)
                if not chunk:
                    break
                chunks.append(chunk)
        except (OSError, urllib3_exceptions.HTTPError) as exc:
            response.close()  # a half-read answer: the connection cannot be reused
            raise requests.ReadTimeout(f"reading the answer failed: {type(exc).__name__}") from exc
        except BaseException:
            response.close()
            raise
        response.raw.release_conn()  # read to the end: back to the pool for the next call
        # What requests itself does once the body is read, so .json() and .text work as usual.
        response._content = b"".join(chunks)
        return response

    def _retry_delay(self, method: str, error: KhaimeError, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to raise it now."""
        if attempt >= self.max_retries or not self._may_retry(method, error):
            return None
        delay = self._backoff(attempt)
        if isinstance(error, KhaimeRateLimitError):
            wanted = _rate_limit_wait(error.retry_after)
            if wanted > MAX_RETRY_AFTER:
                return None  # an hourly quota: no request should hold a buyer that long
            delay = max(delay, wanted)
        return delay

    @staticmethod
    def _may_retry(method: str, error: KhaimeError) -> bool:
        if isinstance(error, KhaimeRateLimitError):
            return True  # Khaime refused before doing anything.
        if method == "GET":
            return error.transient
        # A POST may have created a session even if we never saw the answer: only retry when the
        # connection was never established.
        return isinstance(error, KhaimeConnectionError) and error.never_sent

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return random.uniform(0, ceiling)  # noqa: S311 - retry jitter, not a secret


def _read_some(response: requests.Response, remaining: float) -> bytes:
    """What has arrived of the body, waiting at most ``remaining`` seconds for it (one socket read
    where urllib3 offers ``read1``, so a body sent a byte at a time cannot hold us past it)."""
    raw = response.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(remaining, 0.001))
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        return read1(16384, decode_content=True)
    return raw.read(1, decode_content=True)


def _read_environment_once(http: requests.Session, base_url: str) -> None:
    """Take the proxy and CA-bundle environment (``HTTPS_PROXY``, ``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) for Khaime's one host now, as requests would on
    each call, and stop requests from reading and parsing the whole process environment again on
    every request (``trust_env``). A change to those variables takes effect with a new client
    (a new process). ``.netrc`` is not consulted: the API key is the authentication."""
    http.proxies.update(requests.utils.get_environ_proxies(base_url))  # {} when NO_PROXY covers the host
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        http.verify = bundle
    http.trust_env = False


def longest_call(timeout: tuple[float, float], max_retries: int, backoff_max: float) -> float:
    """The longest one call can take with this timeout and retry policy, waits included (seconds)."""
    connect, read = timeout
    longest_wait = max(float(backoff_max), MAX_RETRY_AFTER)
    # The first attempt may first wait out another call's 429 (at most MAX_RETRY_AFTER).
    return (connect + read) * (max_retries + 1) + longest_wait * max_retries + MAX_RETRY_AFTER + 1


def _rate_limit_wait(retry_after: float | None) -> float:
    """How long a 429 asks us to wait: its ``Retry-After``, at least ``MIN_RATE_LIMIT_DELAY``."""
    return max(retry_after or 0.0, MIN_RATE_LIMIT_DELAY)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _redact(error: KhaimeError, secret: str) -> None:
    def scrub(value):
        if isinstance(value, str):
            return value.replace(secret, "[redacted]")
        if isinstance(value, Mapping):
            return {scrub(key): scrub(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [scrub(item) for item in value]
        return value

    if secret:
        error.message, error.details = scrub(error.message), scrub(error.details)
        error.args = tuple(scrub(arg) for arg in error.args)


def _causes(exc: BaseException):
    """The exception and what it wraps: requests -> urllib3 MaxRetryError.reason -> socket error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        elif current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__ or current.__context__


def _root_cause(exc: BaseException) -> BaseException:
    *_, last = _causes(exc)
    return last


def _connection_never_made(exc: requests.ConnectionError) -> bool:
    """True when the TCP/TLS connection was never established, so Khaime cannot have acted."""
    return any(
        isinstance(cause, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError)) for cause in _causes(exc)
    )

"""The emulator's state: configuration, records, events, and the lock that guards them.

``StateCore`` holds everything the scenario actions change; the actions live in
``state.py`` (sessions), ``subscription_actions.py`` and ``refund_actions.py``. Nothing here
knows about HTTP: the server in ``server.py`` and Python code call the same methods.
"""

from __future__ import annotations

import random
import threading
from typing import TypeVar

from .config import BINDING_OPTIONS, EmulatorConfig, InvalidConfig
from .events import Event
from .records import Payment, Refund, Subscription
from .sessions import Session, UnknownRecord, UnknownSession
from .webhooks import WebhookDispatcher


class UnknownPayment(UnknownRecord):
    kind = "transaction"


class UnknownSubscription(UnknownRecord):
    kind = "subscription"


class UnknownRefund(UnknownRecord):
    kind = "refund"


class UnknownEvent(UnknownRecord):
    kind = "event"


class NoWebhookUrl(ValueError):
    """A redelivery was asked for while no webhook URL is configured."""


class StateCore:
    def __init__(self, **options):
        self._initial_config = EmulatorConfig(**options)
        self._config = self._initial_config
        self._lock = threading.RLock()
        self._random = random.Random(self._config.seed)
        self._dispatcher = WebhookDispatcher(self._config.seed)
        self._generation = 0  # bumped by reset(): timers of an older generation do nothing
        self._running = False
        self._clear()

    def _clear(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._payments: dict[str, Payment] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._refunds: dict[str, Refund] = {}
        self._events: dict[str, Event] = {}
        self._rate_second = 0
        self._rate_count = 0
        self._next_refund_outcome: str | None = None
        self._timers: list[threading.Timer] = []

    # --- configuration ---

    @property
    def config(self) -> EmulatorConfig:
        return self._config

    def configure(self, **options) -> None:
        """Change options at run time; sessions already created keep their fees and expiry."""
        with self._lock:
            new = self._config.replace(**options)
            if self._running:
                moved = {name for name in BINDING_OPTIONS if getattr(new, name) != getattr(self._config, name)}
                if moved:
                    raise InvalidConfig({name: "cannot change while the server is running" for name in moved})
            self._config = new
            if "seed" in options:
                self._random.seed(new.seed)
                self._dispatcher.reseed(new.seed)

    def reset(self) -> None:
        """Forget every record, event, delivery and pending fault; restore the constructor's
        configuration (not the library defaults, so a shared server keeps its options)."""
        with self._lock:
            self._cancel_timers()
            self._generation += 1
            self._clear()
            self._config = self._initial_config
            self._random.seed(self._config.seed)
            self._dispatcher.reset(self._config.seed)

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def _later(self, delay: float, function, *args) -> None:
        """Run ``function(*args)`` after ``delay`` seconds unless reset() or stop() comes first."""
        generation = self._generation

        def run() -> None:
            with self._lock:
                if generation == self._generation:
                    function(*args)

        timer = threading.Timer(delay, run)
        timer.daemon = True
        self._timers = [pending for pending in self._timers if pending.is_alive()] + [timer]
        timer.start()

    # --- events ---

    def _emit(self, event: Event) -> None:
        self._events[event.event_id] = event
        if self._config.webhook_url:
            self._dispatcher.enqueue(event, self._config)

    def redeliver(self, event_id: str) -> dict:
        """Send a stored event again: the same bytes and signature, as a Khaime retry would."""
        with self._lock:
            event = _find(self._events, UnknownEvent, event_id)
            if not self._config.webhook_url:
                raise NoWebhookUrl("No webhook URL is configured")
            self._dispatcher.enqueue(event, self._config)
            return event.summary()

    # --- look-ups ---

    def _session(self, session_id: str) -> Session:
        return _find(self._sessions, UnknownSession, session_id)

    def _payment(self, transaction_id: str) -> Payment:
        return _find(self._payments, UnknownPayment, transaction_id)

    def _subscription(self, subscription_id: str) -> Subscription:
        return _find(self._subscriptions, UnknownSubscription, subscription_id)

    def _refund(self, refund_id: str) -> Refund:
        return _find(self._refunds, UnknownRefund, refund_id)


Record = TypeVar("Record")


def _find(records: dict[str, Record], missing: type[UnknownRecord], record_id: str) -> Record:
    try:
        return records[record_id]
    except KeyError:
        raise missing(record_id) from None

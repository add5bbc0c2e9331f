"""The whole emulator minus HTTP: sessions and their actions, faults, and the ledger truth.

``EmulatorState`` gathers the subscription and refund actions and adds the sessions'. Every
change goes through its methods under one lock, whether it comes from the buyer's checkout page,
the ``/_emulator`` control API or Python code, so each path behaves the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .actions import session_action
from .events import make_event
from .records import Payment, new_id
from .refund_actions import RefundActions
from .sessions import Session, SessionRequest, TransitionNotAllowed
from .subscription_actions import SubscriptionActions
from .timestamps import iso_millis, utcnow


@dataclass(frozen=True)
class Fault:
    """What the simulated faults decided for one Partner API request."""

    latency_ms: int = 0
    status: int | None = None
    message: str | None = None


class EmulatorState(SubscriptionActions, RefundActions):
    """An offline, stateful Khaime. Options: see ``EmulatorConfig``."""

    _base_url: str | None = None

    @property
    def base_url(self) -> str:
        """Where the emulator listens; kept after stop() for requests still being answered."""
        if self._base_url is None:
            raise RuntimeError("the emulator has not been started; call start() first")
        return self._base_url

    # --- inspection (every answer is a copy) ---

    def sessions(self) -> list[dict]:
        with self._lock:
            return [self._session_view(session) for session in self._sessions.values()]

    def session(self, session_id: str) -> dict:
        with self._lock:
            return self._session_view(self._session(session_id))

    def payments(self) -> list[dict]:
        with self._lock:
            return [payment.truth() for payment in self._payments.values()]

    def events(self) -> list[dict]:
        with self._lock:
            return [event.envelope() for event in self._events.values()]

    def deliveries(self) -> list[dict]:
        """Every webhook delivery attempt, in the order they were made."""
        return self._dispatcher.attempts()

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> None:
        """Block until ``count`` deliveries finished (succeeded, or used their last attempt).

        A delivery is one copy of one event: with ``duplicate_webhooks`` each event makes two.
        Raises ``TimeoutError`` when they have not finished within ``timeout`` seconds.
        """
        self._dispatcher.wait_for_finished(count, timeout)

    def truth(self) -> dict:
        """What Khaime holds, for checking a merchant's ledger against: every session with its
        status and amounts, payment, subscription, refund, and every event sent."""
        with self._lock:
            return {
                "sessions": self.sessions(),
                "payments": self.payments(),
                "subscriptions": self.subscriptions(),
                "refunds": self.refunds(),
                "events": [event.summary() for event in self._events.values()],
            }

    # --- scenario actions: the buyer's or Khaime's side of a session ---

    @session_action("complete")
    def complete(self, session_id: str) -> dict:
        """The buyer paid: a payment (``txn_...``); with a frequency key also a subscription.
        Sends ``subscription.created`` (if any) then ``payment.succeeded``."""
        with self._lock:
            session, now = self._session(session_id), utcnow()
            session.complete(now)
            payment = Payment(str(session.transaction_id), session, now)
            self._payments[payment.transaction_id] = payment
            frequency = session.request.subscription_frequency_key
            if frequency:
                self._start_subscription(payment, frequency, now)
            self._emit(make_event("payment.succeeded", payment.event_data(), is_live=payment.is_live, occurred_at=now))
            return self._session_view(session)

    @session_action("fail")
    def fail(self, session_id: str) -> dict:
        """The buyer's payment was declined; sends ``payment.failed``."""
        with self._lock:
            session, now = self._session(session_id), utcnow()
            session.fail(now)
            data = Payment(new_id("txn"), session, now).event_data(status="failed")
            data["paid_at"] = None
            self._emit(make_event("payment.failed", data, is_live=session.mode == "live", occurred_at=now))
            return self._session_view(session)

    @session_action("expire")
    def expire(self, session_id: str) -> dict:
        """The session expires now, unpaid; no webhook."""
        with self._lock:
            session = self._session(session_id)
            session.expire(utcnow())
            return self._session_view(session)

    @session_action("refund")
    def refund(self, session_id: str) -> dict:
        """A dashboard refund of all that remains of the session's payment (see dashboard_refund)."""
        with self._lock:
            session = self._session(session_id)
            payment = self._completed_payment(session, "refund")
            if payment.refundable_amount <= 0:
                raise TransitionNotAllowed(
                    session_id, "refund", session.state, "The session's payment is already refunded"
                )
            self.dashboard_refund(payment.transaction_id)
            return self._session_view(session)

    @session_action("dispute")
    def dispute(self, session_id: str) -> dict:
        """The buyer disputed the session's payment; sends ``payment.disputed``."""
        with self._lock:
            session, now = self._session(session_id), utcnow()
            payment = self._completed_payment(session, "dispute")
            if payment.disputed_at is not None:
                raise TransitionNotAllowed(session_id, "dispute", session.state, "The payment is already disputed")
            payment.disputed_at = now
            self._emit(make_event("payment.disputed", payment.event_data(), is_live=payment.is_live, occurred_at=now))
            return self._session_view(session)

    # --- used by the Partner API ---

    def create_session(self, request: SessionRequest, mode: str) -> dict:
        with self._lock:
            session = Session.create(request, mode=mode, base_url=self.base_url, config=self._config, now=utcnow())
            self._sessions[session.session_id] = session
            return session.created_response()

    def retrieve_session(self, session_id: str) -> dict:
        with self._lock:
            return self._session(session_id).retrieved_response(utcnow())

    def draw_fault(self) -> Fault:
        """Decide the simulated latency and failure of one Partner API request."""
        with self._lock:
            config = self._config
            limit = config.rate_limit_per_second
            if limit is not None:
                second = int(time.time())
                if second != self._rate_second:
                    self._rate_second, self._rate_count = second, 0
                self._rate_count += 1
                if self._rate_count > limit:
                    return Fault(config.latency_ms, 429, "Rate limit exceeded")
            # Draw only when failures are on, so a seed gives the same sequence whatever else ran.
            if config.fail_rate and self._random.random() < config.fail_rate:
                return Fault(config.latency_ms, config.fail_status, "Simulated failure (emulator fail_rate)")
            return Fault(config.latency_ms)

    # --- internals ---

    def _completed_payment(self, session: Session, action: str) -> Payment:
        if session.transaction_id is None:
            raise TransitionNotAllowed(session.session_id, action, session.status(utcnow()))
        return self._payments[session.transaction_id]

    def _session_view(self, session: Session) -> dict:
        view = session.snapshot(utcnow())
        payment = self._payments.get(session.transaction_id or "")
        view["refunded_amount"] = payment.refunded_amount if payment else 0
        view["disputed_at"] = iso_millis(payment.disputed_at) if payment else None
        view["subscription_id"] = payment.subscription_id if payment else None
        return view

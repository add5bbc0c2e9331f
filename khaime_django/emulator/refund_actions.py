"""Refunds: ``POST /refunds`` with Khaime's validation, completion after ``refund_delay``, refunds
made at Khaime's dashboard, and the faults a merchant's refund code must survive.

A refund answers ``processing``; ``refund_delay`` seconds later it completes and sends
``refund.completed`` (data: the refund object), then ``payment.refunded`` once the payment is
refunded in full. Khaime documents no ``refund.failed`` event: a refund made to fail
(``next_refund("fail")``) turns ``failed`` in the emulator's records and sends nothing, so the
merchant's side only ever sees it never complete.

Faults for the next ``POST /refunds`` (one at a time, consumed by that request):

- ``fail``: answered ``processing``, then fails silently (see above);
- ``hang``: answered ``processing``, then stays ``processing`` until ``complete_refund`` or
  ``fail_refund`` settles it;
- ``timeout``: the refund is made and completes as usual, but the HTTP answer is held back
  ``refund_answer_delay`` seconds, past the client's read timeout;
- ``drop``: the refund is made and completes as usual, but the connection is closed unanswered.
"""

from __future__ import annotations

from datetime import datetime

from .core import StateCore
from .events import make_event
from .records import Payment, Refund, new_id
from .sessions import TransitionNotAllowed
from .timestamps import utcnow

REFUND_FAULTS = ("fail", "hang", "timeout", "drop")
# Faults that change what the HTTP answer does, not what happens to the refund.
ANSWER_FAULTS = frozenset({"timeout", "drop"})


class RefundRefused(ValueError):
    """Khaime refuses the refund request: ``status`` is the HTTP status, ``details`` per field."""

    def __init__(self, status: int, message: str, details: dict | None = None):
        self.status = status
        self.details = details
        super().__init__(message)


class RefundActions(StateCore):
    # --- reading ---

    def refunds(self) -> list[dict]:
        with self._lock:
            return [refund.truth() for refund in self._refunds.values()]

    def refund_record(self, refund_id: str) -> dict:
        with self._lock:
            return self._refund(refund_id).truth()

    # --- the Partner API's POST /refunds ---

    def create_refund(self, body: dict, mode: str) -> tuple[dict, str | None]:
        """Validate and make a refund; answer (``data`` of the response, answer fault or None)."""
        transaction_id, amount, reason = _parse_refund_request(body)
        with self._lock:
            payment = self._payment(transaction_id)
            if payment.is_live != (mode == "live"):
                raise RefundRefused(
                    403, f"A {mode} key cannot refund a {'live' if payment.is_live else 'sandbox'} payment"
                )
            refund = self._make_refund(payment, amount, reason, "api")
            fault, self._next_refund_outcome = self._next_refund_outcome, None
            if fault == "fail":
                self._later(self._config.refund_delay, self._fail, refund)
            elif fault != "hang":
                self._later(self._config.refund_delay, self._complete, refund)
            return refund.created_response(), fault if fault in ANSWER_FAULTS else None

    # --- control ---

    def next_refund(self, fault: str | None) -> None:
        """Make the next ``POST /refunds`` ``fail``, ``hang``, ``timeout`` or ``drop``; None clears it."""
        if fault is not None and fault not in REFUND_FAULTS:
            raise ValueError(f"fault must be one of {', '.join(REFUND_FAULTS)} or None")
        with self._lock:
            self._next_refund_outcome = fault

    def dashboard_refund(self, transaction_id: str, amount: int | None = None, reason: str | None = None) -> dict:
        """A refund made at Khaime's dashboard, without the merchant's POST: it completes at once
        and sends its webhooks. ``amount`` None refunds what remains."""
        _check_amount(amount)
        with self._lock:
            refund = self._make_refund(self._payment(transaction_id), amount, reason, "dashboard")
            self._complete(refund)
            return refund.truth()

    def complete_refund(self, refund_id: str) -> dict:
        """Settle a ``processing`` refund as completed now (a hung one, say)."""
        with self._lock:
            refund = self._processing_refund(refund_id, "complete")
            self._complete(refund)
            return refund.truth()

    def fail_refund(self, refund_id: str) -> dict:
        """Settle a ``processing`` refund as failed now (no event: Khaime documents none)."""
        with self._lock:
            refund = self._processing_refund(refund_id, "fail")
            self._fail(refund)
            return refund.truth()

    # --- internals (called under the lock) ---

    def _make_refund(self, payment: Payment, amount: int | None, reason: str | None, source: str) -> Refund:
        remaining = payment.refundable_amount
        if amount is None:
            amount = remaining
        if remaining <= 0:
            raise RefundRefused(422, "The payment is already fully refunded", {"amount": "nothing left to refund"})
        if amount > remaining:
            raise RefundRefused(422, "Validation failed", {"amount": f"must not exceed the refundable {remaining}"})
        refund = Refund(new_id("ref"), payment, amount, reason, utcnow(), source)
        payment.refunds.append(refund)
        self._refunds[refund.refund_id] = refund
        return refund

    def _processing_refund(self, refund_id: str, action: str) -> Refund:
        refund = self._refund(refund_id)
        if refund.status != "processing":
            raise TransitionNotAllowed(refund_id, action, refund.status, kind="refund")
        return refund

    def _complete(self, refund: Refund) -> None:
        if refund.status != "processing":
            return  # settled by hand before its timer ran
        now: datetime = utcnow()
        refund.status, refund.completed_at = "completed", now
        payment = refund.payment
        self._emit(make_event("refund.completed", refund.as_object(), is_live=payment.is_live, occurred_at=now))
        if payment.status == "refunded":
            event = make_event("payment.refunded", payment.event_data(), is_live=payment.is_live, occurred_at=now)
            self._emit(event)

    def _fail(self, refund: Refund) -> None:
        if refund.status == "processing":
            refund.status = "failed"


def _check_amount(amount) -> None:
    if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0):
        raise RefundRefused(422, "Validation failed", {"amount": "must be a positive integer in minor units"})


def _parse_refund_request(body: dict) -> tuple[str, int | None, str | None]:
    details = {}
    transaction_id = body.get("transaction_id")
    if not isinstance(transaction_id, str) or not transaction_id:
        details["transaction_id"] = "is required"
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        details["reason"] = "must be a string"
    try:
        _check_amount(body.get("amount"))
    except RefundRefused as exc:
        details.update(exc.details or {})
    if details:
        raise RefundRefused(422, "Validation failed", details)
    return str(transaction_id), body.get("amount"), reason

"""``refund.*`` webhook events (``EVENT_HANDLERS["refund"]``).

``refund.completed`` completes the refund it names: by ``refund_id``; else, for one whose id we
never learnt (its POST timed out, or its answer is still on the way), by the payment's
transaction id and the amount; else it is a refund made in Khaime's dashboard, and is recorded
as such. ``refund.failed`` (not in Khaime's published list, accepted if it ever comes) fails the
refund it names. A payment refunded in full moves the checkout session it paid to ``refunded``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from ..models import Payment, PaymentSession, Refund, WebhookEvent, WebhookOutcome, checkout_payment_of
from ..refund_statuses import RefundOrigin, RefundStatus
from ..statuses import PAID_STATUSES, Status
from ..timestamps import parse_timestamp
from ..transitions import transition
from ..webhooks import KhaimeEvent
from . import ledger, payments
from .events import Applied

logger = logging.getLogger(__name__)

#: The refund events we apply, and the status each one means.
REFUND_EVENT_STATUS: dict[str, str] = {
    "refund.completed": RefundStatus.COMPLETED,
    "refund.failed": RefundStatus.FAILED,
}


def apply_refund_event(record: WebhookEvent, event: KhaimeEvent, source: str) -> Applied:
    """Apply a ``refund.*`` event (runs inside the inbox's transaction)."""
    target = REFUND_EVENT_STATUS.get(event.event_type)
    if target is None:
        return Applied(WebhookOutcome.IGNORED, detail=f"{event.event_type} is not an event khaime-django applies")
    data = event.data
    refund_id = _text(data.get("refund_id")) or _text(data.get("id"))
    amount = data.get("amount")
    if refund_id is None or isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return Applied(WebhookOutcome.IGNORED, detail="no refund id or no positive integer amount: nothing applied")
    payment = _payment_for(event)
    if payment is None:
        return Applied(
            WebhookOutcome.UNMATCHED,
            detail=f"no recorded payment {data.get('transaction_id')} and no session to record it from",
        )
    # The session before its payment, the order payment.* events take them in (the status
    # change, then the ledger row): a full refund's refund.completed and the payment.refunded
    # Khaime sends with it would otherwise deadlock. Then the same lock refund_payment takes: the
    # match below cannot race a refund being requested or its answer being stored.
    _lock_session(payment.session_id)
    payment = Payment.objects.select_for_update().get(pk=payment.pk)
    why = f"{event.event_type} {event.event_id}"
    refund, how = _match(payment, refund_id, amount, target)
    if refund is None:
        if target != RefundStatus.COMPLETED:
            return Applied(
                WebhookOutcome.IGNORED, payment.session, f"no refund {refund_id} of {payment.transaction_id}"
            )
        refund = Refund.objects.create(
            payment=payment,
            refund_id=refund_id,
            amount=amount,
            currency=(_text(data.get("currency")) or payment.currency).upper()[:3],
            reason=(_text(data.get("reason")) or "")[:500],
            origin=RefundOrigin.KHAIME,
        )
        how = "made outside khaime-django (Khaime's dashboard): recorded"
    notes = [how] if how else []
    if refund.amount != amount:
        notes.append(f"Khaime reports {amount}, we asked for {refund.amount}: check it")
        logger.warning("Refund %s: Khaime reports amount %s, recorded %s", refund_id, amount, refund.amount)
    fields: dict[str, Any] = {}
    if target == RefundStatus.COMPLETED:
        fields["completed_at"] = parse_timestamp(data.get("completed_at")) or timezone.now()
    changed = transition(refund, target, source=source, detail=why, **fields)
    if target == RefundStatus.COMPLETED:
        notes += refund_session_if_fully_refunded(payment, source=source, detail=why)
    summary = f"refund {refund_id} ({refund.display_amount}) is {refund.status}"
    outcome = WebhookOutcome.APPLIED if changed else WebhookOutcome.DUPLICATE
    if not changed and refund.status != target:
        outcome = WebhookOutcome.IGNORED
        summary += f"; the status machine does not allow {refund.status} -> {target}"
    return Applied(outcome, payment.session, "; ".join([summary, *notes]))


def _match(payment: Payment, refund_id: str, amount: int, target: str) -> tuple[Refund | None, str]:
    refund = Refund.objects.select_for_update().filter(refund_id=refund_id).first()
    if refund is not None:
        return refund, ""
    if target != RefundStatus.COMPLETED:
        return None, ""
    # A refund of ours whose id we never learnt: its POST timed out (unknown), or Khaime's
    # webhook overtook the answer (requested). The oldest of this payment and amount.
    waiting = (
        Refund.objects.select_for_update()
        .filter(
            payment=payment,
            refund_id=None,
            amount=amount,
            status__in=(RefundStatus.REQUESTED, RefundStatus.UNKNOWN),
        )
        .order_by("created_at", "pk")
        .first()
    )
    if waiting is None:
        return None, ""
    Refund.objects.filter(pk=waiting.pk).update(refund_id=refund_id, updated_at=timezone.now())
    waiting.refund_id = refund_id
    return waiting, f"matched our {waiting.status} refund {waiting.pk} by transaction and amount"


def _payment_for(event: KhaimeEvent) -> Payment | None:
    """The refunded payment, recorded from the session the event names if its own
    ``payment.succeeded`` has not arrived yet (Khaime refunds only money it received)."""
    transaction_id = ledger.transaction_id_of({"transaction_id": event.data.get("transaction_id")})
    if transaction_id is None:
        return None
    payment = Payment.objects.filter(transaction_id=transaction_id).first()
    if payment is not None:
        return payment
    session = payments.match_session(event)
    if session is None:
        return None
    _lock_session(session.pk)  # before the payment row it may insert, as above
    facts = ledger.PaymentFacts(transaction_id, None, "", None, {}, event.is_live)
    payment, _created = ledger.record_payment(facts, session=session)
    return payment


def _lock_session(pk: int | None) -> None:
    """Lock the payment session ``pk`` (FOR UPDATE) until the transaction ends."""
    if pk is not None:
        list(PaymentSession.objects.select_for_update().filter(pk=pk).values_list("pk", flat=True))


def refund_session_if_fully_refunded(payment: Payment, *, source: str, detail: str) -> list[str]:
    """Move the checkout session ``payment`` paid to ``refunded`` once its completed refunds
    cover it. A renewal's refund never does: the checkout's own payment was not refunded."""
    session: PaymentSession | None = payment.session
    if session is None or payment.refunded_amount < payment.amount:
        return []
    own = checkout_payment_of(session)
    if own is None or own.pk != payment.pk:
        return [f"payment {payment.transaction_id} is a renewal: session {session.reference} keeps its status"]
    if session.status not in PAID_STATUSES:
        transition(session, Status.COMPLETED, source=source, detail=detail, completed_at=payment.paid_at)
    if transition(session, Status.REFUNDED, source=source, detail=detail):
        return [f"session {str(session.reference)[:8]} is now refunded"]
    return []


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None

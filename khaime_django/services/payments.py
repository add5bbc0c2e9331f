"""``payment.*`` webhook events: match the event to its session, check what was paid, and move
the session through the status machine."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import signals
from ..models import Mode, PaymentSession, WebhookEvent, WebhookOutcome, checkout_payment_of
from ..statuses import PAID_STATUSES, WEBHOOK_STATUS, Status
from ..transitions import ReceiverErrorHook, current_receiver_error_hook, send_robust, transition
from ..webhooks import KhaimeEvent
from .events import Applied

logger = logging.getLogger(__name__)


def apply_payment_event(record: WebhookEvent, event: KhaimeEvent, source: str) -> Applied:
    """Apply a ``payment.*`` event to the session it names (``EVENT_HANDLERS["payment"]``)."""
    target = WEBHOOK_STATUS.get(event.event_type)
    if target is None:
        return Applied(WebhookOutcome.IGNORED, detail=f"{event.event_type} is not an event khaime-django applies")
    session = match_session(event)
    if session is None:
        return Applied(
            WebhookOutcome.UNMATCHED,
            detail=(
                f"no payment session with reference {event.reference} or Khaime session id "
                f"{', '.join(event.session_ids) or 'None'}"
            ),
        )
    why = f"{event.event_type} {event.event_id}"
    if target == Status.REFUNDED and _is_other_payment(session, event):
        # A subscription renewal refunded in full: the checkout's own payment was not refunded.
        return Applied(
            WebhookOutcome.IGNORED,
            session,
            f"payment {event.data.get('transaction_id') or event.data.get('id')} is not this checkout's own payment "
            f"(a renewal): session stays {session.status}",
        )
    reasons = review_reasons(session, event) if target == Status.COMPLETED else []
    flagged = flag_for_review(session, f"{why}: {'; '.join(reasons)}") if reasons else False
    changed = False
    if target in PAID_STATUSES and session.status not in PAID_STATUSES:
        # Khaime refunds and disputes only money it received: a refund or dispute arriving first
        # means payment.succeeded is late or lost. Record the payment, then the refund, so the
        # history is whole and a late payment.succeeded finds its news already applied.
        changed = transition(
            session, Status.COMPLETED, source=source, detail=why, completed_at=event.paid_at or timezone.now()
        )
    if target != Status.COMPLETED:
        changed = transition(session, target, source=source, detail=why) or changed
    if flagged:
        # After the transition's own on-commit signals: payment_completed first, then this.
        hook = current_receiver_error_hook()
        transaction.on_commit(partial(_send_needs_review, session, session.review_reason, record, hook))
    notes = [f"needs review: {'; '.join(reasons)}"] if reasons else []
    if changed:
        return Applied(WebhookOutcome.APPLIED, session, "; ".join([f"session is now {session.status}", *notes]))
    already = session.status == target or (target == Status.COMPLETED and session.status in PAID_STATUSES)
    if already:
        return Applied(WebhookOutcome.DUPLICATE, session, "; ".join([f"session was already {session.status}", *notes]))
    refused = f"session is {session.status}; the status machine does not allow {session.status} -> {target}"
    return Applied(WebhookOutcome.IGNORED, session, "; ".join([refused, *notes]))


def _is_other_payment(session: PaymentSession, event: KhaimeEvent) -> bool:
    """The event is about a payment other than the one ``session``'s checkout took."""
    own = checkout_payment_of(session)
    named = {event.data.get("transaction_id"), event.data.get("id")} - {None}
    return own is not None and bool(named) and own.transaction_id not in named


def match_session(event: KhaimeEvent) -> PaymentSession | None:
    """The session an event is about: by ``data.metadata.reference`` (ours, sent at creation),
    then by Khaime's session id."""
    lookups: list[dict[str, Any]] = [{"reference": event.reference}] if event.reference is not None else []
    lookups += [{"session_id": session_id} for session_id in event.session_ids]
    for lookup in lookups:
        try:  # get(), not first(): both keys are unique, and first() would add an ORDER BY
            return PaymentSession.objects.get(**lookup)
        except PaymentSession.DoesNotExist:
            continue
    return None


def review_reasons(session: PaymentSession, event: KhaimeEvent) -> list[str]:
    """Why a payment Khaime reports for ``session`` needs a human look: amount, currency or
    environment differ from what we asked for. A field the event does not carry is not checked."""
    reasons = []
    paid = event.paid
    if paid is not None:
        expected = session.total_amount if session.total_amount is not None else session.amount
        amount, currency = paid
        if currency != session.currency.upper():
            reasons.append(f"paid in {currency}, but the session is in {session.currency}")
        elif amount != expected:
            reasons.append(f"paid {amount} {currency}, but the session expects {expected} {session.currency}")
    if event.is_live is not None and event.is_live != (session.mode == Mode.LIVE):
        reasons.append(f"a {'live' if event.is_live else 'sandbox'} event for a {session.mode} session")
    return reasons


def flag_for_review(session: PaymentSession, reason: str) -> bool:
    """Mark ``session`` needs_review (money is never refused: the payment is applied anyway).
    True when this call flagged it; the caller then sends ``payment_needs_review`` on commit."""
    logger.warning("Payment session %s needs review: %s", session.reference, reason)
    # Conditional, so two events for one session cannot both flag it and signal twice.
    flagged = PaymentSession.objects.filter(pk=session.pk, needs_review=False).update(
        needs_review=True, review_reason=reason, updated_at=timezone.now()
    )
    if flagged:
        # Before the commit: payment_completed's receivers get this object and may check it.
        session.needs_review, session.review_reason = True, reason
    return bool(flagged)


def _send_needs_review(
    session: PaymentSession, reason: str, record: WebhookEvent, on_receiver_errors: ReceiverErrorHook | None
) -> None:
    errors = send_robust(signals.payment_needs_review, session=session, reason=reason, event=record)
    if errors and on_receiver_errors is not None:
        on_receiver_errors(errors)

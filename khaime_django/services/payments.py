"""``payment.*`` webhook events: match the event to its session, check what was paid, and move
the session through the status machine."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
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
    wrong_mode = mode_mismatch(session, event.is_live)
    if wrong_mode:
        # A sandbox event must never settle a live session (or the reverse): not applied, but
        # stored, and a human told.
        if flag_for_review(session, f"{why}: {wrong_mode}"):
            notify_review(session, record)
        return Applied(WebhookOutcome.IGNORED, session, f"not applied: {wrong_mode}; needs review")
    # Every event that completes the session is reviewed, whichever arrives first: a refund or
    # dispute before payment.succeeded completes it too.
    completes = target == Status.COMPLETED or (target in PAID_STATUSES and session.status not in PAID_STATUSES)
    reasons = review_payment(session, event.paid) if completes else []
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
    if target in PAID_STATUSES:
        _correct_completed_at(session, event.paid_at)
    if flagged:
        # After the transition's own on-commit signals: payment_completed first, then this.
        notify_review(session, record)
    notes = [f"needs review: {'; '.join(reasons)}"] if reasons else []
    if changed:
        return Applied(WebhookOutcome.APPLIED, session, "; ".join([f"session is now {session.status}", *notes]))
    already = session.status == target or (target == Status.COMPLETED and session.status in PAID_STATUSES)
    if already:
        return Applied(WebhookOutcome.DUPLICATE, session, "; ".join([f"session was already {session.status}", *notes]))
    refused = f"session is {session.status}; the status machine does not allow {session.status} -> {target}"
    return Applied(WebhookOutcome.IGNORED, session, "; ".join([refused, *notes]))


def _correct_completed_at(session: PaymentSession, paid_at: datetime | None) -> None:
    """A paid session completed by news that did not say when it was paid (a refund that
    overtook its payment) is dated when that news came, never before the money did: an
    earlier ``paid_at`` Khaime reports later is the true time, whatever order the news came in."""
    if paid_at is None or session.status not in PAID_STATUSES:
        return
    if session.completed_at is None or paid_at < session.completed_at:
        PaymentSession.objects.filter(pk=session.pk).update(completed_at=paid_at)
        session.completed_at = paid_at


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
    return first_session(lookups)


def first_session(lookups: Iterable[Mapping[str, Any]]) -> PaymentSession | None:
    """The session the first of ``lookups`` (each on a unique key: ``reference``, ``session_id``)
    finds, or None."""
    for lookup in lookups:
        try:  # get(), not first(): both keys are unique, and first() would add an ORDER BY
            return PaymentSession.objects.get(**lookup)
        except PaymentSession.DoesNotExist:
            continue
    return None


def review_reasons(session: PaymentSession, event: KhaimeEvent) -> list[str]:
    """Why a payment Khaime reports for ``session`` needs a human look: amount, currency or
    environment differ from what we asked for. A field the event does not carry is not checked."""
    reasons = review_payment(session, event.paid)
    wrong_mode = mode_mismatch(session, event.is_live)
    return [*reasons, wrong_mode] if wrong_mode else reasons


def review_payment(session: PaymentSession, paid: tuple[int, str] | None) -> list[str]:
    """Why ``paid`` (minor units, currency; None when Khaime did not say) does not settle
    ``session``. Checked against what we asked for (``amount``, ``currency``), and against the
    total Khaime quoted (``total_amount``, checked against the request at creation) when known."""
    if paid is None:
        return []
    amount, currency = paid
    if currency.upper() != session.currency.upper():
        return [f"paid in {currency}, but the session is in {session.currency}"]
    expected = session.total_amount if session.total_amount is not None else session.amount
    if amount < session.amount:
        return [f"paid {amount} {currency}, less than the {session.amount} {session.currency} asked for"]
    if amount != expected:
        return [f"paid {amount} {currency}, but the session expects {expected} {session.currency}"]
    return []


def mode_mismatch(session: PaymentSession, is_live: bool | None) -> str:
    """Why news marked live (or sandbox) cannot be about ``session``, or "" when it can (or
    does not say)."""
    if is_live is None or is_live == (session.mode == Mode.LIVE):
        return ""
    return f"a {'live' if is_live else 'sandbox'} event for a {session.mode} session"


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


def notify_review(session: PaymentSession, record: WebhookEvent | None = None) -> None:
    """Send ``payment_needs_review`` for a session just flagged, on commit (after the signals of
    the transitions made before this call). ``record`` is the event that caused it, if any."""
    hook = current_receiver_error_hook()
    transaction.on_commit(partial(_send_needs_review, session, session.review_reason, record, hook))


def _send_needs_review(
    session: PaymentSession, reason: str, record: WebhookEvent | None, on_receiver_errors: ReceiverErrorHook | None
) -> None:
    errors = send_robust(signals.payment_needs_review, session=session, reason=reason, event=record)
    if errors and on_receiver_errors is not None:
        on_receiver_errors(errors)

"""Refunds asked for from Django: :func:`refund_payment`.

Money moves once. The rules, and what each guards against:

- the amount is checked under a row lock on the :class:`~khaime_django.models.Payment`, against
  the paid amount less every refund not ``failed``: two concurrent refunds (two admins, a double
  click) are serialized by that lock, so together they can never exceed the payment;
- the :class:`~khaime_django.models.Refund` row is committed before Khaime is called, so a crash
  or timeout mid-call leaves a record that counts against the payment;
- Khaime documents no idempotency key, so the POST is retried only where Khaime cannot have acted
  (the client's rule for every POST). A timeout or a 5xx after sending leaves the refund
  ``unknown``: still counted, and settled by Khaime's later ``refund.completed``
  (``services.refund_events``) or by an operator;
- a ``request_token`` (one per admin confirmation form) is unique on the row, so a resubmitted
  form finds the refund it made; ``expect_refunds`` (how many refunds the form showed) refuses a
  form made stale by a refund from another tab.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import signals
from ..client import get_client
from ..exceptions import KhaimeConfigurationError, KhaimeConnectionError, KhaimeError, KhaimeRequestInvalidError
from ..models import Payment, Refund, Source
from ..money import format_money
from ..refund_statuses import RefundStatus
from ..transitions import current_receiver_error_hook, send_robust, transition

logger = logging.getLogger(__name__)

#: The longest reason stored and sent (``Refund.reason``).
MAX_REASON = 500


class RefundNotAllowed(ValueError):
    """The refund was refused before anything was stored or sent; the message says why."""


class StaleRefundForm(RefundNotAllowed):
    """The payment's refunds changed since the confirmation form was shown (another tab, another
    admin): nothing was sent; show the form again with what is true now."""


def refund_payment(
    payment: Payment,
    amount: int | None = None,
    reason: str = "",
    user=None,
    *,
    request_token: str | None = None,
    expect_refunds: int | None = None,
    source: str = Source.ADMIN,
) -> Refund:
    """Refund ``amount`` (minor units; None: all that remains refundable) of ``payment``.

    Returns the :class:`Refund`: ``processing`` when Khaime accepted it, ``failed`` when Khaime
    refused it or could not be reached (nothing moved; ``last_error`` says why), ``unknown`` when
    the request was sent but no answer came back, or already ``completed`` if Khaime's webhook
    overtook its answer. Raises :class:`RefundNotAllowed` (nothing stored, nothing sent) for an
    amount that is not a positive integer or exceeds what remains, and :class:`StaleRefundForm`.
    With a ``request_token`` already used, returns that refund and sends nothing.
    """
    refund, created = _store_request(
        payment,
        amount,
        reason,
        user,
        request_token=request_token,
        expect_refunds=expect_refunds,
    )
    if not created:
        return refund
    return _ask_khaime(refund, source=source)


def _store_request(
    payment: Payment,
    amount: int | None,
    reason: str,
    user,
    *,
    request_token: str | None,
    expect_refunds: int | None,
) -> tuple[Refund, bool]:
    reason = (reason or "").strip()[:MAX_REASON]
    try:
        with transaction.atomic():
            # The lock every refund of this payment (and every refund webhook about it) takes
            # first: without it two requests could both read the same remaining amount.
            locked = Payment.objects.select_for_update().get(pk=payment.pk)
            if request_token:
                existing = Refund.objects.filter(request_token=request_token).first()
                if existing is not None:
                    return existing, False
            if expect_refunds is not None and locked.refunds.count() != expect_refunds:
                raise StaleRefundForm(
                    "This payment's refunds changed since the form was shown (another tab or another "
                    "person). Nothing was refunded; check the refunds below and submit again."
                )
            remaining = locked.refundable_amount
            amount = _checked_amount(amount, remaining, locked)
            refund = Refund.objects.create(
                payment=locked,
                amount=amount,
                currency=locked.currency,
                reason=reason,
                status=RefundStatus.REQUESTED,
                requested_by=user if getattr(user, "pk", None) else None,
                request_token=request_token or None,
            )
            transaction.on_commit(partial(_send_requested, refund, current_receiver_error_hook()))
    except IntegrityError:
        # Only the unique request_token can refuse this INSERT: the same form, submitted twice at
        # once, where the lock above is not enough (SQLite has no row locks).
        existing = Refund.objects.filter(request_token=request_token).first() if request_token else None
        if existing is None:
            raise
        return existing, False
    logger.info("Refund %s of payment %s requested (%s)", refund.pk, payment.transaction_id, refund.display_amount)
    return refund, True


def _checked_amount(amount: object, remaining: int, payment: Payment) -> int:
    if amount is None:
        amount = remaining
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise RefundNotAllowed(
            f"A refund amount is an integer in the currency's smallest unit, not {type(amount).__name__} {amount!r}."
        )
    if remaining <= 0:
        raise RefundNotAllowed(f"Nothing of payment {payment.transaction_id} remains to refund.")
    if amount <= 0:
        raise RefundNotAllowed("A refund amount must be positive.")
    if amount > remaining:
        raise RefundNotAllowed(
            f"{format_money(amount, payment.currency)} is more than remains refundable "
            f"({format_money(remaining, payment.currency)} of {payment.display_amount})."
        )
    return amount


def _send_requested(refund: Refund, hook) -> None:
    errors = send_robust(signals.refund_requested, sender=Refund, refund=refund)
    if errors and hook is not None:
        hook(errors)


def _ask_khaime(refund: Refund, *, source: str) -> Refund:
    """POST the stored refund to Khaime once (the client retries only where Khaime cannot have
    acted), and record what came of it."""
    payment = refund.payment
    try:
        data = get_client().create_refund(payment.transaction_id, amount=refund.amount, reason=refund.reason)
    except (KhaimeError, KhaimeConfigurationError) as error:
        if khaime_cannot_have_acted(error):
            transition(
                refund, RefundStatus.FAILED, source=source, detail=f"Khaime refused: {error}", last_error=str(error)
            )
        else:
            logger.warning("Refund %s of %s: no answer from Khaime (%s); status unknown", refund.pk, payment, error)
            transition(
                refund,
                RefundStatus.UNKNOWN,
                source=source,
                detail=f"sent, but no usable answer: {error}",
                last_error=str(error),
            )
        refund.refresh_from_db()
        return refund
    record_answer(refund, data, source=source)
    refund.refresh_from_db()
    return refund


def khaime_cannot_have_acted(error: Exception) -> bool:
    """True when the refund certainly did not happen at Khaime: it answered with a refusal (4xx,
    429 included) or the request never left (no connection, bad configuration)."""
    if isinstance(error, (KhaimeConfigurationError, KhaimeRequestInvalidError)):
        return True
    if isinstance(error, KhaimeConnectionError):
        return error.never_sent
    status = getattr(error, "status_code", None)
    return status is not None and 400 <= status < 500


def record_answer(refund: Refund, data: dict, *, source: str) -> None:
    """Store Khaime's answer to our POST: its ``refund_id`` and ``processing``.

    The refund's webhook can arrive before this answer and match an in-flight refund of the same
    payment and amount by those alone (``services.refund_events``); when two such refunds were in
    flight it may have taken our sibling. Same payment, same amount: the two are interchangeable,
    so the id goes to whichever of them still has none.
    """
    refund_id = str(data.get("refund_id"))
    answered_amount = data.get("amount")
    if isinstance(answered_amount, int) and answered_amount != refund.amount:
        logger.warning("Khaime answered refund %s with amount %s, asked %s", refund_id, answered_amount, refund.amount)
    with transaction.atomic():
        Payment.objects.select_for_update().get(pk=refund.payment_id)
        if Refund.objects.filter(refund_id=refund_id).exists():
            return  # the webhook got here first and recorded it
        target = Refund.objects.filter(pk=refund.pk, refund_id=None).first() or _sibling_in_flight(refund)
        if target is None:
            logger.error(
                "Khaime answered refund %s but no refund of payment %s waits for it", refund_id, refund.payment
            )
            return
        Refund.objects.filter(pk=target.pk).update(refund_id=refund_id, updated_at=timezone.now())
        target.refund_id = refund_id
        transition(target, RefundStatus.PROCESSING, source=source, detail=f"Khaime accepted {refund_id}")
        if data.get("status") == "completed":
            transition(
                target,
                RefundStatus.COMPLETED,
                source=source,
                detail=f"Khaime answered {refund_id} completed",
                completed_at=timezone.now(),
            )


def _sibling_in_flight(refund: Refund) -> Refund | None:
    return (
        Refund.objects.filter(
            payment_id=refund.payment_id,
            amount=refund.amount,
            refund_id=None,
            status__in=(RefundStatus.REQUESTED, RefundStatus.UNKNOWN),
        )
        .order_by("created_at", "pk")
        .first()
    )


def mark_refund_failed(refund: Refund, *, note: str, user=None, source: str = Source.ADMIN) -> bool:
    """An operator's verdict after checking Khaime's dashboard: this open refund did not happen.
    Its amount becomes refundable again. True when the status changed."""
    who = getattr(user, "get_username", lambda: "")()
    detail = f"marked failed by {who or 'an operator'}: {note}".strip()
    return transition(refund, RefundStatus.FAILED, source=source, detail=detail, last_error=detail)

"""The one guarded state change. Checkout, return pages, webhooks, khaime_sync and admin all
change a session's status through :func:`transition`, and nowhere else.

It is a conditional UPDATE (``WHERE status = <the status we saw>``) rather than a read-then-write:
of two racing writers only one matches the row, so a payment is completed once, logged once and
signalled once. The loser re-reads the row and re-checks the rule against what is there now.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from . import signals
from .models import PaymentSession, Status, StatusChange

logger = logging.getLogger(__name__)

#: to_status -> the statuses it may be reached from (DESIGN.md, "Status machine").
ALLOWED_FROM: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.CREATED}),
    Status.ERROR: frozenset({Status.CREATED}),
    Status.CANCELLED: frozenset({Status.PENDING}),
    # Money received is never dropped: Khaime's "completed" wins over any unpaid state, even
    # `error` (a create that timed out on our side may still have reached the buyer).
    Status.COMPLETED: frozenset(
        {Status.CREATED, Status.PENDING, Status.CANCELLED, Status.FAILED, Status.EXPIRED, Status.ERROR}
    ),
    Status.FAILED: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.EXPIRED: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.REFUNDED: frozenset({Status.COMPLETED, Status.DISPUTED}),
    Status.DISPUTED: frozenset({Status.COMPLETED}),
}

SIGNAL_FOR_STATUS = {
    Status.PENDING: signals.payment_session_created,
    Status.COMPLETED: signals.payment_completed,
    Status.FAILED: signals.payment_failed,
    Status.EXPIRED: signals.payment_expired,
    Status.CANCELLED: signals.payment_cancelled,
    Status.REFUNDED: signals.payment_refunded,
    Status.DISPUTED: signals.payment_disputed,
    Status.ERROR: signals.payment_checkout_error,
}

_MAX_ATTEMPTS = 3


def can_transition(from_status: str, to_status: str) -> bool:
    return from_status != to_status and from_status in ALLOWED_FROM.get(to_status, ())


def transition(
    session: PaymentSession,
    to_status: str,
    *,
    source: str,
    detail: str = "",
    **fields: Any,
) -> bool:
    """Move ``session`` to ``to_status`` if the status machine allows it from its current status.

    ``fields`` are saved in the same UPDATE (``completed_at=...``, ``last_error=...``). Returns
    True when the status changed (and the log row and signals were written), False when the
    change is not allowed or already happened; ``session`` then holds the current status.
    """
    if to_status not in ALLOWED_FROM:
        raise ValueError(f"No transition leads to {to_status!r}.")
    for _attempt in range(_MAX_ATTEMPTS):
        from_status = session.status
        if not can_transition(from_status, to_status):
            return False
        now = timezone.now()
        with transaction.atomic():
            changed = PaymentSession.objects.filter(pk=session.pk, status=from_status).update(
                status=to_status, updated_at=now, **fields
            )
            if changed:
                StatusChange.objects.create(
                    session_id=session.pk, from_status=from_status, to_status=to_status,
                    source=source, detail=detail[:2000], created_at=now,
                )
                transaction.on_commit(partial(_send_signals, session, from_status, to_status, source))
        if changed:
            session.status = to_status
            session.updated_at = now
            for name, value in fields.items():
                setattr(session, name, value)
            logger.info("Payment session %s: %s -> %s (%s)", session.reference, from_status, to_status, source)
            return True
        # Someone else changed the row since we read it: judge again against what is there now.
        session.status = PaymentSession.objects.values_list("status", flat=True).get(pk=session.pk)
    return False


def _send_signals(session: PaymentSession, from_status: str, to_status: str, source: str) -> None:
    kwargs = {"session": session, "from_status": from_status, "to_status": to_status, "source": source}
    for signal in (SIGNAL_FOR_STATUS[to_status], signals.payment_status_changed):
        send_robust(signal, **kwargs)


def send_robust(signal, **kwargs) -> list[BaseException]:
    """Send a merchant signal; a receiver that raises is logged, never propagated."""
    errors = []
    for receiver, result in signal.send_robust(sender=PaymentSession, **kwargs):
        if isinstance(result, BaseException):
            errors.append(result)
            session = kwargs.get("session")
            logger.error(
                "Signal receiver %r raised for payment session %s",
                receiver, getattr(session, "reference", None), exc_info=result,
            )
    return errors

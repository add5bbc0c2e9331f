"""The one guarded state change. Checkout, return pages, webhooks, khaime_sync and admin all
change a session's status through :func:`transition`, and nowhere else.

It is a conditional UPDATE (``WHERE status = <the status we saw>``) rather than a read-then-write:
of two racing writers only one matches the row, so a payment is completed once, logged once and
signalled once. The loser re-reads the row and re-checks the rule against what is there now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Q, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.dispatch import Signal
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

SIGNAL_FOR_STATUS: dict[str, Signal] = {
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

#: Called after the commit with the exceptions merchant signal receivers raised.
ReceiverErrorHook = Callable[[list[BaseException]], None]


def can_transition(from_status: str, to_status: str) -> bool:
    return from_status != to_status and from_status in ALLOWED_FROM.get(to_status, ())


def transition(
    session: PaymentSession,
    to_status: str,
    *,
    source: str,
    detail: str = "",
    on_receiver_errors: ReceiverErrorHook | None = None,
    **fields: Any,
) -> bool:
    """Move ``session`` to ``to_status`` if the status machine allows it from its current status.

    ``fields`` are saved in the same UPDATE (``completed_at=...``, ``last_error=...``). Returns
    True when the status changed (and the log row and signals were written), False when the
    change is not allowed or already happened; ``session`` then holds the current status.
    ``on_receiver_errors(errors)`` is called, after the commit, with the exceptions merchant
    receivers raised (the webhook records them on its event).
    """
    if to_status not in ALLOWED_FROM:
        raise ValueError(f"No transition leads to {to_status!r}.")
    for _attempt in range(_MAX_ATTEMPTS):
        from_status = session.status
        if not can_transition(from_status, to_status):
            return False
        now = timezone.now()
        # savepoint=False: inside a caller's transaction (the webhook's) a savepoint would cost two
        # round trips and buy nothing; a failure here must roll the caller back anyway.
        with transaction.atomic(savepoint=False):
            changed = PaymentSession.objects.filter(pk=session.pk, status=from_status).update(
                status=to_status, updated_at=now, **fields
            )
            if changed:
                # Stamped now, not before the UPDATE: a writer that waited for our row lock must
                # not log its change as earlier than the one it waited for.
                StatusChange.objects.create(
                    session_id=session.pk,
                    from_status=from_status,
                    to_status=to_status,
                    source=source,
                    detail=detail[:2000],
                    created_at=timezone.now(),
                )
                # Receivers get `session`: update it now, because outside an outer transaction
                # leaving this block commits and runs them before the next line after it.
                _set_fields(session, to_status, now, fields)
                transaction.on_commit(
                    partial(_send_signals, session, from_status, to_status, source, on_receiver_errors)
                )
        if changed:
            logger.info("Payment session %s: %s -> %s (%s)", session.reference, from_status, to_status, source)
            return True
        # Someone else changed the row since we read it: judge again against what is there now.
        session.status = PaymentSession.objects.values_list("status", flat=True).get(pk=session.pk)
    return False


def transition_many(
    candidates: QuerySet[PaymentSession],
    to_status: str,
    *,
    source: str,
    detail: str = "",
    **fields: Any,
) -> list[int]:
    """:func:`transition` for a batch (khaime_sync expiring 100,000 stale sessions): the same
    rule, log rows and on-commit signals, in three queries a batch instead of three a session.

    ``candidates`` is a queryset of the sessions to move (it may be ordered and sliced, e.g. one
    keyset page). Returns the primary keys of the sessions that changed, in ascending order.

    How it stays exact without UPDATE ... RETURNING: the candidates are first locked with
    SELECT ... FOR UPDATE, reading only (pk, status). A row a concurrent writer (a webhook) is
    changing is waited for, then re-checked by PostgreSQL against the query's conditions, so a
    session completed meanwhile drops out instead of being overwritten. Locked rows cannot
    change before our UPDATE, so the UPDATE changes exactly them, and the log rows (written
    just before it, see _log_changes) carry each one's real from_status. (SQLite has no row
    locks but lets one writer at a time hold the whole database.) Rows are locked in
    primary-key order, so concurrent batches cannot deadlock. Signals go out after the commit,
    as for :func:`transition`; the full sessions are loaded for them only when a receiver is
    connected.
    """
    allowed = ALLOWED_FROM.get(to_status)
    if allowed is None:
        raise ValueError(f"No transition leads to {to_status!r}.")
    with transaction.atomic():
        rows = [
            (pk, status)
            for pk, status in candidates.select_for_update().values_list("pk", "status")
            if status in allowed
        ]
        if not rows:
            return []
        rows.sort()
        ids = [pk for pk, _ in rows]
        now = timezone.now()
        logged = _log_changes(ids, to_status, source=source, detail=detail, when=now)
        changed = PaymentSession.objects.filter(_pk_in(ids)).update(status=to_status, updated_at=now, **fields)
        if not logged == changed == len(rows):
            # Impossible while the rows are locked; rolling back beats logging a wrong history.
            raise RuntimeError(f"transition_many: locked {len(rows)} sessions, logged {logged}, updated {changed}.")
        transaction.on_commit(partial(_send_batch_signals, rows, to_status, source))
    logger.info("%d payment sessions -> %s (%s)", len(rows), to_status, source)
    return ids


def _set_fields(session: PaymentSession, to_status: str, now, fields: dict[str, Any]) -> None:
    session.status = to_status
    session.updated_at = now
    for name, value in fields.items():
        setattr(session, name, value)


def _log_changes(ids: list[int], to_status: str, *, source: str, detail: str, when) -> int:
    """INSERT the StatusChange rows of a batch with one INSERT ... SELECT from the sessions
    themselves, run before their UPDATE so from_status is each one's current status. Building
    thousands of model instances for bulk_create cost more than the database work."""
    columns = ("session_id", "from_status", "to_status", "source", "detail", "created_at")
    select = (
        PaymentSession.objects.filter(_pk_in(ids))
        .order_by()
        .values_list(
            "pk",
            "status",
            Value(to_status),
            Value(source),
            Value(detail[:2000]),
            Value(when, output_field=models.DateTimeField()),
        )
    )
    sql, params = select.query.sql_with_params()
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {qn(StatusChange._meta.db_table)} ({', '.join(map(qn, columns))}) {sql}", params)
        return cursor.rowcount


def _pk_in(ids: list[int]) -> Q:
    """``pk IN ids`` for a batch. On PostgreSQL the ids travel as one array parameter: compiling
    and binding thousands of placeholders cost more than the database's own work."""
    if connection.vendor == "postgresql":
        return Q(pk__in=RawSQL("SELECT unnest(%s::bigint[])", (ids,)))
    return Q(pk__in=ids)


def _send_batch_signals(rows: list[tuple[int, str]], to_status: str, source: str) -> None:
    wanted = (SIGNAL_FOR_STATUS[to_status], signals.payment_status_changed)
    if not any(signal.has_listeners(PaymentSession) for signal in wanted):
        return  # nobody listens: skip loading thousands of sessions
    sessions = PaymentSession.objects.in_bulk([pk for pk, _ in rows])
    for pk, from_status in rows:
        if pk in sessions:
            _send_signals(sessions[pk], from_status, to_status, source)


def _send_signals(
    session: PaymentSession,
    from_status: str,
    to_status: str,
    source: str,
    on_receiver_errors: ReceiverErrorHook | None = None,
) -> None:
    kwargs = {"session": session, "from_status": from_status, "to_status": to_status, "source": source}
    errors: list[BaseException] = []
    for signal in (SIGNAL_FOR_STATUS[to_status], signals.payment_status_changed):
        errors += send_robust(signal, **kwargs)
    if errors and on_receiver_errors is not None:
        on_receiver_errors(errors)


def send_robust(signal, **kwargs) -> list[BaseException]:
    """Send a merchant signal; a receiver that raises is logged, never propagated."""
    errors = []
    for receiver, result in signal.send_robust(sender=PaymentSession, **kwargs):
        if isinstance(result, BaseException):
            errors.append(result)
            session = kwargs.get("session")
            logger.error(
                "Signal receiver %r raised for payment session %s",
                receiver,
                getattr(session, "reference", None),
                exc_info=result,
            )
    return errors

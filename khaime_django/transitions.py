"""The one guarded state change. Checkout, return pages, webhooks, khaime_sync and admin all
change a session's status through :func:`transition`, and nowhere else.

It is a conditional UPDATE (``WHERE status = <the status we saw>``) rather than a read-then-write:
of two racing writers only one matches the row, so a payment is completed once, logged once and
signalled once. The loser re-reads the row and re-checks the rule against what is there now.

The code serves any model with a ``status`` field: a :class:`StateMachine` describes the model,
its allowed transitions, its history model and its signals, and :func:`register` makes
:func:`transition` and :func:`transition_many` accept its instances (both live in
``state_machines.py`` and are re-exported here, with the registered machines).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from .models import PaymentSession
from .state_machines import (
    PAYMENT_SESSIONS,
    REFUNDS,
    SIGNAL_FOR_STATUS,
    SUBSCRIPTIONS,
    StateMachine,
    machine_for,
    register,
)
from .statuses import ALLOWED_FROM, can_transition
from .transition_sql import MAX_DETAIL, log_changes, pk_in, update_and_log

__all__ = [
    "ALLOWED_FROM",
    "PAYMENT_SESSIONS",
    "REFUNDS",
    "SIGNAL_FOR_STATUS",
    "SUBSCRIPTIONS",
    "StateMachine",
    "can_transition",
    "collect_receiver_errors",
    "current_receiver_error_hook",
    "machine_for",
    "register",
    "send_robust",
    "transition",
    "transition_many",
]

logger = logging.getLogger(__name__)

_MAX_ATTEMPTS = 3

#: Called after the commit with the exceptions merchant signal receivers raised.
ReceiverErrorHook = Callable[[list[BaseException]], None]

# -- receiver errors ------------------------------------------------------------------------------

_receiver_error_hook: contextvars.ContextVar[ReceiverErrorHook | None] = contextvars.ContextVar(
    "khaime_receiver_error_hook", default=None
)


@contextmanager
def collect_receiver_errors(hook: ReceiverErrorHook) -> Iterator[None]:
    """Every transition made inside the block hands what its merchant receivers raise (after the
    commit, whenever that comes) to ``hook(errors)``; the webhook records them on its event."""
    token = _receiver_error_hook.set(hook)
    try:
        yield
    finally:
        _receiver_error_hook.reset(token)


def current_receiver_error_hook() -> ReceiverErrorHook | None:
    """The hook of the innermost :func:`collect_receiver_errors` block, to bind into an
    on-commit callback of one's own."""
    return _receiver_error_hook.get()


# -- one instance ---------------------------------------------------------------------------------


def transition(instance: Any, to_status: str, *, source: str, detail: str = "", **fields: Any) -> bool:
    """Move ``instance`` to ``to_status`` if its state machine allows it from its current status.

    ``fields`` are saved in the same UPDATE (``completed_at=...``, ``last_error=...``). Returns
    True when the status changed (and the history row and signals were written), False when the
    change is not allowed or already happened; ``instance`` then holds the current status.
    """
    machine = machine_for(type(instance))
    machine.check_target(to_status)
    model = machine.model
    for _attempt in range(_MAX_ATTEMPTS):
        from_status = instance.status
        if not machine.can_transition(from_status, to_status):
            return False
        now = timezone.now()
        using = router.db_for_write(model)
        if connections[using].vendor == "postgresql":
            # One statement, atomic by itself: no BEGIN/COMMIT round trips around it.
            changed = update_and_log(machine, instance, from_status, to_status, now, source, detail, fields, using)
            if changed:
                _set_fields(instance, to_status, now, fields)
                transaction.on_commit(
                    partial(
                        _send_signals, machine, instance, from_status, to_status, source, current_receiver_error_hook()
                    ),
                    using=using,
                )
                logger.info("%s %s: %s -> %s (%s)", machine.label, _name(instance), from_status, to_status, source)
                return True
            instance.status = model._default_manager.values_list("status", flat=True).get(pk=instance.pk)
            continue
        # savepoint=False: inside a caller's transaction (the webhook's) a savepoint would cost two
        # round trips and buy nothing; a failure here must roll the caller back anyway.
        with transaction.atomic(savepoint=False):
            changed = bool(
                model._default_manager.filter(pk=instance.pk, status=from_status).update(
                    status=to_status, updated_at=now, **fields
                )
            )
            if changed:
                # Stamped now, not before the UPDATE: a writer that waited for our row lock must
                # not log its change as earlier than the one it waited for.
                machine.history_model._default_manager.create(
                    **{f"{machine.history_fk}_id": instance.pk},
                    from_status=from_status,
                    to_status=to_status,
                    source=source,
                    detail=detail[:MAX_DETAIL],
                    created_at=timezone.now(),
                )
                # Receivers get `instance`: update it now, because outside an outer transaction
                # leaving this block commits and runs them before the next line after it.
                _set_fields(instance, to_status, now, fields)
                transaction.on_commit(
                    partial(
                        _send_signals, machine, instance, from_status, to_status, source, current_receiver_error_hook()
                    )
                )
        if changed:
            logger.info("%s %s: %s -> %s (%s)", machine.label, _name(instance), from_status, to_status, source)
            return True
        # Someone else changed the row since we read it: judge again against what is there now.
        instance.status = model._default_manager.values_list("status", flat=True).get(pk=instance.pk)
    return False


def _name(instance: Any) -> Any:
    return getattr(instance, "reference", None) or getattr(instance, "subscription_id", instance.pk)


def _set_fields(instance: Any, to_status: str, now, fields: dict[str, Any]) -> None:
    instance.status = to_status
    instance.updated_at = now
    for name, value in fields.items():
        setattr(instance, name, value)


# -- a batch --------------------------------------------------------------------------------------


def transition_many(
    candidates: QuerySet[Any],
    to_status: str,
    *,
    source: str,
    detail: str = "",
    **fields: Any,
) -> list[int]:
    """:func:`transition` for a batch (khaime_sync expiring 100,000 stale sessions): the same
    rule, history rows and on-commit signals, in three queries a batch instead of three a row.

    ``candidates`` is a queryset of the rows to move (it may be ordered and sliced, e.g. one
    keyset page). Returns the primary keys of the rows that changed, in ascending order.

    How it stays exact without UPDATE ... RETURNING: the candidates are first locked with
    SELECT ... FOR UPDATE, reading only (pk, status). A row a concurrent writer (a webhook) is
    changing is waited for, then re-checked by PostgreSQL against the query's conditions, so a
    session completed meanwhile drops out instead of being overwritten. Locked rows cannot
    change before our UPDATE, so the UPDATE changes exactly them, and the history rows (written
    just before it, see transition_sql.log_changes) carry each one's real from_status. (SQLite
    has no row locks but lets one writer at a time hold the whole database.) Rows are locked in
    primary-key order, so concurrent batches cannot deadlock. Signals go out after the commit,
    as for :func:`transition`; the full rows are loaded for them only when a receiver is
    connected.
    """
    machine = machine_for(candidates.model)
    allowed = machine.check_target(to_status)
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
        logged = log_changes(machine, ids, to_status, source=source, detail=detail, when=now)
        changed = machine.model._default_manager.filter(pk_in(ids)).update(status=to_status, updated_at=now, **fields)
        if not logged == changed == len(rows):
            # Impossible while the rows are locked; rolling back beats logging a wrong history.
            raise RuntimeError(f"transition_many: locked {len(rows)} rows, logged {logged}, updated {changed}.")
        transaction.on_commit(partial(_send_batch_signals, machine, rows, to_status, source))
    logger.info("%d %ss -> %s (%s)", len(rows), machine.label.lower(), to_status, source)
    return ids


# -- signals --------------------------------------------------------------------------------------


def _send_batch_signals(machine: StateMachine, rows: list[tuple[int, str]], to_status: str, source: str) -> None:
    wanted = (machine.signal_for_status[to_status], machine.changed_signal)
    if not any(signal.has_listeners(machine.model) for signal in wanted):
        return  # nobody listens: skip loading thousands of rows
    instances = machine.model._default_manager.in_bulk([pk for pk, _ in rows])
    for pk, from_status in rows:
        if pk in instances:
            _send_signals(machine, instances[pk], from_status, to_status, source)


def _send_signals(
    machine: StateMachine,
    instance: Any,
    from_status: str,
    to_status: str,
    source: str,
    on_receiver_errors: ReceiverErrorHook | None = None,
) -> None:
    kwargs = {machine.instance_kwarg: instance, "from_status": from_status, "to_status": to_status, "source": source}
    errors: list[BaseException] = []
    for signal in (machine.signal_for_status[to_status], machine.changed_signal):
        errors += send_robust(signal, sender=machine.model, **kwargs)
    if errors and on_receiver_errors is not None:
        on_receiver_errors(errors)


def send_robust(signal: Signal, *, sender: type[models.Model] = PaymentSession, **kwargs: Any) -> list[BaseException]:
    """Send a merchant signal; a receiver that raises is logged, never propagated."""
    errors = []
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, BaseException):
            errors.append(result)
            instance = kwargs.get("session", kwargs.get("subscription", kwargs.get("refund", kwargs.get("instance"))))
            logger.error(
                "Signal receiver %r raised for %s %s",
                receiver,
                sender._meta.verbose_name,
                getattr(instance, "reference", None)
                or getattr(instance, "subscription_id", getattr(instance, "pk", None)),
                exc_info=result,
            )
    return errors

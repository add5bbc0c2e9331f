"""khaime-django's work as tasks of Django's Tasks framework (``docs/background.md``).

- :data:`apply_webhook_event_task`: applies one recorded webhook event; the webhook view enqueues
  it in task mode (``KHAIME["WEBHOOK_PROCESSING"] = "task"``) through :func:`receive_webhook_event`.
- :data:`apply_waiting_events_task`, :data:`sync_sessions_task`, :data:`expire_stale_task`,
  :data:`prune_webhook_events_task`: the reconciliation ``khaime_sync`` and
  ``khaime_prune_events`` do, for whatever runs a merchant's periodic jobs.

Arguments and return values are JSON (durations in seconds), as every backend requires.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.db import router, transaction

from . import task_engine, task_enqueue_sql
from .models import WebhookEvent, WebhookOutcome
from .services import inbox, reconcile
from .webhooks import KhaimeEvent

logger = logging.getLogger(__name__)


@task_engine.task
def apply_webhook_event_task(event_pk: int) -> str:
    """Apply the recorded webhook event ``event_pk`` once; returns its outcome (``duplicate`` when
    another run or a redelivery applied it first)."""
    return inbox.apply_recorded_event(event_pk)


@task_engine.task
def apply_waiting_events_task(older_than_seconds: float | None = None, limit: int = 1000) -> int:
    """Apply events still ``received`` after KHAIME["WEBHOOK_RECOVERY_DELAY"] (or ``older_than_seconds``)."""
    return inbox.apply_waiting_events(older_than=_seconds(older_than_seconds), limit=limit)


@task_engine.task
def sync_sessions_task(budget: int = 100, grace_seconds: float | None = None) -> dict:
    """``khaime_sync``: ask Khaime about sessions left pending, within ``budget`` requests."""
    report = reconcile.sync_sessions(budget=budget, grace=_seconds(grace_seconds))
    return {
        "checked": report.checked,
        "changed": dict(report.changed),
        "errors": report.errors,
        "requests": report.requests,
        "stopped": report.stopped,
        "unreachable": report.unreachable,
    }


@task_engine.task
def expire_stale_task(grace_seconds: float | None = None) -> int:
    """``khaime_sync --offline``: expire sessions long past ``expires_at`` without asking Khaime."""
    return reconcile.expire_stale(grace=_seconds(grace_seconds))


@task_engine.task
def prune_webhook_events_task(older_than_seconds: float, include_failed: bool = False) -> int:
    """``khaime_prune_events``: delete processed webhook events older than ``older_than_seconds``."""
    return inbox.prune_webhook_events(older_than=timedelta(seconds=older_than_seconds), include_failed=include_failed)


def receive_webhook_event(event: KhaimeEvent) -> str:
    """Task mode's webhook: record the event and enqueue its apply (once the event is committed).
    Returns ``received`` (stored, to be applied) or ``duplicate`` (processed before).

    A redelivery of an event not applied yet enqueues it again: the task is idempotent, and a
    lost first enqueue is then made good by Khaime's own retry. On the database backend the
    event and its task commit together: on PostgreSQL with django-tasks-db in one statement
    (:mod:`~khaime_django.task_enqueue_sql`), elsewhere in one transaction. On any other backend a
    new event is one INSERT (:func:`~khaime_django.services.inbox.insert_new_event`) and the
    enqueue follows it.
    """
    using = router.db_for_write(WebhookEvent)
    if not transaction.get_connection(using).in_atomic_block and task_engine.enqueues_in_database(using):
        try:
            backend = task_engine.get_backend()
            if task_enqueue_sql.supported(backend, using):
                recorded = task_enqueue_sql.record_and_enqueue(
                    inbox.new_record(event),
                    task_engine.bound(apply_webhook_event_task),
                    backend,
                    using,
                    retry=inbox.RETRY_OUTCOMES,
                )
                return WebhookOutcome.RECEIVED if recorded.enqueued else WebhookOutcome.DUPLICATE
            with transaction.atomic(using=using):
                pk = inbox.insert_new_event(event)
                if pk is not None:
                    task_engine.enqueue(apply_webhook_event_task, pk)
                    return WebhookOutcome.RECEIVED
            new = False
        except Exception:  # noqa: BLE001 - rolled back; stored again below, alone, and logged there
            logger.warning("Could not record and enqueue Khaime webhook event %s together", event.event_id)
            new = _store_alone(event, using)
    else:
        new = _store_alone(event, using)
    if new:
        return WebhookOutcome.RECEIVED
    with transaction.atomic(using=using):
        record = inbox.count_redelivery(event.event_id)
        if record.outcome not in inbox.RETRY_OUTCOMES:
            return WebhookOutcome.DUPLICATE
        transaction.on_commit(partial(enqueue_apply, record.pk, record.event_id), using=using)
    return WebhookOutcome.RECEIVED


def _store_alone(event: KhaimeEvent, using: str) -> bool:
    """INSERT the event if it is new and, once that commits, enqueue its apply. Outside a
    transaction (the webhook view) the enqueue runs at once: the INSERT has committed."""
    pk = inbox.insert_new_event(event)
    if pk is None:
        return False
    transaction.on_commit(partial(enqueue_apply, pk, event.event_id), using=using)
    return True


def enqueue_apply(event_pk: int, event_id: str = "") -> bool:
    """Enqueue :data:`apply_webhook_event_task`; never raises. The event is stored whatever
    happens here: if the backend is down, ``khaime_sync`` applies it after
    KHAIME["WEBHOOK_RECOVERY_DELAY"]. Returns whether the backend took it."""
    try:
        task_engine.enqueue(apply_webhook_event_task, event_pk)
    except Exception:
        logger.exception(
            "Could not enqueue Khaime webhook event %s; it is stored as received and khaime_sync applies it "
            "after KHAIME['WEBHOOK_RECOVERY_DELAY']",
            event_id or event_pk,
        )
        return False
    return True


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)

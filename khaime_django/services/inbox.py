"""The webhook inbox: record a verified event once, apply it once, re-apply it from the admin,
prune old ones.

Applying dispatches on the event type's family (the part before the first dot) through
:data:`EVENT_HANDLERS`; each family's rules live in a module of their own (``payments.py`` now).
A handler takes ``(record, event, source)`` and returns an :class:`Applied`.
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, F, Min
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from ..conf import khaime_settings
from ..inserts import insert_unless_conflict
from ..models import Source, WebhookEvent, WebhookOutcome
from ..transitions import collect_receiver_errors
from ..webhooks import KhaimeEvent
from . import ledger, refund_events, subscription_events
from .events import MAX_ERROR_TEXT, Applied, EventHandler

logger = logging.getLogger(__name__)

#: Event family ("payment" of "payment.succeeded") -> the handler that applies its events. An
#: event of a family not listed here is stored and answered ``ignored``.
EVENT_HANDLERS: dict[str, EventHandler] = {
    "payment": ledger.apply_payment_event,
    "subscription": subscription_events.apply_subscription_event,
    "refund": refund_events.apply_refund_event,
}

#: A stored event with one of these outcomes is applied on its next delivery; any other outcome
#: means it was processed, and another delivery is answered "duplicate" and changes nothing.
#: Only an event that was processed counts as processed: one that failed on our side is retried.
RETRY_OUTCOMES = frozenset({WebhookOutcome.RECEIVED, WebhookOutcome.ERROR})

#: Outcomes khaime_prune_events deletes; error/unmatched/received ones stay for a human unless asked.
PRUNABLE_OUTCOMES = (WebhookOutcome.APPLIED, WebhookOutcome.IGNORED, WebhookOutcome.DUPLICATE)
PRUNE_BATCH_SIZE = 1000


def handle_webhook_event(event: KhaimeEvent) -> str:
    """Record and apply a verified event in one transaction; returns this delivery's outcome.
    The webhook view calls this, and so can events that reach you another way (a queue, a replay).

    The apply runs without a savepoint of its own (two round trips fewer on every event). If it
    fails, the whole transaction rolls back, the event row with it, and the delivery is recorded
    and applied once more with the savepoint, so that a second failure is stored on the event
    (``error``, with the traceback) while whatever the apply had changed is not.
    """
    try:
        with transaction.atomic():
            record = record_webhook_event(event)
            return apply_webhook_event(record, isolated=False)
    except Exception:  # nothing of the first try committed; the second one stores a failure
        logger.warning("Applying Khaime webhook event %s failed; trying once more", event.event_id, exc_info=True)
    with transaction.atomic():
        record = record_webhook_event(event)
        return apply_webhook_event(record)


def record_webhook_event(event: KhaimeEvent) -> WebhookEvent:
    """Store a verified event in the inbox, or count one more delivery of one already there.
    Call inside a transaction: the row stays locked until it ends.

    The unique ``event_id``, not a read-then-write, decides which of two concurrent deliveries
    inserts (:func:`~khaime_django.inserts.insert_unless_conflict`). The other one's INSERT waits
    for that transaction to end and inserts nothing; it then reads the row with the outcome that
    transaction committed, under a lock, so it answers "duplicate" instead of applying again. The
    INSERT comes first because most deliveries are new: they then cost one statement.
    """
    record = new_record(event)
    if insert_unless_conflict(record):
        return record
    return count_redelivery(event.event_id)


def count_redelivery(event_id: str) -> WebhookEvent:
    """Lock a stored event (until the transaction ends) and count one more delivery of it."""
    record = WebhookEvent.objects.select_for_update().get(event_id=event_id)
    WebhookEvent.objects.filter(pk=record.pk).update(deliveries=F("deliveries") + 1)
    record.deliveries += 1
    return record


def insert_new_event(event: KhaimeEvent) -> int | None:
    """Store ``event`` if it is new: its primary key, or None when the event_id is stored already
    (a redelivery: :func:`count_redelivery` counts it under its lock). Task mode's fast path: on
    PostgreSQL and SQLite a new event costs one statement, with no transaction around it."""
    record = new_record(event)
    return record.pk if insert_unless_conflict(record) else None


def new_record(event: KhaimeEvent) -> WebhookEvent:
    """The inbox row of ``event``, not saved yet."""
    return WebhookEvent(
        event_id=event.event_id,
        event_type=event.event_type,
        api_version=event.api_version,
        is_live=event.is_live,
        payload=event.payload,
    )


def apply_webhook_event(
    record: WebhookEvent, *, source: str = Source.WEBHOOK, again: bool = False, isolated: bool = True
) -> str:
    """Apply a recorded event, once. Call inside the transaction that locked ``record``
    (:func:`record_webhook_event`, or :func:`apply_webhook_event_again`). Returns this
    delivery's outcome: ``duplicate`` when the event was processed before, else the outcome now
    stored on it. ``again=True`` also re-applies an ``unmatched`` event.

    Our own failure is stored as ``error`` with the traceback, never raised: the view answers
    500 and Khaime's retry of the same event_id applies it again. With ``isolated=False`` the
    apply has no savepoint and a failure is raised instead: the caller's transaction must then
    roll back whole (:func:`handle_webhook_event` does, and tries again isolated).
    """
    if not transaction.get_connection().in_atomic_block:
        raise TransactionManagementError("apply_webhook_event() needs the transaction that locked the event.")
    retryable = RETRY_OUTCOMES | ({WebhookOutcome.UNMATCHED} if again else set())
    if record.outcome not in retryable:
        return WebhookOutcome.DUPLICATE
    try:
        with transaction.atomic(savepoint=isolated), collect_receiver_errors(_ReceiverErrors(record)):
            applied = dispatch(record, source=source)
        error = ""
    except Exception as exc:
        if not isolated:
            raise
        # Leaving the block above rolled back to its savepoint whatever the apply had changed
        # (status, log row, pending signals). The event row, written before the savepoint, stays
        # and commits with this error, so the admin sees it and Khaime's retry applies it again.
        logger.exception("Applying Khaime webhook event %s failed", record.event_id)
        applied = Applied(WebhookOutcome.ERROR)
        error = "".join(traceback.format_exception(exc))[-MAX_ERROR_TEXT:]
    record.outcome, record.session, record.detail = applied.outcome, applied.session, applied.detail[:MAX_ERROR_TEXT]
    record.error, record.processed_at = error, timezone.now()
    record.save(update_fields=["outcome", "session", "detail", "error", "processed_at"])
    return applied.outcome


def dispatch(record: WebhookEvent, *, source: str) -> Applied:
    """Hand ``record``'s event to the handler of its family; runs in a transaction."""
    event = KhaimeEvent.from_payload(record.payload, api_version_header=record.api_version)
    handler = EVENT_HANDLERS.get(event.event_type.partition(".")[0])
    if handler is None:
        return Applied(WebhookOutcome.IGNORED, detail=f"{event.event_type} is not an event khaime-django applies")
    return handler(record, event, source)


def apply_recorded_event(pk: int, *, source: str = Source.WEBHOOK) -> str:
    """Apply the stored event ``pk`` if it still waits: what the background task and the recovery
    sweep run. The same lock and :func:`apply_webhook_event` as the inline path, so running it
    twice, or racing a redelivery of the same event, applies the event once (the loser answers
    ``duplicate``). An event pruned meanwhile is ``missing``."""
    with transaction.atomic():
        record = WebhookEvent.objects.select_for_update().filter(pk=pk).first()
        if record is None:
            return MISSING
        return apply_webhook_event(record, source=source)


#: What :func:`apply_recorded_event` answers for an event no longer stored.
MISSING = "missing"


def waiting_events(*, older_than: timedelta | None = None, with_errors: bool = False):
    """Events recorded but not applied yet (``received``; with ``with_errors``, also those whose
    apply ended in ``error``), the oldest first; with ``older_than``, only those waiting longer
    than that."""
    outcomes = (WebhookOutcome.RECEIVED, WebhookOutcome.ERROR) if with_errors else (WebhookOutcome.RECEIVED,)
    waiting = WebhookEvent.objects.filter(outcome__in=outcomes)
    if older_than is not None:
        waiting = waiting.filter(received_at__lt=timezone.now() - older_than)
    return waiting.order_by("received_at", "pk")


def waiting_summary() -> tuple[int, timedelta | None]:
    """How many events wait to be applied, and how long the oldest has waited (admin, monitoring)."""
    stats = WebhookEvent.objects.filter(outcome=WebhookOutcome.RECEIVED).aggregate(
        n=Count("pk"), oldest=Min("received_at")
    )
    oldest = stats["oldest"]
    return stats["n"], (timezone.now() - oldest if oldest is not None else None)


def apply_waiting_events(*, older_than: timedelta | None = None, limit: int = 1000, dry_run: bool = False) -> int:
    """Apply events still ``received`` after ``older_than`` (KHAIME["WEBHOOK_RECOVERY_DELAY"]):
    the recovery path when an enqueue was lost or a worker died. Returns how many were applied
    (or, with ``dry_run``, would be). Each event is applied in its own transaction, through
    :func:`apply_recorded_event`, so a worker that gets to it first wins and this one skips it.

    In task mode an event whose apply ended in ``error`` is tried again too: Khaime got its 2xx
    and will not redeliver it, which in inline mode its retries would have done. One that fails
    again stays ``error`` (shown in the admin) and is tried on the next run."""
    delay = khaime_settings.WEBHOOK_RECOVERY_DELAY if older_than is None else older_than
    waiting = waiting_events(older_than=delay, with_errors=khaime_settings.WEBHOOK_PROCESSING == "task")
    if dry_run:
        return waiting[:limit].count()
    applied = 0
    for pk in list(waiting.values_list("pk", flat=True)[:limit]):
        if apply_recorded_event(pk) not in (WebhookOutcome.DUPLICATE, WebhookOutcome.ERROR, MISSING):
            applied += 1
    return applied


def apply_webhook_event_again(record: WebhookEvent, *, source: str = Source.ADMIN) -> str:
    """The admin's "Apply again": re-apply a stored event that ended in error or unmatched."""
    with transaction.atomic():
        locked = WebhookEvent.objects.select_for_update().get(pk=record.pk)
        return apply_webhook_event(locked, source=source, again=True)


class _ReceiverErrors:
    """Records on the event what merchant receivers raised. Called after the commit, so it
    writes on its own; a receiver's exception never turns the acknowledgement into an error."""

    def __init__(self, record: WebhookEvent):
        self.record = record
        self.lines: list[str] = []

    def __call__(self, errors: list[BaseException]) -> None:
        for error in errors:
            logger.error(
                "A signal receiver raised while applying Khaime webhook event %s: %r",
                self.record.event_id,
                error,
                exc_info=error,
            )
            self.lines.append(f"signal receiver raised {type(error).__name__}: {error}")
        self.record.error = "\n".join(self.lines)[:MAX_ERROR_TEXT]
        try:
            WebhookEvent.objects.filter(pk=self.record.pk).update(error=self.record.error)
        except Exception:  # never let bookkeeping fail the commit hooks that follow
            logger.exception("Could not record receiver errors on webhook event %s", self.record.event_id)


def prune_webhook_events(
    *, older_than: timedelta, include_failed: bool = False, dry_run: bool = False, batch_size: int = PRUNE_BATCH_SIZE
) -> int:
    """Delete webhook events received more than ``older_than`` ago, in batches (short locks,
    bounded memory). Returns how many were (or would be) deleted.

    Deleting an event also forgets its event_id, so keep ``older_than`` well beyond Khaime's
    retry window (3 attempts, 2 s apart) — days, not minutes.
    """
    old = WebhookEvent.objects.filter(received_at__lt=timezone.now() - older_than)
    if not include_failed:
        old = old.filter(outcome__in=PRUNABLE_OUTCOMES)
    if dry_run:
        return old.count()
    deleted = 0
    while True:
        ids = list(old.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += WebhookEvent.objects.filter(pk__in=ids).delete()[0]


#: Keys whose values are the customer's personal data, wherever they appear in a payload.
PERSONAL_KEYS = frozenset(
    {
        "customer",
        "customer_email",
        "customer_name",
        "email",
        "name",
        "first_name",
        "last_name",
        "phone",
        "address",
        "billing_details",
        "shipping",
    }
)
REDACTED = "[redacted]"


def redact_webhook_payloads(*, older_than: timedelta, dry_run: bool = False, batch_size: int = PRUNE_BATCH_SIZE) -> int:
    """Remove the customer's personal data (:data:`PERSONAL_KEYS`) from the payloads of events
    received more than ``older_than`` ago, in batches; the event, its id (the de-duplication),
    amounts, references and outcome stay. Returns how many were (or would be) redacted."""
    old = WebhookEvent.objects.filter(received_at__lt=timezone.now() - older_than, redacted_at__isnull=True)
    if dry_run:
        return old.count()
    redacted = 0
    while True:
        with transaction.atomic():
            batch = list(old.order_by("pk").select_for_update()[:batch_size].only("pk", "payload"))
            if not batch:
                return redacted
            now = timezone.now()
            for record in batch:
                record.payload, record.redacted_at = without_personal_data(record.payload), now
            WebhookEvent.objects.bulk_update(batch, ["payload", "redacted_at"])
        redacted += len(batch)


def without_personal_data(payload):
    """``payload`` with the value of every :data:`PERSONAL_KEYS` key replaced, at any depth
    (iterative: a stored payload is at most webhooks.MAX_NESTING deep, but never trust that)."""
    root = [payload]
    pending: list[dict | list] = [root]
    while pending:
        container = pending.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in list(items):
            if isinstance(container, dict) and key in PERSONAL_KEYS and value not in (None, "", {}, []):
                container[key] = REDACTED
            elif isinstance(value, (dict, list)):
                pending.append(value)
    return root[0]

"""Reconciliation in bulk (``manage.py khaime_sync`` and its tasks): ask Khaime about the
sessions it may still report on, within a request budget (``sync_sessions``, answering a
``SyncReport``), expire stale sessions without asking (``expire_stale``), and repair rows a dead
request left in ``created`` (``abandon_stale_created``).

Asking about one session and applying the answer is ``session_refresh``'s; its names are
importable from here as well, as they were before it had a module of its own.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from django.db.models import Q, QuerySet
from django.utils import timezone

from ..client import get_client
from ..conf import khaime_settings
from ..exceptions import (
    KhaimeAuthenticationError,
    KhaimeConnectionError,
    KhaimeError,
    KhaimeRateLimitError,
    KhaimeServerError,
)
from ..models import PaymentSession, Source
from ..statuses import AWAITING_STATUSES, Status, can_transition
from ..transitions import transition_many
from .checkout import ABANDONED_DETAIL, ABANDONED_ERROR, in_flight_limit
from .session_refresh import (
    RATE_LIMIT_BACKOFF,
    WEBHOOK_POLL_STEP,
    apply_khaime_status,
    refresh_if_due,
    refresh_session,
    remote_target,
    take_refresh_budget,
    wait_for_webhook,
    worth_asking,
    worth_asking_q,
)

__all__ = [
    "EXPIRE_BATCH_SIZE",
    "RATE_LIMIT_BACKOFF",
    "WEBHOOK_POLL_STEP",
    "SyncReport",
    "abandon_stale_created",
    "apply_khaime_status",
    "expire_stale",
    "refresh_if_due",
    "refresh_session",
    "remote_target",
    "sync_sessions",
    "take_refresh_budget",
    "wait_for_webhook",
    "worth_asking",
    "worth_asking_q",
]

logger = logging.getLogger(__name__)

EXPIRE_BATCH_SIZE = 1000


@dataclass
class SyncReport:
    """What one khaime_sync run did (the command prints it)."""

    dry_run: bool = False
    requests: int = 0
    checked: int = 0
    changed: Counter = field(default_factory=Counter)
    errors: int = 0
    #: Requests that got no usable answer (connection refused, timeout, 5xx).
    unanswered: int = 0
    #: Why the run stopped before its budget was spent ("" when it did not).
    stopped: str = ""
    #: Khaime could not be used at all: nothing answered, or it refused our key.
    unreachable: bool = False
    #: --offline: sessions expired (or that would be) past expires_at + grace, Khaime not asked.
    offline: bool = False
    expired_offline: int = 0
    #: Rows still in `created` past the in-flight limit, moved to `error` (both modes).
    abandoned: int = 0


def sync_sessions(
    *,
    budget: int = 100,
    grace: timedelta | None = None,
    dry_run: bool = False,
    on_change: Callable[[PaymentSession, str, str], None] | None = None,
) -> SyncReport:
    """Ask Khaime about sessions still pending or cancelled ``grace`` after creation, and about
    ``failed`` or ``expired`` ones created within RECHECK_LOOKBACK, newest first, and apply the
    answers, spending at most ``budget`` requests (Khaime allows 1,000 an hour per key). Stops at
    the first 429. A session asked about within ``grace`` is skipped, so successive runs work
    through a backlog instead of re-asking about the newest ones.

    The client is ``get_client(max_retries=0)``: one request per session, so the budget
    is exact, and a failure waits for the next run rather than spending more of the hour's quota.
    """
    report = SyncReport(dry_run=dry_run)
    grace = khaime_settings.SYNC_GRACE if grace is None else grace
    client = get_client(max_retries=0)
    now = timezone.now()
    cutoff = now - grace
    due = (
        PaymentSession.objects.filter(worth_asking_q(now), session_id__isnull=False, created_at__lte=cutoff)
        .filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lte=cutoff))
        .order_by("-created_at", "-pk")
    )
    for session in due[: max(budget, 0)].iterator(chunk_size=100):
        report.requests += 1
        try:
            # The query took only sessions with a session_id.
            data = client.get_session(cast(str, session.session_id))
        except KhaimeRateLimitError:
            report.stopped = "Khaime rate limit (429)"
            break
        except KhaimeAuthenticationError as error:
            report.errors += 1
            report.stopped = "Khaime refused the API key"
            report.unreachable = True
            logger.error("khaime_sync: %s", error)
            break
        except (KhaimeConnectionError, KhaimeServerError) as error:
            report.errors += 1
            report.unanswered += 1
            logger.warning("khaime_sync: could not ask Khaime about session %s: %s", session.reference, error)
            continue
        except KhaimeError as error:
            report.errors += 1
            logger.warning("khaime_sync: Khaime could not say about session %s: %s", session.reference, error)
            continue
        report.checked += 1
        before = session.status
        if dry_run:
            target = remote_target(data)
            changed = target is not None and can_transition(before, target)
        else:
            changed = apply_khaime_status(session, data, source=Source.SYNC)
            target = session.status
        if changed and target is not None:
            report.changed[target] += 1
            if on_change:
                on_change(session, before, target)
    if report.requests > 0 and report.unanswered == report.requests:
        report.unreachable = True
    return report


def expire_stale(
    *,
    grace: timedelta | None = None,
    dry_run: bool = False,
    batch_size: int = EXPIRE_BATCH_SIZE,
) -> int:
    """Expire, without asking Khaime, sessions still pending or cancelled ``grace`` past their
    ``expires_at``. Returns how many were (or, with ``dry_run``, would be) expired.

    Works in primary-key batches (keyset pagination) through ``transition_many``, so memory stays
    bounded however many sessions are stale and each batch commits (and signals) on its own.
    A payment Khaime reports later still completes an expired session.
    """
    grace = khaime_settings.SYNC_GRACE if grace is None else grace
    stale = PaymentSession.objects.filter(status__in=AWAITING_STATUSES, expires_at__lt=timezone.now() - grace).order_by(
        "pk"
    )
    if dry_run:
        return stale.count()
    return _transition_in_batches(stale, Status.EXPIRED, batch_size=batch_size, detail="expires_at passed")


def abandon_stale_created(*, dry_run: bool = False, batch_size: int = EXPIRE_BATCH_SIZE) -> int:
    """Move rows still ``created`` longer than any create call can take (``in_flight_limit()``)
    to ``error``: the request that inserted them died between its INSERT and Khaime's answer (a
    killed worker, a dropped connection). Khaime may hold a session for such a row; a later
    ``payment.succeeded`` matched by ``metadata.reference`` still completes it (``error ->
    completed`` is allowed). Returns how many were (or, with ``dry_run``, would be) moved.

    Works in primary-key batches, like ``expire_stale``; needs no API key and makes no request.
    """
    stale = PaymentSession.objects.filter(
        status=Status.CREATED, created_at__lt=timezone.now() - timedelta(seconds=in_flight_limit())
    ).order_by("pk")
    if dry_run:
        return stale.count()
    return _transition_in_batches(
        stale, Status.ERROR, batch_size=batch_size, detail=ABANDONED_DETAIL, last_error=ABANDONED_ERROR
    )


def _transition_in_batches(
    stale: QuerySet[PaymentSession], target: str, *, batch_size: int, detail: str, **fields: Any
) -> int:
    """Move every row of ``stale`` (ordered by pk) to ``target``, one keyset page of
    ``batch_size`` at a time; returns how many moved."""
    moved = 0
    last_pk = 0
    while True:
        # One keyset page, locked and changed by transition_many; each page commits on its own.
        changed = transition_many(
            stale.filter(pk__gt=last_pk)[:batch_size], target, source=Source.SYNC, detail=detail, **fields
        )
        if not changed:
            return moved
        moved += len(changed)
        last_pk = changed[-1]

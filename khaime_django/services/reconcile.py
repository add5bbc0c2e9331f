"""Reconciliation: ask Khaime what became of a session and apply it (return pages, admin,
khaime_sync), and expire stale sessions without asking."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from django.db.models import Q
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
from ..statuses import AWAITING_STATUSES, REMOTE_STATUS, REMOTE_STATUS_UNCHANGED, Status, can_transition
from ..timestamps import parse_timestamp
from ..transitions import transition, transition_many
from . import payments

logger = logging.getLogger(__name__)

EXPIRE_BATCH_SIZE = 1000


def refresh_session(
    session: PaymentSession,
    *,
    source: str = Source.RETURN,
    timeout: tuple[float, float] | None = None,
) -> PaymentSession:
    """Ask Khaime for the session's status and apply it. Raises ``KhaimeError`` if Khaime can't say."""
    if not session.session_id:
        return session
    data = get_client().get_session(session.session_id, timeout=timeout)
    apply_khaime_status(session, data, source=source)
    return session


def refresh_if_due(session: PaymentSession, *, source: str = Source.RETURN) -> bool:
    """``refresh_session`` at most once per STATUS_REFRESH_INTERVAL per session (the return and
    status pages are reloaded and polled; Khaime allows 1,000 requests an hour per key).

    Khaime errors are logged, not raised. Returns False only when Khaime was asked and could not
    answer (the page then says it could not confirm yet)."""
    if session.is_final or session.status == Status.ERROR or not session.session_id:
        return True
    interval = timedelta(seconds=khaime_settings.STATUS_REFRESH_INTERVAL)
    if session.last_checked_at and session.last_checked_at > timezone.now() - interval:
        return True
    try:
        refresh_session(session, source=source, timeout=khaime_settings.RETURN_TIMEOUT)
    except KhaimeError as error:
        logger.warning("Could not ask Khaime about payment session %s: %s", session.reference, error)
        # A failed attempt counts too: otherwise, while Khaime is down or rate limiting us, every
        # poll of every open status page becomes a Khaime request (with retries).
        _mark_checked(session, timezone.now())
        return False
    return True


def remote_target(data: Mapping[str, Any]) -> str | None:
    """The status Khaime's answer about a session moves it to, or None (still pending, unknown)."""
    return REMOTE_STATUS.get(data.get("status", ""))


def apply_khaime_status(session: PaymentSession, data: Mapping[str, Any], *, source: str) -> bool:
    """Apply what ``GET /payments/sessions/{id}`` said. Returns True when the status changed."""
    now = timezone.now()
    remote = data.get("status")
    target = remote_target(data)
    changed = False
    if target == Status.COMPLETED:
        changed = _complete(session, data, source=source, now=now)
    elif target is not None:
        changed = transition(session, target, source=source, detail=f"Khaime says {remote}", last_checked_at=now)
    elif remote not in REMOTE_STATUS_UNCHANGED:
        logger.warning("Khaime reported unknown status %r for payment session %s", remote, session.reference)
    if not changed:
        _mark_checked(session, now)
    return changed


def _complete(session: PaymentSession, data: Mapping[str, Any], *, source: str, now) -> bool:
    """Apply Khaime's "completed" after the same review a payment webhook gets."""
    why = f"Khaime says {data.get('status')}"
    is_live = {"live": True, "sandbox": False}.get(data.get("mode", ""))
    wrong_mode = payments.mode_mismatch(session, is_live)
    if wrong_mode:
        if payments.flag_for_review(session, f"{why}: {wrong_mode}"):
            payments.notify_review(session)
        return False
    amount, currency = data.get("amount"), data.get("currency")
    paid = None
    if isinstance(amount, int) and not isinstance(amount, bool) and isinstance(currency, str) and currency:
        paid = (amount, currency)
    reasons = payments.review_payment(session, paid)
    flagged = payments.flag_for_review(session, f"{why}: {'; '.join(reasons)}") if reasons else False
    completed_at = parse_timestamp(data.get("completed_at")) or now
    changed = transition(
        session, Status.COMPLETED, source=source, detail=why, last_checked_at=now, completed_at=completed_at
    )
    if flagged:
        payments.notify_review(session)
    return changed


def _mark_checked(session: PaymentSession, when) -> None:
    PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=when)
    session.last_checked_at = when


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


def sync_sessions(
    *,
    budget: int = 100,
    grace: timedelta | None = None,
    dry_run: bool = False,
    on_change: Callable[[PaymentSession, str, str], None] | None = None,
) -> SyncReport:
    """Ask Khaime about sessions still pending or cancelled ``grace`` after creation, newest
    first, and apply the answers, spending at most ``budget`` requests (Khaime allows 1,000 an
    hour per key). Stops at the first 429. A session asked about within ``grace`` is skipped, so
    successive runs work through a backlog instead of re-asking about the newest ones.

    The client is ``get_client(max_retries=0)``: one request per session, so the budget
    is exact, and a failure waits for the next run rather than spending more of the hour's quota.
    """
    report = SyncReport(dry_run=dry_run)
    grace = khaime_settings.SYNC_GRACE if grace is None else grace
    client = get_client(max_retries=0)
    cutoff = timezone.now() - grace
    due = (
        PaymentSession.objects.filter(status__in=AWAITING_STATUSES, session_id__isnull=False, created_at__lte=cutoff)
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
    expired = 0
    last_pk = 0
    while True:
        # One keyset page, locked and changed by transition_many; each page commits on its own.
        changed = transition_many(
            stale.filter(pk__gt=last_pk)[:batch_size], Status.EXPIRED, source=Source.SYNC, detail="expires_at passed"
        )
        if not changed:
            return expired
        expired += len(changed)
        last_pk = changed[-1]

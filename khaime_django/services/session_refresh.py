"""Asking Khaime about one payment session and applying its answer: the return pages and the
status endpoint (``refresh_if_due``, ``wait_for_webhook``), the admin (``refresh_session``), and
``khaime_sync`` (``apply_khaime_status``).

Page loads ask at most once per STATUS_REFRESH_INTERVAL per session, and all of them together
within REFRESH_BUDGET_PER_HOUR (``take_refresh_budget``: one ``RefreshBudget`` row per API key
and hour), so buyers refreshing a page cannot spend the key's hourly quota.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import connections, router
from django.db.models import F, Q
from django.utils import timezone

from ..client import get_client
from ..conf import khaime_settings
from ..exceptions import KhaimeError, KhaimeRateLimitError
from ..inserts import insert_unless_conflict
from ..models import PaymentSession, RefreshBudget, Source
from ..statuses import AWAITING_STATUSES, RECHECKED_STATUSES, REMOTE_STATUS, REMOTE_STATUS_UNCHANGED, Status
from ..timestamps import parse_timestamp
from ..transitions import transition
from . import payments

logger = logging.getLogger(__name__)


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
    """Ask Khaime about the session for a page load (the success page, the status endpoint), at
    most once per STATUS_REFRESH_INTERVAL per session, within REFRESH_BUDGET_PER_HOUR.

    The ask is claimed with a conditional UPDATE of ``last_checked_at``, so of many concurrent
    polls only one calls Khaime. The call makes one attempt that ends within RETURN_TIMEOUT's
    longer value, retries included: the buyer is waiting.

    Khaime errors are logged, not raised. Returns False only when the session was due and Khaime
    could not answer, or the page-load budget is spent (the page then says it could not confirm
    yet)."""
    now = timezone.now()
    if not session.session_id or not worth_asking(session, now):
        return True
    interval = timedelta(seconds=khaime_settings.STATUS_REFRESH_INTERVAL)
    if session.last_checked_at and session.last_checked_at > now - interval:
        return True  # asked moments ago (read from the row we already have: no UPDATE)
    claimed, budgeted = _claim_check_and_budget(session, now, interval)
    if not claimed:
        return True  # another request is asking right now, or just did
    if not budgeted:
        logger.warning(
            "Not asking Khaime about payment session %s: page loads spent REFRESH_BUDGET_PER_HOUR", session.reference
        )
        return False
    timeout = khaime_settings.RETURN_TIMEOUT
    try:
        data = get_client(max_retries=0).get_session(session.session_id, timeout=timeout, deadline=max(timeout))
    except KhaimeRateLimitError as error:
        logger.warning("Khaime rate limited the check of payment session %s: %s", session.reference, error)
        _back_off(session, now, error.retry_after)
        return False
    except KhaimeError as error:
        # The claim already stamped last_checked_at: while Khaime is down, polls do not turn
        # into a Khaime request each.
        logger.warning("Could not ask Khaime about payment session %s: %s", session.reference, error)
        return False
    apply_khaime_status(session, data, source=source, stamped=True)
    return True


#: How often ``wait_for_webhook`` re-reads the session.
WEBHOOK_POLL_STEP = 0.25
#: A 429 without Retry-After keeps page loads from asking about that session this long (seconds).
RATE_LIMIT_BACKOFF = 60.0


def wait_for_webhook(session: PaymentSession, seconds: float | None = None) -> bool:
    """On the buyer's first return (never asked about yet), wait up to RETURN_WEBHOOK_WAIT
    seconds for the webhook to move the session on, reading only the database, so a working
    webhook spares a Khaime request. Returns True (and refreshes ``session``) if it moved."""
    seconds = float(khaime_settings.RETURN_WEBHOOK_WAIT) if seconds is None else seconds
    if seconds <= 0 or session.status not in AWAITING_STATUSES or session.last_checked_at is not None:
        return False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(WEBHOOK_POLL_STEP, max(deadline - time.monotonic(), 0)))
        status = PaymentSession.objects.filter(pk=session.pk).values_list("status", flat=True).first()
        if status is not None and status != session.status:
            session.refresh_from_db()
            return True
    return False


def worth_asking(session: PaymentSession, now) -> bool:
    """Khaime may still report a payment for this session: it awaits one, or it ``failed`` or
    expired within RECHECK_LOOKBACK of its creation (a declined card may be retried on the same
    hosted page; an offline expiry did not ask Khaime)."""
    if session.status in AWAITING_STATUSES:
        return True
    return session.status in RECHECKED_STATUSES and session.created_at >= now - khaime_settings.RECHECK_LOOKBACK


def worth_asking_q(now) -> Q:
    """``worth_asking`` as a query."""
    return Q(status__in=AWAITING_STATUSES) | Q(
        status__in=RECHECKED_STATUSES, created_at__gte=now - khaime_settings.RECHECK_LOOKBACK
    )


def _back_off(session: PaymentSession, now, retry_after: float | None) -> None:
    """After a 429: no page load asks about this session again before Retry-After (or
    RATE_LIMIT_BACKOFF) has passed, and when Khaime says to wait a minute or more (the hourly
    quota), page loads stop asking about any session for the rest of the hour. A 429 without
    Retry-After may be Khaime's per-second burst limit as well as its hourly one, so it backs off
    that session only: one stray 429 must not blind every return page for an hour."""
    wait = RATE_LIMIT_BACKOFF if retry_after is None else retry_after
    until = now + timedelta(seconds=wait)
    PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=until)
    session.last_checked_at = until
    if retry_after is not None and retry_after >= RATE_LIMIT_BACKOFF:
        _this_hours_budget(now).update(used=max(int(khaime_settings.REFRESH_BUDGET_PER_HOUR), 0))


def _this_hours_budget(now):
    """The RefreshBudget rows of this API key and hour (none, or the one)."""
    return RefreshBudget.objects.filter(key=_api_key_hash(), window=now.replace(minute=0, second=0, microsecond=0))


def _api_key_hash() -> str:
    """The API key as ``RefreshBudget.key`` stores it (its SHA-256: the key itself is a secret)."""
    return hashlib.sha256(str(khaime_settings.API_KEY).encode()).hexdigest()


def _claim_check(session: PaymentSession, now, interval: timedelta) -> bool:
    """Stamp ``last_checked_at`` if nobody asked within ``interval``; True for the one winner."""
    won = (
        PaymentSession.objects.filter(pk=session.pk)
        .filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lte=now - interval))
        .update(last_checked_at=now)
    )
    if won:
        session.last_checked_at = now
    return bool(won)


def _claim_check_and_budget(session: PaymentSession, now, interval: timedelta) -> tuple[bool, bool]:
    """:func:`_claim_check`, then, for the winner only, :func:`take_refresh_budget`: whether the
    check was claimed, and whether the budget was taken for it. On PostgreSQL, with both tables
    in one database, the two UPDATEs are one statement (a data-modifying CTE: the budget's UPDATE
    runs only if the claim's changed the row); the hour's first request, or a spent budget, then
    goes on to :func:`take_refresh_budget` as before."""
    using = router.db_for_write(PaymentSession)
    connection = connections[using]
    limit = int(khaime_settings.REFRESH_BUDGET_PER_HOUR)
    if connection.vendor != "postgresql" or router.db_for_write(RefreshBudget) != using or limit <= 0:
        claimed = _claim_check(session, now, interval)
        return claimed, claimed and take_refresh_budget(now)
    window = now.replace(minute=0, second=0, microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(
            _claim_and_budget_sql(connection), [now, session.pk, now - interval, _api_key_hash(), window, limit]
        )
        claimed, budgeted = cursor.fetchone()
    if claimed:
        session.last_checked_at = now
    return claimed, claimed and (budgeted or take_refresh_budget(now))


@functools.lru_cache(maxsize=4)
def _claim_and_budget_sql(connection: Any) -> str:
    quote = connection.ops.quote_name
    sessions, budgets = PaymentSession._meta, RefreshBudget._meta

    def column(meta: Any, name: str) -> str:
        return quote(str(meta.get_field(name).column))

    checked, used = column(sessions, "last_checked_at"), column(budgets, "used")
    # Formatted in: the models' own table and column names; every value is a parameter. The same
    # conditions as _claim_check's and take_refresh_budget's UPDATEs.
    claim = (
        f"UPDATE {quote(sessions.db_table)} SET {checked} = %s WHERE {column(sessions, 'id')} = %s "  # noqa: S608
        f"AND ({checked} IS NULL OR {checked} <= %s) RETURNING 1"
    )
    budget = (
        f"UPDATE {quote(budgets.db_table)} SET {used} = {used} + 1 "  # noqa: S608
        f"WHERE {column(budgets, 'key')} = %s AND {column(budgets, 'window')} = %s AND {used} < %s "
        "AND EXISTS (SELECT 1 FROM claim) RETURNING 1"
    )
    return (
        f"WITH claim AS ({claim}), budget AS ({budget}) "  # noqa: S608
        "SELECT EXISTS (SELECT 1 FROM claim), EXISTS (SELECT 1 FROM budget)"
    )


def take_refresh_budget(now) -> bool:
    """Count one page-load request to Khaime against REFRESH_BUDGET_PER_HOUR for this API key;
    False when this hour's budget is spent. Holds across processes: a conditional UPDATE, or
    the INSERT of the hour's row that the unique constraint lets only one process make."""
    limit = int(khaime_settings.REFRESH_BUDGET_PER_HOUR)
    if limit <= 0:
        return False
    this_hour = _this_hours_budget(now)
    window = now.replace(minute=0, second=0, microsecond=0)
    for _attempt in range(2):
        if this_hour.filter(used__lt=limit).update(used=F("used") + 1):
            return True
        if not insert_unless_conflict(RefreshBudget(key=_api_key_hash(), window=window, used=1)):
            continue  # the hour's row exists: full, or another process just made it
        RefreshBudget.objects.filter(window__lt=window - timedelta(days=1)).delete()
        return True
    return False


def remote_target(data: Mapping[str, Any]) -> str | None:
    """The status Khaime's answer about a session moves it to, or None (still pending, unknown)."""
    return REMOTE_STATUS.get(data.get("status", ""))


def apply_khaime_status(
    session: PaymentSession, data: Mapping[str, Any], *, source: str, stamped: bool = False
) -> bool:
    """Apply what ``GET /payments/sessions/{id}`` said. Returns True when the status changed.
    ``stamped``: ``last_checked_at`` was already written for this ask (a claimed refresh)."""
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
    if not changed and not stamped:
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

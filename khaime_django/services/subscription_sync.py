"""Asking Khaime about subscriptions: ``sync_subscriptions`` (the subscription part of
``khaime_sync``, within a request budget) and ``refresh_subscription`` (the admin's "Refresh from
Khaime"). What Khaime answers is applied as one report each, by ``subscription_reports``, dated at
the current second.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..client import get_client
from ..conf import khaime_settings
from ..exceptions import KhaimeAuthenticationError, KhaimeError, KhaimeRateLimitError
from ..models import Mode, PaymentSession, Source, Subscription
from ..timestamps import parse_timestamp
from .subscription_payloads import status_of, subscription_id_of
from .subscription_reports import ReportResult, apply_subscription_report, update_subscription

logger = logging.getLogger(__name__)

#: ``GET /subscriptions`` page size: Khaime's largest.
SYNC_PAGE_SIZE = 100


@dataclass
class SubscriptionSyncReport:
    """What the subscription part of one khaime_sync run did."""

    dry_run: bool = False
    requests: int = 0
    listed: int = 0
    fetched: int = 0
    changed: int = 0
    renewals: int = 0
    errors: int = 0
    stopped: str = ""
    unreachable: bool = False


def sync_subscriptions(
    *,
    budget: int = 100,
    dry_run: bool = False,
    client: Any = None,
    on_change: Any = None,
) -> SubscriptionSyncReport:
    """Bring every subscription up to date with Khaime, spending at most ``budget`` requests and
    stopping at the first 429: ``GET /subscriptions`` 100 a page (oldest first), and
    ``GET /subscriptions/{id}`` only for one the list cannot settle: unknown here, or whose
    ``next_payment_date`` moved (a renewal: its payment is only in ``payment_history``). A status
    change alone is applied from the list. Each page's details are fetched before the next page
    is asked for, so a small budget settles some subscriptions fully rather than many partly.
    ``on_change(subscription_id, before, after)`` is called for every change (or would-be change).
    """
    report = SubscriptionSyncReport(dry_run=dry_run)
    client = client or get_client(max_retries=0)
    is_live = khaime_settings.mode == Mode.LIVE
    offset = 0

    def ask(call, *args, stop_on_error: bool = True, **kwargs) -> dict | None:
        report.requests += 1
        try:
            return call(*args, **kwargs)
        except KhaimeRateLimitError:
            report.stopped = "Khaime rate limit (429)"
        except KhaimeAuthenticationError as error:
            report.errors += 1
            report.stopped = "Khaime refused the API key"
            report.unreachable = True
            logger.error("khaime_sync: %s", error)
        except KhaimeError as error:
            report.errors += 1
            logger.warning("khaime_sync: subscriptions: %s", error)
            if stop_on_error:  # a page we cannot read: the offsets after it mean nothing
                report.stopped = f"Khaime failed: {error}"
        return None

    while report.requests < budget and not report.stopped:
        page = ask(client.list_subscriptions, limit=SYNC_PAGE_SIZE, offset=offset)
        if page is None:
            break
        items = [item for item in page["subscriptions"] if subscription_id_of(item, "id")]
        report.listed += len(items)
        for item in items:
            if report.stopped:
                break
            local = Subscription.objects.filter(subscription_id=subscription_id_of(item, "id")).first()
            data: Mapping[str, Any] = item
            if _needs_detail(local, item):
                if report.requests >= budget:
                    report.stopped = "budget spent"
                    break
                detail = ask(client.get_subscription, item["id"], stop_on_error=False)
                if detail is None:
                    continue  # one subscription Khaime could not answer about; the next run asks again
                report.fetched += 1
                data = detail
            _reconcile_one(report, local, data, is_live=is_live, on_change=on_change)
        offset += len(page["subscriptions"])
        total = page.get("total")
        if not page["subscriptions"] or (isinstance(total, int) and offset >= total):
            break
    if report.requests and report.errors == report.requests:
        report.unreachable = True
    return report


def sells_subscriptions() -> bool:
    """Has this shop ever sold a subscription? khaime_sync asks Khaime about subscriptions only
    then, so a shop without any spends no request on them."""
    return Subscription.objects.exists() or PaymentSession.objects.exclude(subscription_frequency_key="").exists()


def _needs_detail(local: Subscription | None, item: Mapping[str, Any]) -> bool:
    if local is None:
        return True
    if isinstance(item.get("payment_history"), list):
        return False  # the list already carries what a detail would
    return parse_timestamp(item.get("next_payment_date")) != local.next_payment_date


def _reconcile_one(
    report: SubscriptionSyncReport, local: Subscription | None, data: Mapping[str, Any], *, is_live: bool, on_change
) -> None:
    status = status_of(data)
    before = local.status if local is not None else None
    if report.dry_run:
        if local is None or (status is not None and status != local.status) or _needs_detail(local, data):
            report.changed += 1
            if on_change:
                on_change(data.get("id"), before, status)
        return
    result = _apply_answer(data, is_live=is_live, source=Source.SYNC, detail="khaime_sync")
    if result.changed:
        report.changed += 1
        if on_change:
            on_change(result.subscription.subscription_id, before, result.subscription.status)
    report.renewals += len(result.renewals)


def refresh_subscription(subscription: Subscription, *, source: str, client: Any = None) -> ReportResult:
    """Ask Khaime about one subscription now (``GET /subscriptions/{id}``) and apply the answer
    (the admin's "Refresh from Khaime"). Raises the client's ``KhaimeError``."""
    client = client or get_client()
    data = client.get_subscription(subscription.subscription_id)
    return _apply_answer(data, is_live=subscription.mode == Mode.LIVE, source=source, detail="refreshed from Khaime")


def _apply_answer(data: Mapping[str, Any], *, is_live: bool, source: str, detail: str) -> ReportResult:
    """Apply what Khaime answered about a subscription just now, and note that we asked."""
    with transaction.atomic():
        result = apply_subscription_report(
            data,
            status=status_of(data),
            # Khaime's timestamps have whole seconds; see docs/subscriptions.md, "Ordering".
            occurred_at=timezone.now().replace(microsecond=0),
            is_live=is_live,
            source=source,
            detail=detail,
        )
        update_subscription(result.subscription, last_checked_at=timezone.now())
    return result

"""Subscriptions: one :class:`~khaime_django.models.Subscription` per Khaime ``sub_...`` id, kept
as new as the newest report about it. The work is split by use case:

- ``subscription_events``: ``subscription.*`` webhook events (``EVENT_HANDLERS["subscription"]``)
  and the subscription side of a ``payment.*`` event that names one;
- ``subscription_sync``: asking Khaime (``sync_subscriptions`` for ``khaime_sync``,
  ``refresh_subscription`` for the admin);
- ``subscription_reports``: applying one report, whichever of those it came from (the rules for
  which report is the newest, payments recorded in the ledger, renewals signalled once);
- ``subscription_payloads``: reading what Khaime's subscription objects say.

Every name this module held before the split is importable from it still.
"""

from __future__ import annotations

from .subscription_events import (
    PAYABLE_STATUSES,
    apply_subscription_event,
    apply_subscription_payment,
    subscription_id_of_payment,
)
from .subscription_payloads import MAX_SUBSCRIPTION_ID, MONEY_RECEIVED, subscription_id_of
from .subscription_reports import ReportResult, apply_subscription_report, claim_subscription
from .subscription_sync import (
    SYNC_PAGE_SIZE,
    SubscriptionSyncReport,
    refresh_subscription,
    sells_subscriptions,
    sync_subscriptions,
)

__all__ = [
    "MAX_SUBSCRIPTION_ID",
    "MONEY_RECEIVED",
    "PAYABLE_STATUSES",
    "SYNC_PAGE_SIZE",
    "ReportResult",
    "SubscriptionSyncReport",
    "apply_subscription_event",
    "apply_subscription_payment",
    "apply_subscription_report",
    "claim_subscription",
    "refresh_subscription",
    "sells_subscriptions",
    "subscription_id_of",
    "subscription_id_of_payment",
    "sync_subscriptions",
]

"""Everything khaime-django knows about a subscription's status: the statuses, the allowed
transitions, and what Khaime's words and event types map to.

Khaime's subscription object says ``active``, ``due``, ``paused``, ``cancelled`` or ``expired``;
``pending`` (a row created from a payment event before any subscription object arrived) and
``trialing`` (between ``subscription.trial_started`` and ``trial_ended``) are what the events
imply. Which event is newest is decided before a transition is asked for
(``services.subscription_reports``), so the machine itself allows every move but out of ``expired``.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class SubscriptionStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    TRIALING = "trialing", _("Trialing")
    ACTIVE = "active", _("Active")
    DUE = "due", _("Payment due")
    PAUSED = "paused", _("Paused")
    CANCELLED = "cancelled", _("Cancelled")
    EXPIRED = "expired", _("Expired")


_ALL = frozenset(SubscriptionStatus.values)

#: to_status -> the statuses it may be reached from: any but itself, and never out of
#: ``expired`` (Khaime ends a subscription for good; buying again makes a new one) nor back to
#: ``pending``.
SUBSCRIPTION_ALLOWED_FROM: dict[str, frozenset[str]] = {
    status: _ALL - {status, SubscriptionStatus.EXPIRED}
    for status in SubscriptionStatus.values
    if status != SubscriptionStatus.PENDING
}

#: What ``status`` in Khaime's subscription object means here (unknown words are ignored).
REMOTE_SUBSCRIPTION_STATUS: dict[str, str] = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.TRIALING,
    "trial": SubscriptionStatus.TRIALING,
    "due": SubscriptionStatus.DUE,
    "past_due": SubscriptionStatus.DUE,
    "paused": SubscriptionStatus.PAUSED,
    "cancelled": SubscriptionStatus.CANCELLED,
    "canceled": SubscriptionStatus.CANCELLED,
    "expired": SubscriptionStatus.EXPIRED,
}

#: The status an event implies when its subscription object carries no usable ``status``.
EVENT_SUBSCRIPTION_STATUS: dict[str, str] = {
    "subscription.created": SubscriptionStatus.ACTIVE,
    "subscription.renewed": SubscriptionStatus.ACTIVE,
    "subscription.resumed": SubscriptionStatus.ACTIVE,
    "subscription.trial_started": SubscriptionStatus.TRIALING,
    "subscription.payment_failed": SubscriptionStatus.DUE,
    "subscription.paused": SubscriptionStatus.PAUSED,
    "subscription.cancelled": SubscriptionStatus.CANCELLED,
    "subscription.expired": SubscriptionStatus.EXPIRED,
}

#: Of two reports of the same instant with the same number of payments, the one whose status
#: ranks higher is taken as the later one (a subscription moves forward through these).
STATUS_RANK: dict[str, int] = {
    SubscriptionStatus.PENDING: 0,
    SubscriptionStatus.TRIALING: 1,
    SubscriptionStatus.ACTIVE: 2,
    SubscriptionStatus.PAUSED: 3,
    SubscriptionStatus.DUE: 4,
    SubscriptionStatus.CANCELLED: 5,
    SubscriptionStatus.EXPIRED: 6,
}

#: Statuses in which the buyer may have access (``Subscription.is_active`` decides the rest).
MAYBE_ACTIVE_STATUSES = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.DUE,
    SubscriptionStatus.CANCELLED,
)

"""What khaime-django stores, one module per family of models:

- ``sessions``: :class:`PaymentSession` (a checkout attempt), its :class:`StatusChange` history,
  :class:`Mode`, and :class:`RefreshBudget`;
- ``inbox``: :class:`WebhookEvent` and :class:`WebhookOutcome`;
- ``subscriptions``: :class:`Subscription`, :class:`SubscriptionQuerySet`, :class:`SubscriptionStatusChange`;
- ``ledger``: :class:`Payment` and :func:`checkout_payment_of`;
- ``refunds``: :class:`Refund` and :class:`RefundStatusChange`;
- ``history``: :class:`Source` and :class:`StatusHistory`, what the three histories share.

Import them from here (``from khaime_django.models import PaymentSession``), as before the split.
Fields copied from Khaime keep Khaime's names (``session_id``, ``fee_details``, ``expires_at``);
our own bookkeeping is named for what it means here (``reference``, ``last_error``,
``last_checked_at``). Amounts are integers in the currency's minor unit, as Khaime sends them.
"""

from __future__ import annotations

# The status names live in statuses.py, subscription_statuses.py and refund_statuses.py; they stay
# importable from here, as before.
from ..refund_statuses import COUNTED_STATUSES, RefundOrigin, RefundStatus
from ..statuses import (
    AWAITING_STATUSES,
    FINAL_STATUSES,
    OPEN_STATUSES,
    PAID_STATUSES,
    Status,
)
from ..subscription_statuses import SubscriptionStatus
from .history import Source, StatusHistory
from .inbox import WebhookEvent, WebhookOutcome
from .ledger import Payment, checkout_payment_of
from .refunds import Refund, RefundStatusChange
from .sessions import Mode, PaymentSession, RefreshBudget, StatusChange
from .subscriptions import Subscription, SubscriptionQuerySet, SubscriptionStatusChange

__all__ = [
    "AWAITING_STATUSES",
    "COUNTED_STATUSES",
    "FINAL_STATUSES",
    "OPEN_STATUSES",
    "PAID_STATUSES",
    "Mode",
    "Payment",
    "PaymentSession",
    "RefreshBudget",
    "Refund",
    "RefundOrigin",
    "RefundStatus",
    "RefundStatusChange",
    "Source",
    "Status",
    "StatusChange",
    "StatusHistory",
    "Subscription",
    "SubscriptionQuerySet",
    "SubscriptionStatus",
    "SubscriptionStatusChange",
    "WebhookEvent",
    "WebhookOutcome",
    "checkout_payment_of",
]

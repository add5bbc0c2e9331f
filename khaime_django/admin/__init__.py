"""khaime-django in the Django admin: what ``admin.autodiscover()`` imports. Importing the modules
below registers their model admins, one module each:

- ``sessions``: payment sessions (``PaymentSessionAdmin``);
- ``inbox``: the webhook inbox (``WebhookEventAdmin``);
- ``subscriptions``: subscriptions (``SubscriptionAdmin``);
- ``payments``: the payment ledger (``PaymentAdmin``);
- ``refunds``: refunds (``RefundAdmin``), with the Refund page in ``refund_page``;
- ``base``: what they share.

Everything copied from Khaime is read-only; status changes go through the transition function.
The names this module held before it was split stay importable from it.
"""

from .base import REFRESH_ACTION_LIMIT, ReadOnlyInline
from .inbox import (
    WebhookEventAdmin,
    describe_wait,
    failed_deliveries,
    warn_about_failed_deliveries,
    warn_about_session_deliveries,
)
from .payments import PaymentAdmin
from .refund_page import RefundForm, can_refund
from .refunds import RefundAdmin, SessionRefundsMixin
from .sessions import (
    REVIEW_FIELDS,
    SHORT_REFERENCE,
    CurrencyFilter,
    PaymentSessionAdmin,
    PaymentTypeFilter,
    StatusChangeInline,
)
from .subscriptions import SubscriptionAdmin

__all__ = [
    "REFRESH_ACTION_LIMIT",
    "REVIEW_FIELDS",
    "SHORT_REFERENCE",
    "CurrencyFilter",
    "PaymentAdmin",
    "PaymentSessionAdmin",
    "PaymentTypeFilter",
    "ReadOnlyInline",
    "RefundAdmin",
    "RefundForm",
    "SessionRefundsMixin",
    "StatusChangeInline",
    "SubscriptionAdmin",
    "WebhookEventAdmin",
    "can_refund",
    "describe_wait",
    "failed_deliveries",
    "warn_about_failed_deliveries",
    "warn_about_session_deliveries",
]

"""What khaime-django stores.

Fields copied from Khaime keep Khaime's names (``session_id``, ``fee_details``, ``expires_at``);
our own bookkeeping is named for what it means here (``reference``, ``last_error``,
``last_checked_at``). Amounts are integers in the currency's minor unit, as Khaime sends them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..money import format_money
from ..refund_statuses import COUNTED_STATUSES, RefundOrigin, RefundStatus

# Status and its sets live in statuses.py; they stay importable from here, as before.
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


class Payment(models.Model):
    """One money movement Khaime reports (a checkout's payment, or a subscription renewal): the
    ledger. ``transaction_id`` is unique, so a payment reported by several events (payment.succeeded,
    subscription.renewed, a redelivery, reconciliation) is one row, whichever comes first."""

    transaction_id = models.CharField(_("transaction id"), max_length=255, unique=True)
    session = models.ForeignKey(
        PaymentSession,
        verbose_name=_("payment session"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payments",
        help_text=_("The checkout it settled; for a renewal, the checkout that started the subscription."),
    )
    subscription = models.ForeignKey(
        Subscription,
        verbose_name=_("subscription"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payments",
    )
    amount = models.PositiveBigIntegerField(_("amount"), help_text=_("What the buyer paid, in minor units."))
    currency = models.CharField(_("currency"), max_length=3)
    amounts = models.JSONField(
        _("amounts"),
        default=dict,
        blank=True,
        help_text=_("Khaime's breakdown: customer_paid, merchant_gross, merchant_net, fees."),
    )
    paid_at = models.DateTimeField(_("paid at"))
    is_live = models.BooleanField(_("live"), default=False)
    is_renewal = models.BooleanField(
        _("renewal"), null=True, help_text=_("Unknown until a subscription's payment history says which came first.")
    )
    renewal_signalled_at = models.DateTimeField(_("subscription_renewed sent at"), null=True, blank=True)
    created_at = models.DateTimeField(_("recorded at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ["-paid_at", "-pk"]
        indexes = [models.Index(fields=["-paid_at"], name="khaime_payment_paid")]

    def __str__(self) -> str:
        return f"{self.transaction_id} {self.display_amount}"

    @property
    def display_amount(self) -> str:
        return format_money(self.amount, self.currency)

    @property
    def refunded_amount(self) -> int:
        """Completed refunds of this payment, in minor units."""
        return _sum_amounts(self.refunds.filter(status=RefundStatus.COMPLETED))

    @property
    def refundable_amount(self) -> int:
        """What may still be refunded: the amount less every refund not ``failed`` (an ``unknown``
        one may have moved money). ``services.refunds`` re-checks it under a row lock."""
        return max(self.amount - _sum_amounts(self.refunds.filter(status__in=COUNTED_STATUSES)), 0)

    @property
    def display_refunded(self) -> str:
        return format_money(self.refunded_amount, self.currency)

    @property
    def display_refundable(self) -> str:
        return format_money(self.refundable_amount, self.currency)


def _sum_amounts(refunds: models.QuerySet) -> int:
    return refunds.aggregate(total=models.Sum("amount"))["total"] or 0


def checkout_payment_of(session: PaymentSession) -> Payment | None:
    """The payment a checkout took: the first one recorded for the session that is not known to
    be a renewal (a subscription's renewals are recorded against the session that started it)."""
    return (
        Payment.objects.filter(session=session).exclude(is_renewal=True).order_by("paid_at", "pk").first()
        if session.pk
        else None
    )


class Refund(models.Model):
    """One refund of (part of) a :class:`Payment`. Stored before Khaime is asked, so a refund in
    flight is never lost; its status changes only through ``transitions.transition``."""

    # Copied from Khaime.
    refund_id = models.CharField(
        _("Khaime refund id"),
        max_length=255,
        unique=True,
        null=True,
        blank=True,
        help_text=_("ref_...; empty until Khaime's answer or webhook names it."),
    )
    payment = models.ForeignKey(Payment, verbose_name=_("payment"), on_delete=models.PROTECT, related_name="refunds")
    amount = models.PositiveBigIntegerField(_("amount"), help_text=_("In the payment currency's minor unit."))
    currency = models.CharField(_("currency"), max_length=3)
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=RefundStatus.choices, default=RefundStatus.REQUESTED)
    # Our own bookkeeping.
    origin = models.CharField(_("made in"), max_length=16, choices=RefundOrigin.choices, default=RefundOrigin.DJANGO)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="khaime_refunds",
    )
    request_token = models.CharField(
        _("request token"),
        max_length=64,
        unique=True,
        null=True,
        blank=True,
        editable=False,
        help_text=_("One per confirmation form: a resubmitted form finds its refund instead of making another."),
    )
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-created_at", "-pk"]
        permissions = [("refund_payment", _("Can refund payments (sends money back to the buyer)"))]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="khaime_refund_amount_positive")]
        indexes = [models.Index(fields=["status", "-created_at"], name="khaime_refund_status")]

    def __str__(self) -> str:
        return f"{self.refund_id or _('refund')} {self.display_amount} ({self.get_status_display()})"

    @property
    def display_amount(self) -> str:
        return format_money(self.amount, self.currency)


class RefundStatusChange(StatusHistory):
    """One row per real status change of a refund."""

    refund = models.ForeignKey(
        Refund, verbose_name=_("refund"), on_delete=models.CASCADE, related_name="status_changes"
    )
    from_status = models.CharField(_("from"), max_length=16, choices=RefundStatus.choices)
    to_status = models.CharField(_("to"), max_length=16, choices=RefundStatus.choices)

    class Meta(StatusHistory.Meta):
        verbose_name = _("refund status change")
        verbose_name_plural = _("refund status changes")

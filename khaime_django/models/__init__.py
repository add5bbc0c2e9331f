"""What khaime-django stores.

Fields copied from Khaime keep Khaime's names (``session_id``, ``fee_details``, ``expires_at``);
our own bookkeeping is named for what it means here (``reference``, ``last_error``,
``last_checked_at``). Amounts are integers in the currency's minor unit, as Khaime sends them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..conf import khaime_settings
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


class SubscriptionQuerySet(models.QuerySet):
    def active(self, at: datetime | None = None) -> SubscriptionQuerySet:
        """Subscriptions that give access now (or ``at``): the rule of :attr:`Subscription.is_active`."""
        now = at or timezone.now()
        grace = khaime_settings.SUBSCRIPTION_GRACE
        return self.filter(
            Q(status__in=(SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING))
            | Q(status=SubscriptionStatus.DUE, next_payment_date__gt=now - grace)
            | Q(status=SubscriptionStatus.CANCELLED, next_payment_date__gt=now)
        )

    def for_user(self, user: Any) -> SubscriptionQuerySet:
        """The subscriptions of ``user``: started by their checkouts, or bought with their email."""
        if user is None or not getattr(user, "is_authenticated", False):
            return self.none()
        condition = Q(user_id=user.pk)
        email = getattr(user, "email", "")
        if email:
            condition |= Q(customer_email__iexact=email)
        return self.filter(condition)

    def for_email(self, email: str) -> SubscriptionQuerySet:
        return self.filter(customer_email__iexact=email) if email else self.none()

    def for_product(self, product: int | str | None) -> SubscriptionQuerySet:
        """Of one product: a Khaime product id (an int, or digits) or a product name."""
        if product is None or product == "":
            return self
        if isinstance(product, int) or (isinstance(product, str) and product.isdigit()):
            return self.filter(product_id=int(product))
        return self.filter(product_name__iexact=product)


class Subscription(models.Model):
    """One recurring agreement Khaime runs, started by a checkout with a frequency key.

    Fields copied from Khaime's subscription object keep its names; ``product_name`` is its
    ``product_title``. The status changes only through ``transitions.transition``; the other
    fields are updated from the newest report (``last_event_at``, see services.subscriptions).
    """

    subscription_id = models.CharField(_("Khaime subscription id"), max_length=255, unique=True)
    status = models.CharField(
        _("status"), max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.PENDING
    )
    mode = models.CharField(_("mode"), max_length=16, choices=Mode.choices, default=Mode.SANDBOX)
    frequency = models.CharField(_("frequency"), max_length=32, blank=True)
    amount = models.PositiveBigIntegerField(
        _("amount"), null=True, blank=True, help_text=_("What each period costs the buyer, in minor units.")
    )
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    customer_email = models.EmailField(_("customer email"), max_length=254, blank=True)
    product_id = models.PositiveBigIntegerField(_("Khaime product id"), null=True, blank=True)
    product_name = models.CharField(_("product name"), max_length=255, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    next_payment_date = models.DateTimeField(
        _("next payment date"),
        null=True,
        blank=True,
        help_text=_("The next renewal; once cancelled, the end of the period already paid."),
    )
    trial_ends_at = models.DateTimeField(_("trial ends at"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True, help_text=_("Khaime's created_at."))
    first_transaction_id = models.CharField(
        _("first transaction id"),
        max_length=255,
        blank=True,
        help_text=_("The checkout's payment (the oldest of Khaime's payment_history); every later one is a renewal."),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="khaime_subscriptions",
    )
    session = models.ForeignKey(
        PaymentSession,
        verbose_name=_("payment session"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="subscriptions",
        help_text=_("The checkout that started it."),
    )
    # Our own bookkeeping.
    last_event_at = models.DateTimeField(
        _("newest report applied"),
        null=True,
        blank=True,
        help_text=_("When the newest event (or reconciliation) applied here happened; older ones change nothing."),
    )
    last_payment_count = models.PositiveIntegerField(
        _("payments in the newest report"), default=0, help_text=_("Orders reports of the same second.")
    )
    trial_ending_notified_for = models.DateTimeField(_("trial ending sent for"), null=True, blank=True)
    last_checked_at = models.DateTimeField(_("last checked with Khaime"), null=True, blank=True)
    needs_review = models.BooleanField(_("needs review"), default=False)
    review_reason = models.TextField(_("review reason"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_payment_date"], name="khaime_sub_status_next"),
            models.Index(fields=["customer_email"], name="khaime_sub_email"),
        ]

    def __str__(self) -> str:
        return f"{self.product_name or self.product_id or self.subscription_id} ({self.get_status_display()})"

    @property
    def display_amount(self) -> str:
        return format_money(self.amount, self.currency) if self.amount is not None and self.currency else ""

    @property
    def is_active(self) -> bool:
        """Does the buyer have access now? While ``active`` or ``trialing``; while ``due``, until
        ``KHAIME["SUBSCRIPTION_GRACE"]`` after ``next_payment_date``; when ``cancelled``, until the
        end of the period already paid (``next_payment_date``); never otherwise."""
        return self.is_active_at(timezone.now())

    def is_active_at(self, at: datetime) -> bool:
        if self.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
            return True
        if self.next_payment_date is None:
            return False
        if self.status == SubscriptionStatus.DUE:
            return at < self.next_payment_date + khaime_settings.SUBSCRIPTION_GRACE
        if self.status == SubscriptionStatus.CANCELLED:
            return at < self.next_payment_date
        return False

    @property
    def access_ends_at(self) -> datetime | None:
        """When access ends if nothing else happens (None: it does not end on a date, or it ended)."""
        if self.next_payment_date is None or self.status not in (SubscriptionStatus.DUE, SubscriptionStatus.CANCELLED):
            return None
        if self.status == SubscriptionStatus.DUE:
            return self.next_payment_date + khaime_settings.SUBSCRIPTION_GRACE
        return self.next_payment_date


class SubscriptionStatusChange(StatusHistory):
    """One row per real status change of a subscription."""

    subscription = models.ForeignKey(
        Subscription, verbose_name=_("subscription"), on_delete=models.CASCADE, related_name="status_changes"
    )
    from_status = models.CharField(_("from"), max_length=16, choices=SubscriptionStatus.choices)
    to_status = models.CharField(_("to"), max_length=16, choices=SubscriptionStatus.choices)

    class Meta(StatusHistory.Meta):
        verbose_name = _("subscription status change")
        verbose_name_plural = _("subscription status changes")


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

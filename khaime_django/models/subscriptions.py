"""Recurring agreements: :class:`Subscription` (one per Khaime ``sub_...`` id), its
:class:`SubscriptionStatusChange` history, and :class:`SubscriptionQuerySet`, which says who has
access (``Subscription.objects.active()``, ``.for_user()``)."""

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
from ..subscription_statuses import SubscriptionStatus
from .history import StatusHistory
from .sessions import Mode, PaymentSession


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
    fields are updated from the newest report (``last_event_at``, see services.subscription_reports).
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

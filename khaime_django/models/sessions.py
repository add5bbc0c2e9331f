"""A checkout attempt and what follows it: :class:`PaymentSession` (one attempt, as Khaime's
session), its :class:`StatusChange` history, the :class:`Mode` it ran in, and the
:class:`RefreshBudget` that caps the Khaime requests page loads start."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..money import format_money
from ..statuses import AWAITING_STATUSES, FINAL_STATUSES, OPEN_STATUSES, PAID_STATUSES, Status
from .history import StatusHistory

if TYPE_CHECKING:
    from .ledger import Payment


class Mode(models.TextChoices):
    SANDBOX = "sandbox", _("Sandbox")
    LIVE = "live", _("Live")


class PaymentSession(models.Model):
    reference = models.UUIDField(
        _("reference"),
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text=_("Our public, unguessable id; sent to Khaime as metadata.reference."),
    )
    # Copied from Khaime.
    session_id = models.CharField(_("Khaime session id"), max_length=255, unique=True, null=True, blank=True)
    stripe_session_id = models.CharField(_("Stripe session id"), max_length=255, blank=True)
    payment_url = models.URLField(_("payment URL"), max_length=2048, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.CREATED)
    mode = models.CharField(_("mode"), max_length=16, choices=Mode.choices, default=Mode.SANDBOX)
    payment_type = models.CharField(_("payment type"), max_length=32, blank=True)
    amount = models.PositiveBigIntegerField(_("amount"), help_text=_("Requested, in the currency's minor unit."))
    total_amount = models.PositiveBigIntegerField(
        _("total amount"), null=True, blank=True, help_text=_("What Khaime charges the buyer, fees included.")
    )
    currency = models.CharField(_("currency"), max_length=3)
    product_id = models.PositiveBigIntegerField(_("Khaime product id"), null=True, blank=True)
    product_name = models.CharField(_("product name"), max_length=255, blank=True)
    customer_email = models.EmailField(_("customer email"), max_length=254)
    customer = models.JSONField(_("customer"), default=dict, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    fee_details = models.JSONField(_("fee details"), default=dict, blank=True)
    subscription_frequency_key = models.CharField(_("subscription frequency"), max_length=32, blank=True)
    success_url = models.URLField(_("success URL"), max_length=2048)
    cancel_url = models.URLField(_("cancel URL"), max_length=2048)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    # Our own bookkeeping.
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_checked_at = models.DateTimeField(_("last checked with Khaime"), null=True, blank=True)
    needs_review = models.BooleanField(_("needs review"), default=False)
    review_reason = models.TextField(_("review reason"), blank=True)
    purchase_key = models.CharField(
        _("purchase key"),
        max_length=64,
        editable=False,
        help_text=_("Hash of buyer (user, or browser and email), mode and price; one open session per purchase."),
    )
    buyer_key = models.CharField(
        _("buyer key"),
        max_length=64,
        blank=True,
        editable=False,
        help_text=_("Hash of the token of the browser that started the checkout; only it records a cancel."),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="khaime_payment_sessions",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("payment session")
        verbose_name_plural = _("payment sessions")
        ordering = ["-created_at"]
        constraints = [
            # Double clicks and back-button resubmits race; this index, not a read-then-write,
            # is what guarantees they share one Khaime session (services.start_checkout).
            models.UniqueConstraint(
                fields=["purchase_key"],
                condition=Q(status__in=OPEN_STATUSES),
                name="khaime_one_open_session_per_purchase",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="khaime_amount_positive"),
        ]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="khaime_status_created"),
            models.Index(fields=["status", "expires_at"], name="khaime_status_expires"),
            models.Index(fields=["-created_at"], name="khaime_created"),
            models.Index(fields=["customer_email"], name="khaime_email"),
        ]

    def __str__(self) -> str:
        return f"{self.product_name or self.product_id} {self.display_total} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("khaime:success", kwargs={"reference": self.reference})

    @property
    def display_amount(self) -> str:
        return format_money(self.amount, self.currency)

    @property
    def display_total(self) -> str:
        return format_money(self.total_amount if self.total_amount is not None else self.amount, self.currency)

    @property
    def is_paid(self) -> bool:
        return self.status in PAID_STATUSES

    @property
    def is_final(self) -> bool:
        """No buyer action can change this session any more (the status page stops polling)."""
        return self.status in FINAL_STATUSES

    @property
    def is_payable(self) -> bool:
        """The buyer can be sent (back) to Khaime's payment page for this session."""
        return self.status in AWAITING_STATUSES and bool(self.payment_url) and not self.is_expired_locally

    @property
    def is_expired_locally(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def checkout_payment(self) -> Payment | None:
        """The payment this checkout itself took (not a later subscription renewal), if recorded."""
        from .ledger import checkout_payment_of  # imported here: the ledger imports this module

        return checkout_payment_of(self)

    @property
    def refunded_amount(self) -> int:
        """How much of this checkout's payment has been refunded (completed refunds), minor units."""
        payment = self.checkout_payment
        return payment.refunded_amount if payment is not None else 0

    @property
    def display_refunded(self) -> str:
        return format_money(self.refunded_amount, self.currency)


class StatusChange(StatusHistory):
    """One row per real status change, whatever path caused it."""

    session = models.ForeignKey(
        PaymentSession, verbose_name=_("payment session"), on_delete=models.CASCADE, related_name="status_changes"
    )
    from_status = models.CharField(_("from"), max_length=16, choices=Status.choices)
    to_status = models.CharField(_("to"), max_length=16, choices=Status.choices)

    class Meta(StatusHistory.Meta):
        verbose_name = _("status change")
        verbose_name_plural = _("status changes")


class RefreshBudget(models.Model):
    """Khaime requests started by page loads, per API key (its SHA-256) and hour.

    Counted in the database with a conditional UPDATE, so the limit holds across processes and
    machines (``services.session_refresh.take_refresh_budget``)."""

    key = models.CharField(_("API key hash"), max_length=64)
    window = models.DateTimeField(_("hour"))
    used = models.PositiveIntegerField(_("requests"), default=0)

    class Meta:
        verbose_name = _("refresh budget")
        verbose_name_plural = _("refresh budgets")
        constraints = [models.UniqueConstraint(fields=["key", "window"], name="khaime_refresh_budget_window")]

    def __str__(self) -> str:
        return f"{self.window:%Y-%m-%d %H:00} {self.used}"

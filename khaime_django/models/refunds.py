"""Refunds: one :class:`Refund` of (part of) a :class:`~khaime_django.models.Payment`, stored
before Khaime is asked, and its :class:`RefundStatusChange` history."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..money import format_money
from ..refund_statuses import RefundOrigin, RefundStatus
from .history import StatusHistory
from .ledger import Payment


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

"""The ledger: one :class:`Payment` per money movement Khaime reports (a checkout's payment or a
subscription renewal), and :func:`checkout_payment_of`, the payment a checkout itself took."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..money import format_money
from ..refund_statuses import COUNTED_STATUSES, RefundStatus
from .sessions import PaymentSession
from .subscriptions import Subscription


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

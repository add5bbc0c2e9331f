"""The payment ledger in the Django admin: every money movement Khaime reported, read-only, with
the refunds of each; for staff who may refund, the Refund button and its page (``refund_page``).
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from ..models import Payment
from .refund_page import can_refund, refund_view
from .refunds import RefundInline


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    """The ledger, read-only; the Refund button for staff who may refund."""

    list_display = (
        "transaction_id",
        "shown_amount",
        "shown_refunded",
        "paid_at",
        "session",
        "subscription",
        "is_renewal",
        "is_live",
    )
    list_filter = ("is_live", "is_renewal", "currency", "paid_at")
    search_fields = ("transaction_id", "subscription__subscription_id", "session__session_id")
    search_help_text = _("Transaction id (txn_…), sub_… or sess_… id.")
    ordering = ("-paid_at", "-pk")
    list_select_related = ("session", "subscription")
    show_full_result_count = False
    inlines = (RefundInline,)
    fields = (
        "transaction_id",
        "shown_amount",
        "shown_refunded",
        "shown_refundable",
        "currency",
        "amounts",
        "paid_at",
        "is_live",
        "is_renewal",
        "session",
        "subscription",
        "renewal_signalled_at",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # payments come from Khaime

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger is evidence

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("amount"), ordering="amount")
    def shown_amount(self, obj: Payment) -> str:
        return obj.display_amount

    @admin.display(description=_("refunded"))
    def shown_refunded(self, obj: Payment) -> str:
        return obj.display_refunded

    @admin.display(description=_("refundable"))
    def shown_refundable(self, obj: Payment) -> str:
        return obj.display_refundable

    def get_urls(self):
        urls = [
            path(
                "<path:payment_id>/refund/",
                self.admin_site.admin_view(lambda request, payment_id: refund_view(self, request, payment_id)),
                name="khaime_django_payment_refund",
            )
        ]
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        payment = Payment.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        if payment is not None and can_refund(request) and payment.refundable_amount > 0:
            extra_context["refund_url"] = reverse(
                f"{self.admin_site.name}:khaime_django_payment_refund", args=[payment.pk]
            )
        return super().change_view(request, object_id, form_url, extra_context)

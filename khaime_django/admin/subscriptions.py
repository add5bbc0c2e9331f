"""Django admin for subscriptions and the payment ledger (registered when ``khaime_django.admin``
imports this module).

Everything is read-only: subscriptions change through Khaime's events, khaime_sync and the
"Refresh from Khaime" action (the transition function either way); payments are the ledger and
can be neither edited nor deleted.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from ..models import Payment, Source, Subscription, SubscriptionStatusChange
from ..services.subscriptions import refresh_subscription
from .base import ReadOnlyInline, refresh_selected


class SubscriptionStatusChangeInline(ReadOnlyInline):
    model = SubscriptionStatusChange
    fields = ("created_at", "from_status", "to_status", "source", "detail")
    readonly_fields = fields
    ordering = ("created_at", "pk")
    verbose_name_plural = _("status history")


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = ("transaction_link", "money", "paid_at", "is_renewal", "is_live")
    readonly_fields = fields
    ordering = ("paid_at", "pk")

    @admin.display(description=_("transaction id"))
    def transaction_link(self, obj):
        url = reverse("admin:khaime_django_payment_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.transaction_id)

    @admin.display(description=_("amount"))
    def money(self, obj):
        return obj.display_amount


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "subscription_id",
        "product",
        "price",
        "frequency",
        "status",
        "customer_email",
        "next_payment_date",
        "payment_count",
        "needs_review",
    )
    list_filter = ("status", "frequency", "currency", "mode", "needs_review")
    search_fields = ("subscription_id", "customer_email")
    search_help_text = _("Khaime subscription id (sub_…) or email.")
    ordering = ("-created_at",)
    show_full_result_count = False
    list_per_page = 50
    inlines = (PaymentInline, SubscriptionStatusChangeInline)
    actions = ("refresh_from_khaime",)
    readonly_fields = (
        "subscription_id",
        "status",
        "mode",
        "product_name",
        "product_id",
        "price",
        "frequency",
        "customer_email",
        "user",
        "session_link",
        "started_at",
        "next_payment_date",
        "trial_ends_at",
        "cancelled_at",
        "ended_at",
        "access",
        "first_transaction_id",
        "metadata",
        "last_event_at",
        "last_checked_at",
        "created_at",
        "updated_at",
    )
    fields = (*readonly_fields[:17], "needs_review", "review_reason", *readonly_fields[17:])

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_payments=Count("payments"))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("product"), ordering="product_name")
    def product(self, obj):
        return obj.product_name or obj.product_id or "—"

    @admin.display(description=_("price"), ordering="amount")
    def price(self, obj):
        return obj.display_amount or "—"

    @admin.display(description=_("payments"), ordering="_payments")
    def payment_count(self, obj):
        return obj._payments

    @admin.display(description=_("payment session"))
    def session_link(self, obj):
        if obj.session_id is None:
            return "—"
        url = reverse("admin:khaime_django_paymentsession_change", args=[obj.session_id])
        return format_html('<a href="{}">{}</a>', url, obj.session)

    @admin.display(description=_("access"))
    def access(self, obj):
        if not obj.is_active:
            return _("no access")
        ends = obj.access_ends_at
        return _("until %(when)s") % {"when": ends} if ends else _("active")

    @admin.action(description=_("Refresh from Khaime"), permissions=["change"])
    def refresh_from_khaime(self, request, queryset):
        refresh_selected(
            self,
            request,
            queryset.order_by("-created_at"),
            lambda subscription: refresh_subscription(subscription, source=Source.ADMIN).changed,
            label=lambda subscription: subscription.subscription_id,
            too_many=_(
                "Only the %(n)d newest selected subscriptions were checked; use manage.py khaime_sync for more."
            ),
            changed=ngettext_lazy("%(n)d subscription changed", "%(n)d subscriptions changed", "n"),
        )

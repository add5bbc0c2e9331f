"""Django admin for payment sessions. Everything copied from Khaime is read-only; status
changes go through the transition function (the wired "Refresh status from Khaime" action)."""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.db.models import Q
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .exceptions import KhaimeError
from .models import PaymentSession, Source, StatusChange
from .money import format_money


class StatusChangeInline(admin.TabularInline):
    model = StatusChange
    extra = 0
    can_delete = False
    fields = ("created_at", "from_status", "to_status", "source", "detail")
    readonly_fields = fields
    ordering = ("created_at", "pk")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PaymentSession)
class PaymentSessionAdmin(admin.ModelAdmin):
    list_display = (
        "short_reference", "product", "total", "status", "mode", "customer_email",
        "created_at", "expires_at", "needs_review",
    )
    list_filter = ("status", "mode", "payment_type", "currency", "needs_review", "created_at")
    search_fields = ("session_id", "customer_email", "product_name")
    search_help_text = _("Reference, Khaime session id (sess_…), email, or product name.")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    # The exact count of a filtered 100,000-row table is a second full scan on every page load.
    show_full_result_count = False
    list_per_page = 50
    inlines = (StatusChangeInline,)
    actions = ("refresh_from_khaime",)
    fieldsets = (
        (None, {"fields": ("reference", "status", "needs_review", "review_reason", "last_error")}),
        (_("Purchase"), {"fields": ("product_name", "product_id", "requested", "total", "fees",
                                     "subscription_frequency_key", "metadata")}),
        (_("Buyer"), {"fields": ("customer_email", "customer", "user")}),
        (_("Khaime"), {"fields": ("session_id", "stripe_session_id", "mode", "payment_type", "payment_url",
                                   "expires_at", "completed_at", "cancelled_at", "last_checked_at")}),
        (_("Return URLs"), {"classes": ("collapse",), "fields": ("success_url", "cancel_url")}),
        (_("Timestamps"), {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = (
        "reference", "status", "last_error", "product_name", "product_id", "requested", "total", "fees",
        "subscription_frequency_key", "metadata", "customer_email", "customer", "user", "session_id",
        "stripe_session_id", "mode", "payment_type", "payment_url", "expires_at", "completed_at",
        "cancelled_at", "last_checked_at", "success_url", "cancel_url", "created_at", "updated_at",
    )

    def has_add_permission(self, request):
        return False  # sessions are created by checkout only

    @admin.display(description=_("reference"), ordering="reference")
    def short_reference(self, obj):
        return str(obj.reference)[:8]

    @admin.display(description=_("product"), ordering="product_name")
    def product(self, obj):
        return obj.product_name or obj.product_id

    @admin.display(description=_("total"), ordering="total_amount")
    def total(self, obj):
        return obj.display_total

    @admin.display(description=_("requested"))
    def requested(self, obj):
        return obj.display_amount

    @admin.display(description=_("fee details"))
    def fees(self, obj):
        details = obj.fee_details or {}
        if not details:
            return "—"
        rows = []
        for key, value in details.items():
            label = key.replace("_", " ")
            shown = format_money(value, obj.currency) if isinstance(value, int) and not isinstance(value, bool) else value
            rows.append((label, shown))
        return format_html("<dl>{}</dl>", format_html_join("", "<dt>{}</dt><dd>{}</dd>", rows))

    def get_search_results(self, request, queryset, search_term):
        """Exact, indexed look-ups for what people paste (a reference, a session id, an email);
        a substring search only for product names."""
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(reference=uuid.UUID(term)), False
        except ValueError:
            pass
        if term.startswith("sess_"):
            return queryset.filter(session_id=term), False
        if "@" in term:
            return queryset.filter(customer_email=term.lower()), False
        return queryset.filter(Q(product_name__icontains=term) | Q(session_id=term)), False

    @admin.action(description=_("Refresh status from Khaime"))
    def refresh_from_khaime(self, request, queryset):
        changed = unchanged = failed = 0
        for session in queryset.exclude(session_id=None).iterator():
            before = session.status
            try:
                services.refresh_session(session, source=Source.ADMIN)
            except KhaimeError as error:
                failed += 1
                self.message_user(request, _("%(ref)s: %(error)s") % {"ref": session.reference, "error": error},
                                  messages.WARNING)
                continue
            if session.status != before:
                changed += 1
            else:
                unchanged += 1
        self.message_user(
            request,
            ngettext("%(n)d session changed status", "%(n)d sessions changed status", changed) % {"n": changed}
            + "; " + _("%(n)d unchanged; %(f)d could not be checked.") % {"n": unchanged, "f": failed},
            messages.SUCCESS if not failed else messages.WARNING,
        )

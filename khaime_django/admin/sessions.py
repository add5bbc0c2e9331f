"""Payment sessions in the Django admin: the changelist (exact searches, cheap filters) and the
session page. Everything copied from Khaime is read-only; an operator only clears the review flag,
and status changes go through the transition function ("Refresh status from Khaime")."""

from __future__ import annotations

import re

from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from .. import services
from ..models import PaymentSession, Source, StatusChange
from ..money import format_money
from .base import ReadOnlyInline, pasted_reference, refresh_selected
from .inbox import warn_about_failed_deliveries, warn_about_session_deliveries
from .refunds import SessionRefundsMixin

#: The only PaymentSession fields an operator edits in admin: clearing a review flag.
REVIEW_FIELDS = ("needs_review", "review_reason")
SHORT_REFERENCE = re.compile(r"^[0-9a-fA-F]{8}$")


class StatusChangeInline(ReadOnlyInline):
    model = StatusChange
    fields = ("created_at", "from_status", "to_status", "source", "detail")
    readonly_fields = fields
    ordering = ("created_at", "pk")


class PaymentTypeFilter(admin.SimpleListFilter):
    """Khaime's documented payment types. A field filter would list them with a whole-table
    SELECT DISTINCT on every page load (a third of the changelist's time at 100,000 rows)."""

    title = _("payment type")
    parameter_name = "payment_type__exact"

    def lookups(self, request, model_admin):
        return (("one_time", _("One-time")), ("subscription", _("Subscription")))

    def queryset(self, request, queryset):
        return queryset.filter(payment_type=self.value()) if self.value() else queryset


class CurrencyFilter(admin.SimpleListFilter):
    """The currencies of the latest sessions (an indexed read of 1,000 rows) rather than a
    whole-table SELECT DISTINCT; any other code still filters through ?currency__exact=XYZ."""

    title = _("currency")
    parameter_name = "currency__exact"
    recent = 1000

    def lookups(self, request, model_admin):
        recent = model_admin.get_queryset(request).order_by("-created_at").values_list("currency", flat=True)
        codes = set(recent[: self.recent])
        if self.value():
            codes.add(self.value())
        return [(code, code) for code in sorted(codes)]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(currency=value.upper()) if value else queryset


@admin.register(PaymentSession)
class PaymentSessionAdmin(SessionRefundsMixin, admin.ModelAdmin):
    list_display = (
        "short_reference",
        "product",
        "total",
        "status",
        "mode",
        "customer_email",
        "created_at",
        "expires_at",
        "needs_review",
    )
    list_filter = ("status", "mode", PaymentTypeFilter, CurrencyFilter, "needs_review", "created_at")
    search_fields = ("session_id", "customer_email", "product_name")
    search_help_text = _("Reference, Khaime session id (sess_…), email, or product name.")
    # No date_hierarchy: its year links cost a whole-table SELECT DISTINCT per page load; the
    # created_at filter (today, past 7 days, this month, this year) answers the same questions.
    ordering = ("-created_at",)
    # The exact count of a filtered 100,000-row table is a second full scan on every page load.
    show_full_result_count = False
    list_per_page = 50
    inlines = (StatusChangeInline,)
    actions = ("refresh_from_khaime",)
    fieldsets = (
        (None, {"fields": ("reference", "status", "needs_review", "review_reason", "last_error")}),
        (
            _("Purchase"),
            {
                "fields": (
                    "product_name",
                    "product_id",
                    "requested",
                    "total",
                    "fees",
                    "subscription_frequency_key",
                    "metadata",
                )
            },
        ),
        (_("Buyer"), {"fields": ("customer_email", "customer", "user")}),
        (
            _("Khaime"),
            {
                "fields": (
                    "session_id",
                    "stripe_session_id",
                    "mode",
                    "payment_type",
                    "payment_url",
                    "expires_at",
                    "completed_at",
                    "cancelled_at",
                    "last_checked_at",
                )
            },
        ),
        (_("Return URLs"), {"classes": ("collapse",), "fields": ("success_url", "cancel_url")}),
        (_("Timestamps"), {"fields": ("created_at", "updated_at")}),
    )
    # Everything shown is read-only but the review flag an operator clears.
    readonly_fields = tuple(
        name
        for _title, options in fieldsets
        for name in options["fields"]
        if isinstance(name, str) and name not in REVIEW_FIELDS  # (the fieldsets are flat)
    )

    def has_add_permission(self, request):
        return False  # sessions are created by checkout only

    def has_delete_permission(self, request, obj=None):
        return False  # a payment record is evidence: keep it (delete through the shell if you must)

    def changelist_view(self, request, extra_context=None):
        warn_about_failed_deliveries(request, self.admin_site.name)
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        session = self.get_object(request, object_id)
        if session is not None and request.method == "GET":
            warn_about_session_deliveries(request, self.admin_site.name, session)
        return super().change_view(request, object_id, form_url, extra_context)

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
            shown: object
            if isinstance(value, bool):
                shown = _("yes") if value else _("no")
            elif isinstance(value, int):
                shown = format_money(value, obj.currency)
            else:
                shown = value
            rows.append((label, shown))
        return format_html("<dl>{}</dl>", format_html_join("", "<dt>{}</dt><dd>{}</dd>", rows))

    def get_search_results(self, request, queryset, search_term):
        """Exact, indexed look-ups for what people paste (a reference, a session id, an email);
        a substring search only for product names."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if (reference := pasted_reference(term)) is not None:
            return queryset.filter(reference=reference), False
        if SHORT_REFERENCE.match(term):
            # The changelist shows the first 8 characters of the reference; accept them back.
            return queryset.filter(reference__startswith=term.lower()), False
        if term.startswith("sess_"):
            return queryset.filter(session_id=term), False
        if "@" in term:
            return queryset.filter(customer_email=term.lower()), False
        return queryset.filter(Q(product_name__icontains=term) | Q(session_id=term)), False

    # It changes statuses and sends signals, so view-only staff neither see it nor can post it.
    @admin.action(description=_("Refresh status from Khaime"), permissions=["change"])
    def refresh_from_khaime(self, request, queryset):
        refresh_selected(
            self,
            request,
            queryset.exclude(session_id=None).order_by("-created_at"),
            refresh_session_status,
            label=lambda session: session.reference,
            too_many=_("Only the %(n)d newest selected sessions were checked; use manage.py khaime_sync for more."),
            changed=ngettext_lazy("%(n)d session changed status", "%(n)d sessions changed status", "n"),
        )


def refresh_session_status(session: PaymentSession) -> bool:
    """Ask Khaime about ``session`` (as the admin); whether its status changed."""
    before = session.status
    services.refresh_session(session, source=Source.ADMIN)
    return session.status != before

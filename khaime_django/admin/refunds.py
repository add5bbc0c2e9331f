"""Refunds in the Django admin: the refunds changelist (read-only; an open refund can be marked
failed), the refunds shown beside their payment, and the session page's refund summary and
Refund button. The confirmation page behind the button is ``refund_page``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from .. import services
from ..models import PaymentSession, Refund, RefundStatusChange, checkout_payment_of
from ..refund_statuses import OPEN_REFUND_STATUSES, RefundStatus
from .base import ReadOnlyInline
from .refund_page import can_refund


def refunds_table(refunds) -> str:
    """The refunds of a payment as a small HTML table (the session page's summary)."""
    rows = [
        (
            refund.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            refund.display_amount,
            format_html(
                '<span class="khaime-refund khaime-refund--{}">{}</span>', refund.status, refund.get_status_display()
            ),
            refund.refund_id or "—",
            refund.reason or "—",
        )
        for refund in refunds
    ]
    if not rows:
        return "—"
    return format_html(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
        _("when"),
        _("amount"),
        _("status"),
        _("Khaime refund id"),
        _("reason"),
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
    )


class SessionRefundsMixin:
    """For ``PaymentSessionAdmin``: what was refunded of the checkout's payment, and the Refund
    button (for staff who may refund) leading to that payment's confirmation page."""

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))  # type: ignore[misc]
        if obj is not None:
            fieldsets.append((_("Refunds"), {"fields": ("refunded", "refunds_summary")}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "refunded", "refunds_summary")  # type: ignore[misc]

    @admin.display(description=_("refunded"))
    def refunded(self, obj: PaymentSession) -> str:
        return obj.display_refunded

    @admin.display(description=_("refunds of the checkout's payment"))
    def refunds_summary(self, obj: PaymentSession) -> str:
        payment = checkout_payment_of(obj)
        return refunds_table(payment.refunds.order_by("created_at", "pk")) if payment else "—"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        session = PaymentSession.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        payment = checkout_payment_of(session) if session is not None and session.is_paid else None
        if payment is not None and can_refund(request) and payment.refundable_amount > 0:
            site = self.admin_site.name  # type: ignore[attr-defined]
            extra_context["refund_url"] = reverse(f"{site}:khaime_django_payment_refund", args=[payment.pk]) + (
                "?from=session"
            )
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = (
        "created_at",
        "amount_shown",
        "status_shown",
        "refund_id",
        "origin",
        "reason",
        "requested_by",
        "last_error",
    )
    readonly_fields = fields
    ordering = ("created_at", "pk")

    @admin.display(description=_("amount"))
    def amount_shown(self, obj: Refund) -> str:
        return obj.display_amount

    @admin.display(description=_("status"))
    def status_shown(self, obj: Refund) -> str:
        return status_badge(obj)


def status_badge(refund: Refund) -> str:
    """The status, with ``unknown`` spelled out: money may have moved, nobody knows yet."""
    if refund.status == RefundStatus.UNKNOWN:
        return format_html(
            '<strong class="khaime-refund--unknown" style="color:#ba2121">⚠ {}</strong>',
            _("UNKNOWN: Khaime may have refunded; check its dashboard"),
        )
    return refund.get_status_display()


class RefundStatusChangeInline(ReadOnlyInline):
    model = RefundStatusChange
    fields = ("created_at", "from_status", "to_status", "source", "detail")
    readonly_fields = fields


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    """Every refund, read-only. An open refund an operator has checked in Khaime's dashboard
    (it is not there) can be marked failed, which makes its amount refundable again."""

    list_display = ("created_at", "shown_amount", "shown_status", "refund_id", "origin", "payment", "requested_by")
    list_filter = ("status", "origin", "created_at")
    search_fields = ("refund_id", "payment__transaction_id")
    list_select_related = ("payment", "requested_by")
    show_full_result_count = False
    inlines = (RefundStatusChangeInline,)
    actions = ("mark_failed",)
    fields = (
        "refund_id",
        "payment",
        "shown_amount",
        "shown_status",
        "origin",
        "reason",
        "requested_by",
        "last_error",
        "created_at",
        "completed_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # refunds are made through the Refund button or refund_payment()

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_refund_permission(self, request) -> bool:
        return can_refund(request)

    @admin.display(description=_("amount"), ordering="amount")
    def shown_amount(self, obj: Refund) -> str:
        return obj.display_amount

    @admin.display(description=_("status"), ordering="status")
    def shown_status(self, obj: Refund) -> str:
        return status_badge(obj)

    @admin.action(description=_("Mark failed (checked: Khaime's dashboard does not show it)"), permissions=["refund"])
    def mark_failed(self, request, queryset):
        marked = 0
        for refund in queryset.filter(status__in=OPEN_REFUND_STATUSES):
            marked += services.mark_refund_failed(refund, note="not in Khaime's dashboard", user=request.user)
        self.message_user(
            request,
            _("%(n)d refund(s) marked failed; their amounts are refundable again.") % {"n": marked},
            messages.SUCCESS if marked else messages.WARNING,
        )

"""Refunds in the Django admin: the "Refund" button on a paid session's and a payment's page, the
confirmation page behind it, the payments and refunds changelists.

Only staff with the ``khaime_django.refund_payment`` permission (not merely "change") see the
button or can use the page; the page moves money, so every refund goes through
``services.refund_payment`` with a token from the form (a resubmitted form finds its refund)
and the number of refunds it showed (a form made stale by another tab is refused).
"""

from __future__ import annotations

import secrets
from decimal import Decimal, InvalidOperation
from typing import cast

from django import forms
from django.contrib import admin, messages
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from .. import services
from ..models import Payment, PaymentSession, Refund, RefundStatusChange, checkout_payment_of
from ..money import exponent, to_major
from ..refund_statuses import OPEN_REFUND_STATUSES, RefundStatus
from .base import ReadOnlyInline

#: The permission that lets staff refund (a Meta permission of Refund).
REFUND_PERMISSION = "khaime_django.refund_payment"
# Named for the module the form was first in; a new salt would void every form open in a browser.
_FORM_SALT = "khaime_django.admin_refunds.form"


def can_refund(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_staff and request.user.has_perm(REFUND_PERMISSION))


class RefundForm(forms.Form):
    """The confirmation form. The amount is typed in major units (53.20 USD, 5000 JPY, 1.250 KWD),
    with exactly as many decimals as the currency's minor unit."""

    amount = forms.DecimalField(label=_("Amount to refund"), min_value=Decimal(0))
    reason = forms.CharField(label=_("Reason"), max_length=services.refunds.MAX_REASON, required=False)
    token = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, payment: Payment, **kwargs):
        super().__init__(*args, **kwargs)
        self.payment = payment
        places = exponent(payment.currency)
        field = cast(forms.DecimalField, self.fields["amount"])
        field.decimal_places = places
        field.widget.attrs.update({"step": str(Decimal(1).scaleb(-places)), "inputmode": "decimal"})
        field.help_text = _("In %(currency)s; at most %(remaining)s.") % {
            "currency": payment.currency,
            "remaining": payment.display_refundable,
        }

    def clean_amount(self) -> int:
        value = self.cleaned_data["amount"]
        try:
            minor = value.scaleb(exponent(self.payment.currency))
            if minor != minor.to_integral_value():
                raise InvalidOperation
        except InvalidOperation:
            raise forms.ValidationError(_("Too many decimals for %(c)s.") % {"c": self.payment.currency}) from None
        if minor <= 0:
            raise forms.ValidationError(_("The amount must be positive."))
        return int(minor)

    def clean_token(self) -> dict:
        try:
            token = signing.loads(self.cleaned_data["token"], salt=_FORM_SALT)
        except signing.BadSignature:
            raise forms.ValidationError(_("This form is not valid any more; open it again.")) from None
        if token.get("payment") != self.payment.pk:
            raise forms.ValidationError(_("This form belongs to another payment; open it again."))
        return token


def new_token(payment: Payment) -> str:
    """A fresh form token: the payment, how many refunds the page shows, a one-time nonce."""
    return signing.dumps(
        {"payment": payment.pk, "refunds": payment.refunds.count(), "nonce": secrets.token_hex(16)},
        salt=_FORM_SALT,
    )


def refund_view(model_admin: admin.ModelAdmin, request: HttpRequest, payment_id: str) -> HttpResponse:
    """GET: the confirmation page. POST: the refund, once."""
    if not can_refund(request):
        raise PermissionDenied
    payment = get_object_or_404(Payment.objects.select_related("session"), pk=payment_id)
    back = _back_url(model_admin, request, payment)
    if request.method == "POST":
        form = RefundForm(request.POST, payment=payment)
        if form.is_valid():
            token = form.cleaned_data["token"]
            try:
                refund = services.refund_payment(
                    payment,
                    form.cleaned_data["amount"],
                    form.cleaned_data["reason"],
                    request.user,
                    request_token=token["nonce"],
                    expect_refunds=token["refunds"],
                )
            except services.RefundNotAllowed as error:
                form = RefundForm(payment=payment, initial=_initial(payment))
                messages.error(request, str(error))
            else:
                _report(model_admin, request, refund)
                return HttpResponseRedirect(back)
    else:
        form = RefundForm(payment=payment, initial=_initial(payment))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Refund %(payment)s") % {"payment": payment.display_amount},
        "opts": Payment._meta,
        "payment": payment,
        "form": form,
        "refunds": payment.refunds.order_by("created_at", "pk"),
        "back_url": back,
        "minor_unit_digits": exponent(payment.currency),
    }
    return TemplateResponse(request, "admin/khaime_django/refund_confirm.html", context)


def _initial(payment: Payment) -> dict:
    return {"amount": to_major(payment.refundable_amount, payment.currency), "token": new_token(payment)}


def _back_url(model_admin: admin.ModelAdmin, request: HttpRequest, payment: Payment) -> str:
    site = model_admin.admin_site.name
    if request.GET.get("from") == "session" and payment.session_id is not None:
        return reverse(f"{site}:khaime_django_paymentsession_change", args=[payment.session_id])
    return reverse(f"{site}:khaime_django_payment_change", args=[payment.pk])


def _report(model_admin: admin.ModelAdmin, request: HttpRequest, refund: Refund) -> None:
    amount = refund.display_amount
    if refund.status == RefundStatus.FAILED:
        text = _("The refund of %(a)s was not made: %(e)s") % {"a": amount, "e": refund.last_error}
        model_admin.message_user(request, text, messages.ERROR)
    elif refund.status == RefundStatus.UNKNOWN:
        text = _(
            "Khaime did not answer the refund of %(a)s: it may have been made. Do not refund again; "
            "it still counts against the payment until Khaime's webhook settles it, or until you check "
            "Khaime's dashboard and mark it failed."
        ) % {"a": amount}
        model_admin.message_user(request, text, messages.WARNING)
    elif refund.status == RefundStatus.COMPLETED:
        model_admin.message_user(request, _("Refunded %(a)s.") % {"a": amount}, messages.SUCCESS)
    else:
        text = _("Refund of %(a)s sent; Khaime is processing it (%(id)s).") % {"a": amount, "id": refund.refund_id}
        model_admin.message_user(request, text, messages.SUCCESS)


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


__all__ = ["PaymentAdmin", "RefundAdmin", "RefundForm", "SessionRefundsMixin", "can_refund"]

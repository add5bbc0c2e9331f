"""The admin's Refund page: the confirmation form behind the "Refund" button of a paid session's
and a payment's page (a URL of the payment admin, ``<payment id>/refund/``), and who may use it.

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
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from .. import services
from ..models import Payment, Refund
from ..money import exponent, to_major
from ..refund_statuses import RefundStatus

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

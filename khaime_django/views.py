"""Thin HTTP views: parse the request, call a service, render. Rules live in services/ and transitions.py."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.cache import never_cache

from . import services
from .exceptions import (
    KhaimeCheckoutInProgressError,
    KhaimeError,
    KhaimeRateLimitError,
    KhaimeRequestInvalidError,
)
from .forms import CheckoutForm
from .models import PaymentSession, Source, Status
from .purchases import InvalidPurchaseError, Purchase
from .return_urls import UnsafeReturnURL

logger = logging.getLogger(__name__)

#: A dropped database connection (a restarted or failed-over server, a proxy's idle timeout):
#: answered like a Khaime failure, with the same retryable page, not Django's bare 500.
DATABASE_DROPPED = (OperationalError, InterfaceError)

#: The retryable page when even rendering the template needs the database and cannot reach it.
UNREACHABLE_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Payment is unavailable right now</title></head>'
    "<body><h1>Payment is unavailable right now</h1><p>The shop could not reach its database. "
    "No payment was taken; if you paid, your payment is safe. Please try again in a moment.</p></body></html>"
)


def render_after_drop(request: HttpRequest, template: str, context: dict, status: int = 503) -> HttpResponse:
    """Render a retryable page in a request whose database connection dropped.

    The broken connection is closed first, so a query the page makes opens a fresh one (a
    merchant's base template may read ``request.user``, which loads the session from the
    database). If the database is still unreachable, a plain page without the template."""
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()
    try:
        return render(request, template, context, status=status)
    except DATABASE_DROPPED as error:
        logger.error("The retryable page itself could not reach the database: %s", error)
        return HttpResponse(UNREACHABLE_PAGE, status=status)


class HttpResponseSeeOther(HttpResponseRedirect):
    status_code = 303


class CheckoutView(View):
    """``POST`` from a buy button: create the Khaime session, answer 303 to its payment_url.

    Merchants with their own price logic subclass this view and override ``get_purchase``.
    """

    http_method_names = ["post"]
    template_invalid = "khaime_django/checkout_invalid.html"
    template_error = "khaime_django/checkout_error.html"

    def post(self, request: HttpRequest) -> HttpResponse:
        form = CheckoutForm(request.POST)
        if not form.is_valid():
            return self.invalid(request, form, _("Please enter a valid email address."))
        try:
            purchase = self.get_purchase(request, form)
        except InvalidPurchaseError as error:
            logger.warning("Checkout refused: %s", error)
            return self.invalid(request, form, str(error))
        email = self.get_customer_email(request, form)
        if not email:
            return self.invalid(request, form, _("Please enter your email address to pay."))
        try:
            session = services.start_checkout(request=request, customer_email=email, **purchase.checkout_kwargs())
        except KhaimeRequestInvalidError as error:
            return self.invalid(request, form, _("This purchase cannot be paid: %(error)s") % {"error": error})
        except (KhaimeError, UnsafeReturnURL) as error:
            return self.error(request, form, error)
        except DATABASE_DROPPED as error:
            logger.error("Checkout failed on the database: %s", error)
            return self.error(request, form, None)
        if not session.is_payable:
            return HttpResponseSeeOther(session.get_absolute_url())  # already settled: show it
        return HttpResponseSeeOther(session.payment_url)

    def get_purchase(self, request: HttpRequest, form: CheckoutForm) -> Purchase:
        """The price to charge. Override to price from your own models."""
        return Purchase.from_token(form.cleaned_data["token"])

    def get_customer_email(self, request: HttpRequest, form: CheckoutForm) -> str:
        user = getattr(request, "user", None)
        return form.cleaned_data.get("email") or (getattr(user, "email", "") if user else "") or ""

    def invalid(self, request: HttpRequest, form: CheckoutForm, message) -> HttpResponse:
        # A tampered, expired or foreign token: nothing was stored and Khaime was not called.
        return render(request, self.template_invalid, {"message": message, "form": form}, status=400)

    def error(
        self, request: HttpRequest, form: CheckoutForm, error: KhaimeError | UnsafeReturnURL | None
    ) -> HttpResponse:
        # Khaime failed; the row is kept in `error` with the reason. 503 tells caches and
        # monitors it is temporary when Khaime is only rate limiting us, another request is
        # still creating this purchase's session, or (error None) the database connection dropped.
        # UnsafeReturnURL is our own configuration (logged at ERROR with the fix): 503 too, and
        # nothing was stored.
        temporary = error is None or isinstance(
            error, (KhaimeRateLimitError, KhaimeCheckoutInProgressError, UnsafeReturnURL)
        )
        status = 503 if temporary else 502
        # "Try again" re-posts what was posted, to this view: a subclass may live at another URL
        # than khaime:checkout and price from its own fields.
        retry_fields = [
            (name, value) for name, values in request.POST.lists() if name != "csrfmiddlewaretoken" for value in values
        ]
        context = {
            "form": form,
            "transient": error is None or getattr(error, "transient", False),
            "in_progress": isinstance(error, KhaimeCheckoutInProgressError),
            "retry_url": request.path,
            "retry_fields": retry_fields,
        }
        if error is None:
            response = render_after_drop(request, self.template_error, context, status=status)
        else:
            response = render(request, self.template_error, context, status=status)
        if isinstance(error, KhaimeCheckoutInProgressError):
            response["Retry-After"] = str(error.retry_after)
        return response


@method_decorator(never_cache, name="dispatch")
class SessionPageView(View):
    http_method_names = ["get"]
    template_name = "khaime_django/session.html"

    template_unavailable = "khaime_django/checkout_error.html"

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        try:
            return super().dispatch(request, *args, **kwargs)
        except DATABASE_DROPPED as error:
            logger.error("Return page failed on the database: %s", error)
            context = {"transient": True, "reload_url": request.get_full_path()}
            return render_after_drop(request, self.template_unavailable, context)

    def get_session(self, reference) -> PaymentSession:
        return get_object_or_404(PaymentSession, reference=reference)

    def render_session(self, request: HttpRequest, session: PaymentSession, **extra) -> HttpResponse:
        context = {"session": session, "Status": Status, "can_resume": session.is_payable, **extra}
        return render(request, self.template_name, context)


class SuccessView(SessionPageView):
    """The buyer is back from Khaime. The redirect proves nothing: ask Khaime, then show."""

    def get(self, request: HttpRequest, reference) -> HttpResponse:
        session = self.get_session(reference)
        # On the first return, give the webhook a moment to land before spending a Khaime request.
        services.wait_for_webhook(session)
        # Asks Khaime unless it was asked moments ago (a reload, or the page's own polling).
        unconfirmed = not services.refresh_if_due(session, source=Source.RETURN)
        return self.render_session(request, session, returned_from="success", unconfirmed=unconfirmed)


class CancelView(SessionPageView):
    """The buyer left Khaime's page without paying. They may still pay until expires_at.

    Only the browser (or user) that started the checkout records the cancel: Khaime sends the
    buyer here with a plain GET, so this stays one step for them, and anyone else holding the
    link only sees the session as it is."""

    def get(self, request: HttpRequest, reference) -> HttpResponse:
        session = self.get_session(reference)
        services.cancel_session(session, request=request)
        return self.render_session(request, session, returned_from="cancel")


@method_decorator(never_cache, name="dispatch")
class StatusView(View):
    """JSON for the processing page to poll; asks Khaime at most every STATUS_REFRESH_INTERVAL."""

    http_method_names = ["get"]

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        try:
            return super().dispatch(request, *args, **kwargs)
        except DATABASE_DROPPED as error:
            logger.error("Status endpoint failed on the database: %s", error)
            return JsonResponse({"error": "temporarily unavailable", "retry": True}, status=503)

    def get(self, request: HttpRequest, reference) -> JsonResponse:
        session = get_object_or_404(PaymentSession, reference=reference)
        services.refresh_if_due(session)
        return JsonResponse(
            {
                "reference": str(session.reference),
                "status": session.status,
                "status_display": str(session.get_status_display()),
                "is_paid": session.is_paid,
                "is_final": session.is_final,
                "total": session.display_total,
            }
        )

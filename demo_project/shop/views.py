import logging
import sys

from django.shortcuts import get_object_or_404, render
from django.urls import reverse_lazy
from django.views.defaults import server_error as django_server_error

from khaime_django.access import active_subscriptions, subscription_required
from khaime_django.models import PaymentSession
from khaime_django.views import DATABASE_DROPPED, render_after_drop

from .models import Product

logger = logging.getLogger(__name__)

#: Seconds a browser or a monitor is told to wait before trying a page again after a dropped connection.
RETRY_AFTER = 2


def product_list(request):
    return render(request, "shop/product_list.html", {"products": Product.objects.all()})


def product_detail(request, slug):
    return render(request, "shop/product_detail.html", {"product": get_object_or_404(Product, slug=slug)})


def order_status(request, reference):
    """The merchant's own page for one payment attempt: what we stored and how it got there."""
    session = get_object_or_404(PaymentSession, reference=reference)
    subscription = session.subscriptions.first()
    payments = (subscription.payments if subscription is not None else session.payments).order_by("paid_at", "pk")
    return render(
        request,
        "shop/order_status.html",
        {
            "session": session,
            "history": session.status_changes.all(),
            "subscription": subscription,
            "payments": payments,
        },
    )


@subscription_required("Monthly Membership", redirect_url=reverse_lazy("shop:product", args=["monthly-membership"]))
def members(request):
    """The members' area the Monthly Membership unlocks (logged-in users with an active one)."""
    subscription = active_subscriptions(request.user, "Monthly Membership").first()
    return render(request, "shop/members.html", {"subscription": subscription})


def server_error(request):
    """The 500 handler: a database connection dropped mid-request (a restarted or failed-over
    server, a proxy's idle timeout), in a view or in a middleware such as the session's save,
    answers 503 with ``Retry-After`` and a "try again" page, as khaime_django's own pages do;
    the next request gets a fresh connection (``CONN_HEALTH_CHECKS``). Anything else is Django's 500."""
    error = sys.exc_info()[1]
    if not isinstance(error, DATABASE_DROPPED):
        return django_server_error(request)
    logger.error("%s failed on the database: %s", request.path, error)
    response = render_after_drop(request, "shop/unavailable.html", {"reload_url": request.get_full_path()})
    response["Retry-After"] = str(RETRY_AFTER)
    return response

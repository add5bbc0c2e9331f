from django.shortcuts import get_object_or_404, render
from django.urls import reverse_lazy

from khaime_django.access import active_subscriptions, subscription_required
from khaime_django.models import PaymentSession

from .models import Product


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

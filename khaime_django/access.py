"""Gate views on an active subscription.

::

    from khaime_django.access import subscription_required, SubscriptionRequiredMixin

    @subscription_required("Monthly Membership")     # a product name, a Khaime product id, or nothing
    def members(request): ...

    class Members(SubscriptionRequiredMixin, TemplateView):
        subscription_product = 7

A visitor who is not logged in is sent to ``settings.LOGIN_URL``; a logged-in user without an
active subscription (``Subscription.is_active``; found by ``Subscription.objects.for_user``: their
checkouts, or their email) gets 403, or is redirected to ``redirect_url`` when one is given.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url

from .models import Subscription

Product = int | str | None


def active_subscriptions(user: Any, product: Product = None):
    """``user``'s subscriptions that give access now, optionally of one product."""
    return Subscription.objects.for_user(user).for_product(product).active()


def has_active_subscription(user: Any, product: Product = None) -> bool:
    return active_subscriptions(user, product).exists()


def _refuse(request: HttpRequest, redirect_url: str | None) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if redirect_url:
        return redirect(resolve_url(redirect_url))
    raise PermissionDenied("An active subscription is required.")


def subscription_required(
    product: Product | Callable[..., HttpResponse] = None, *, redirect_url: str | None = None
) -> Any:
    """Decorate a view so only users with an active subscription (to ``product``) reach it.
    Usable bare (``@subscription_required``) or called (``@subscription_required("Gold")``)."""
    if callable(product):
        return subscription_required()(product)

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_active_subscription(request.user, product):
                return _refuse(request, redirect_url)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class SubscriptionRequiredMixin:
    """The class-based-view form of :func:`subscription_required` (put it first in the bases)."""

    subscription_product: Product = None
    subscription_redirect_url: str | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not has_active_subscription(request.user, self.subscription_product):
            return _refuse(request, self.subscription_redirect_url)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

"""``{% load khaime %}``: the buy button and money formatting.

{% khaime_buy_button amount=5000 currency="USD" product_name="Premium Plan" %}
{{ session.total_amount|khaime_money:session.currency }}

A mistake in a template (``amount=50.00``, ``{{ 50.00|khaime_money:"USD" }}``) never shows a
wrong price and never takes the page down: the error is logged at ERROR on the
``khaime_django.templatetags`` logger, shown in the page when ``DEBUG`` is on, and in production
the tag renders a short "unavailable" notice (the filter renders nothing) in place of a price.
"""

from __future__ import annotations

import logging

from django import template
from django.conf import settings
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from ..exceptions import KhaimeRequestInvalidError
from ..money import format_money
from ..purchases import Purchase
from ..services import buyers

register = template.Library()
logger = logging.getLogger(__name__)


def _template_error(where: str, message: str) -> SafeString:
    """Log a template mistake; in DEBUG return it as a visible error, in production ``""``."""
    logger.error("%s: %s", where, message)
    if settings.DEBUG:
        return format_html('<strong class="khaime-template-error">{}: {}</strong>', where, message)
    return SafeString("")


def _explain(error: KhaimeRequestInvalidError) -> str:
    details = getattr(error, "details", None) or {}
    return "; ".join(f"{field} {reason}" for field, reason in details.items()) or str(error)


@register.simple_tag(takes_context=True)
def khaime_buy_button(
    context,
    amount,
    currency,
    product_name="",
    product_id=None,
    subscription_frequency_key="",
    metadata=None,
    label="",
):
    """A POST form to ``khaime:checkout`` carrying the signed price. Shows an email field unless
    the user is logged in with an email.

    A bad amount (a float, a Decimal, zero), currency or metadata renders no form: the reason is
    logged at ERROR and, with ``DEBUG`` on, shown where the button would be; in production the
    buyer sees "This item cannot be bought online right now." instead of a 500 page."""
    try:
        purchase = Purchase.build(
            amount=amount,
            currency=currency,
            product_name=product_name,
            product_id=product_id,
            subscription_frequency_key=subscription_frequency_key,
            metadata=metadata or {},
        )
    except KhaimeRequestInvalidError as error:
        shown = _template_error("khaime_buy_button", _explain(error))
        if settings.DEBUG:
            return shown
        return format_html(
            '<p class="khaime-buy-button-unavailable">{}</p>', _("This item cannot be bought online right now.")
        )
    request = context.get("request")
    # The browser's token goes into its Django session now, so the session cookie is set before
    # the first POST: a double-click on a first visit then shares one session too.
    buyers.browser_token(request, create=True)
    user = context.get("user")
    if user is None and request is not None:
        user = getattr(request, "user", None)
    has_email = bool(user is not None and getattr(user, "is_authenticated", False) and getattr(user, "email", ""))
    return render_to_string(
        "khaime_django/buy_button.html",
        {
            "token": purchase.sign(),
            "purchase": purchase,
            "price": format_money(purchase.amount, purchase.currency),
            "label": label,
            "ask_email": not has_email,
            "csrf_token": context.get("csrf_token"),
        },
    )


@register.filter
def khaime_money(amount, currency):
    """``{{ 5320|khaime_money:"USD" }}`` -> ``$53.20``. The amount is an integer in minor units:
    ``{{ 50.00|khaime_money:"USD" }}`` is refused (logged; visible in DEBUG), never shown as $0.50."""
    try:
        return format_money(amount, currency)
    except TypeError as error:
        return _template_error("khaime_money", str(error))


@register.filter
def khaime_is_member(user, product=None) -> bool:
    """``{% if user|khaime_is_member %}`` / ``{% if user|khaime_is_member:"Monthly Membership" %}``:
    does ``user`` have an active subscription (to that product name or Khaime product id)?"""
    from khaime_django.access import has_active_subscription

    return has_active_subscription(user, product)

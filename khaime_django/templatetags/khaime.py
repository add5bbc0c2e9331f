"""``{% load khaime %}``: the buy button and money formatting.

{% khaime_buy_button amount=5000 currency="USD" product_name="Premium Plan" %}
{{ session.total_amount|khaime_money:session.currency }}
"""

from django import template

from ..money import format_money
from ..purchases import Purchase

register = template.Library()


@register.inclusion_tag("khaime_django/buy_button.html", takes_context=True)
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
    the user is logged in with an email. A bad amount or currency raises here, at render time."""
    purchase = Purchase.build(
        amount=amount,
        currency=currency,
        product_name=product_name,
        product_id=product_id,
        subscription_frequency_key=subscription_frequency_key,
        metadata=metadata or {},
    )
    user = context.get("user")
    if user is None and context.get("request") is not None:
        user = getattr(context["request"], "user", None)
    has_email = bool(user is not None and getattr(user, "is_authenticated", False) and getattr(user, "email", ""))
    return {
        "token": purchase.sign(),
        "purchase": purchase,
        "price": format_money(amount, currency),
        "label": label,
        "ask_email": not has_email,
        "csrf_token": context.get("csrf_token"),
    }


@register.filter
def khaime_money(amount, currency):
    """``{{ 5320|khaime_money:"USD" }}`` -> ``$53.20``."""
    return format_money(amount, currency)

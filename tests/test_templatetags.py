"""The template tags never show a wrong price and never take a page down: a mistake is logged,
visible in DEBUG, and replaced by a neutral notice (or nothing) in production."""

import logging
from decimal import Decimal

import pytest
from django.template import Context, Template

from khaime_django.purchases import Purchase

LOGGER = "khaime_django.templatetags.khaime"


def render(template: str, **context) -> str:
    return Template("{% load khaime %}" + template).render(Context(context))


@pytest.mark.parametrize("amount", [50.00, Decimal("50.00"), Decimal(5000), "5000", True])
def test_money_filter_refuses_a_non_integer_amount_visibly_in_debug(settings, caplog, amount):
    settings.DEBUG = True
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        html = render('{{ amount|khaime_money:"USD" }}', amount=amount)
    assert '<strong class="khaime-template-error">khaime_money:' in html
    assert "integers in the currency&#x27;s smallest unit" in html
    assert "$0.50" not in html
    [record] = caplog.records
    assert "khaime_money" in record.getMessage()


def test_money_filter_in_production_shows_nothing_and_logs(settings, caplog):
    settings.DEBUG = False
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        html = render('<p>{{ 50.00|khaime_money:"USD" }}</p>')
    assert html == "<p></p>"
    [record] = caplog.records
    assert record.levelno == logging.ERROR and "float 50.0" in record.getMessage()


def test_money_filter_formats_integers():
    assert render('{{ 5320|khaime_money:"USD" }}') == "$53.20"
    assert render('{{ none|khaime_money:"USD" }}', none=None) == ""


@pytest.mark.parametrize("amount", ["50.00", "amount_float", "amount_decimal", "0"])
def test_buy_button_with_a_bad_amount_is_a_visible_error_in_debug(settings, caplog, amount):
    settings.DEBUG = True
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        html = render(
            "<h1>Tea</h1>{% khaime_buy_button amount=" + amount + ' currency="USD" product_name="P" %}',
            amount_float=50.0,
            amount_decimal=Decimal("50.00"),
        )
    assert html.startswith("<h1>Tea</h1>")
    assert "khaime-buy-button" not in html and 'name="token"' not in html
    assert "khaime_buy_button: amount must be a positive integer" in html
    [record] = caplog.records
    assert "amount must be a positive integer" in record.getMessage()


def test_buy_button_with_a_bad_amount_in_production_keeps_the_page_and_logs(settings, caplog, client):
    settings.DEBUG = False
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        html = render(
            '<h1>Tea</h1>{% khaime_buy_button amount=price currency="XYZ" product_name="P" %}', price=Decimal("5")
        )
    assert (
        html == '<h1>Tea</h1><p class="khaime-buy-button-unavailable">This item cannot be bought online right now.</p>'
    )
    [record] = caplog.records
    assert "amount must be a positive integer" in record.getMessage()
    assert "currency must be an ISO 4217 currency code" in record.getMessage()


def test_buy_button_with_a_good_amount_renders_the_form():
    html = render('{% khaime_buy_button amount=5000 currency="usd" product_name="P" %}')
    token = html.split('name="token" value="', 1)[1].split('"', 1)[0]
    assert Purchase.from_token(token) == Purchase(amount=5000, currency="USD", product_name="P")
    assert "Pay $50.00" in html


def test_buy_button_can_be_stored_in_a_variable():
    html = render('{% khaime_buy_button amount=5000 currency="USD" product_name="P" as button %}[{{ button }}]')
    assert html.startswith("[<form") and 'class="khaime-buy-button"' in html

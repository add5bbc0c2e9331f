"""Money: integer minor units plus an ISO 4217 code, formatted with Babel's CLDR data."""

from decimal import Decimal

import pytest
from django.template import Context, Template
from django.utils import translation

from khaime_django.money import exponent, format_money, is_currency, to_major


def test_usd_minor_units_format_as_dollars_and_cents():
    assert format_money(5320, "USD") == "$53.20"


def test_jpy_has_no_minor_unit():
    assert format_money(5000, "JPY") == "¥5,000"


def test_three_decimal_currency_shows_three_decimals():
    assert "1.234" in format_money(1234, "KWD")


def test_lowercase_currency_code_is_accepted():
    assert format_money(5320, "usd") == "$53.20"


def test_unknown_currency_falls_back_to_amount_and_code():
    assert format_money(5000, "XYZ") == "5000 XYZ"


@pytest.mark.parametrize(("amount", "currency"), [(None, "USD"), (5000, ""), (5000, None)])
def test_missing_amount_or_currency_formats_as_empty(amount, currency):
    assert format_money(amount, currency) == ""


def test_formatting_follows_the_active_language():
    with translation.override("de"):
        assert format_money(5320, "EUR") == "53,20\xa0€"


def test_unknown_language_falls_back_to_english():
    with translation.override("xx-nowhere"):
        assert format_money(5320, "USD") == "$53.20"


@pytest.mark.parametrize(("currency", "digits"), [("USD", 2), ("JPY", 0), ("KWD", 3), ("bhd", 3)])
def test_exponent_comes_from_iso_4217_data(currency, digits):
    assert exponent(currency) == digits


def test_to_major_scales_by_the_currency_exponent():
    assert to_major(1234, "KWD") == Decimal("1.234")
    assert to_major(5000, "JPY") == Decimal(5000)


@pytest.mark.parametrize(
    ("code", "known"),
    [("USD", True), ("jpy", True), ("XYZ", False), ("US", False), ("USDX", False), (840, False), (None, False)],
)
def test_is_currency_knows_iso_4217_codes(code, known):
    assert is_currency(code) is known


def test_khaime_money_filter_formats_minor_units():
    html = Template('{% load khaime %}{{ amount|khaime_money:"USD" }} {{ 5000|khaime_money:"JPY" }}').render(
        Context({"amount": 5320})
    )
    assert html == "$53.20 ¥5,000"


@pytest.mark.parametrize("amount", [50.00, 50.5, Decimal("50.00"), Decimal(5000), "5000", True, [5000]])
def test_a_non_integer_amount_is_refused_not_shown_as_a_wrong_price(amount):
    with pytest.raises(TypeError, match="integers in the currency's smallest unit"):
        format_money(amount, "USD")
    with pytest.raises(TypeError):
        to_major(amount, "USD")

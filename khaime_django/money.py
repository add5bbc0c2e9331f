"""Money is an integer in the currency's minor unit plus an ISO 4217 code, as Khaime sends it.

Currency data (which codes exist, how many decimals, symbols) comes from Babel's CLDR tables,
never from a hand-made list.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from babel.core import Locale, UnknownLocaleError
from babel.numbers import format_currency, get_currency_precision, list_currencies
from django.utils import translation


@lru_cache(maxsize=1)
def _iso_codes() -> frozenset[str]:
    return frozenset(list_currencies())


def is_currency(code: object) -> bool:
    return isinstance(code, str) and len(code) == 3 and code.upper() in _iso_codes()


def exponent(currency: str) -> int:
    """Decimals of the minor unit: 2 for USD, 0 for JPY, 3 for KWD."""
    return get_currency_precision(currency.upper())


def to_major(amount: int, currency: str) -> Decimal:
    """``to_major(5320, "USD") == Decimal("53.20")``; a non-integer amount raises ``TypeError``."""
    return Decimal(require_minor_units(amount)).scaleb(-exponent(currency))


@lru_cache(maxsize=32)
def _locale(language: str | None) -> Locale:
    try:
        return Locale.parse(translation.to_locale(language or "en-us"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en_US")


#: The largest amount a model stores (``PositiveBigIntegerField``); anything larger is no real
#: payment, however it is signed.
MAX_AMOUNT = 2**63 - 1


def is_amount(value: object) -> bool:
    """An amount we can store: an ``int`` (not ``bool``) from 0 to :data:`MAX_AMOUNT`."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_AMOUNT


def require_minor_units(amount: object) -> int:
    """Return ``amount`` if it is an integer in the currency's minor unit, else raise ``TypeError``.

    ``50.00`` or ``Decimal("50.00")`` is almost always a major-unit amount (fifty dollars) that
    would be shown as $0.50: it is refused, never rounded or guessed at. ``bool`` is refused too.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(
            f"Money amounts are integers in the currency's smallest unit (5000 for $50.00), "
            f"not {type(amount).__name__} {amount!r}."
        )
    return amount


def format_money(amount: int | None, currency: str | None) -> str:
    """``format_money(5320, "USD") == "$53.20"``; ``format_money(5000, "JPY") == "¥5,000"``.

    ``None`` (or no currency) formats as ``""``; any other non-integer amount raises ``TypeError``
    (see :func:`require_minor_units`).
    """
    if amount is None or not currency:
        return ""
    require_minor_units(amount)
    currency = currency.upper()
    if not is_currency(currency):
        return f"{amount} {currency}"
    return format_currency(
        to_major(amount, currency),
        currency,
        locale=_locale(translation.get_language()),
        currency_digits=True,
    )

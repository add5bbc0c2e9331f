"""Fees and display of integer minor-unit amounts.

The emulator is standard-library only, so the currency exponents are a small table here
instead of a maintained currency library (the Django app itself formats with one).
"""

from __future__ import annotations

# ISO 4217 currencies whose minor unit is not 1/100 of the major unit.
_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"}
    | {"RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
)
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def currency_exponent(currency: str) -> int:
    if currency in _ZERO_DECIMAL:
        return 0
    if currency in _THREE_DECIMAL:
        return 3
    return 2


def transaction_fee(amount: int, fee_bps: int, fee_fixed: int) -> int:
    """``amount * fee_bps / 10000`` rounded half up, plus ``fee_fixed`` (5000 -> 300 + 20)."""
    return (amount * fee_bps + 5000) // 10000 + fee_fixed


def format_minor(amount: int, currency: str) -> str:
    """``5320, "USD"`` -> ``"53.20 USD"``; ``1500, "JPY"`` -> ``"1,500 JPY"``."""
    exponent = currency_exponent(currency)
    major, minor = divmod(amount, 10**exponent)
    text = f"{major:,}"
    if exponent:
        text += f".{minor:0{exponent}d}"
    return f"{text} {currency}"

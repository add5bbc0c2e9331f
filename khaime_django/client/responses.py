"""What Khaime's answers mean, checked before anything trusts them: :func:`parse_response` turns
an HTTP response into Khaime's ``data`` or the typed ``KhaimeError`` its status calls for, and
:func:`require_fields` and :func:`check_created_session` refuse an answer that lacks a field,
has one of the wrong type or size, or does not describe what was asked for.
"""

from __future__ import annotations

import requests

from ..exceptions import (
    KhaimeAuthenticationError,
    KhaimeError,
    KhaimeNotFoundError,
    KhaimeRateLimitError,
    KhaimeResponseError,
    KhaimeServerError,
    KhaimeValidationError,
)
from ..money import is_amount
from ..session_request import SessionRequest

CREATE_SESSION_FIELDS = ("session_id", "payment_url", "status")
GET_SESSION_FIELDS = ("session_id", "status")
CREATE_REFUND_FIELDS = ("refund_id", "status")


def parse_response(response: requests.Response) -> dict:
    status = response.status_code
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        if status >= 500:
            raise KhaimeServerError("Khaime failed with a non-JSON answer.", status_code=status)
        if status == 429:
            raise KhaimeRateLimitError("Khaime rate limit exceeded.", status_code=status)
        raise KhaimeResponseError("Khaime's answer is not a JSON object.", status_code=status)

    if 200 <= status < 300:
        if payload.get("success") is False:
            raise KhaimeResponseError(_error_message(payload), status_code=status, details=payload.get("details"))
        data = payload.get("data")
        if not isinstance(data, dict):
            raise KhaimeResponseError("Khaime's answer has no data object.", status_code=status)
        return data

    message = _error_message(payload)
    details = payload.get("details") if isinstance(payload.get("details"), dict) else {}
    error_class: type[KhaimeError]
    if status == 401 or status == 403:
        error_class = KhaimeAuthenticationError
    elif status in (400, 422):
        error_class = KhaimeValidationError
    elif status == 404:
        error_class = KhaimeNotFoundError
    elif status == 429:
        error_class = KhaimeRateLimitError
    elif status >= 500:
        error_class = KhaimeServerError
    else:
        error_class = KhaimeResponseError
    raise error_class(message, status_code=status, details=details)


def _error_message(payload: dict) -> str:
    # Khaime puts the reason in `error`, some endpoints in `message` (docs/khaime-api.md).
    for key in ("error", "message"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return "Khaime returned an error."


def require_fields(data: dict, fields: tuple[str, ...]) -> None:
    missing = [field for field in fields if not data.get(field)]
    if missing:
        raise KhaimeResponseError(
            "Khaime's answer lacks " + ", ".join(missing) + ".", details={field: "missing" for field in missing}
        )


#: Optional fields of the create answer -> the types each may have (None: Khaime sent null).
_CREATED_SESSION_TYPES: dict[str, tuple[type, ...]] = {
    "session_id": (str,),
    "payment_url": (str,),
    "status": (str,),
    "stripe_session_id": (str, type(None)),
    "expires_at": (str, type(None)),
    "mode": (str, type(None)),
    "payment_type": (str, type(None)),
    "currency": (str, type(None)),
    "fee_details": (dict, type(None)),
}
_FEE_AMOUNTS = ("base_product_price", "transaction_fee", "total_amount")
#: The widths of the columns these fields are stored in.
_LONGEST_TEXT = {"session_id": 255, "stripe_session_id": 255, "payment_url": 2048, "payment_type": 32}


def check_created_session(data: dict, request: SessionRequest) -> None:
    """Refuse a create answer with a field of the wrong type, or one that does not describe what
    we asked for: another currency, a base price other than the requested amount, or a total
    below it. Stored as it is, such an answer would become what a payment is checked against."""
    problems: dict[str, str] = {}
    for name, types in _CREATED_SESSION_TYPES.items():
        if name in data and not isinstance(data[name], types):
            problems[name] = f"is a {type(data[name]).__name__}"
    for name, longest in _LONGEST_TEXT.items():
        if isinstance(data.get(name), str) and len(data[name]) > longest:
            problems[name] = f"is longer than {longest} characters"
    if "amount" in data and not is_amount(data["amount"]):
        problems["amount"] = "is not a non-negative integer"
    fee_details = data.get("fee_details")
    fees: dict = fee_details if isinstance(fee_details, dict) else {}
    for name in _FEE_AMOUNTS:
        if fees.get(name) is not None and not is_amount(fees[name]):
            problems[f"fee_details.{name}"] = "is not a non-negative integer"
    if not problems:
        problems = _mismatches(data, fees, request)
    if problems:
        raise KhaimeResponseError(
            "Khaime's answer does not match the session we asked for: "
            + "; ".join(f"{name} {why}" for name, why in problems.items())
            + ".",
            details=problems,
        )


def _mismatches(data: dict, fees: dict, request: SessionRequest) -> dict[str, str]:
    problems: dict[str, str] = {}
    currency = data.get("currency")
    if currency is not None and currency.upper() != request.currency.upper():
        problems["currency"] = f"is {currency[:8]}, not {request.currency}"
    base = fees.get("base_product_price")
    if base is not None and base != request.amount:
        problems["fee_details.base_product_price"] = f"is {base}, not the requested {request.amount}"
    for name, total in (("amount", data.get("amount")), ("fee_details.total_amount", fees.get("total_amount"))):
        if total is not None and total < request.amount:
            problems[name] = f"is {total}, below the requested {request.amount}"
    totals = {data.get("amount"), fees.get("total_amount")} - {None}
    if len(totals) > 1:
        problems["amount"] = f"is {data['amount']}, but fee_details.total_amount is {fees['total_amount']}"
    return problems

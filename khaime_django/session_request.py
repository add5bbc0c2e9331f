"""``SessionRequest``: what ``POST /payments/sessions`` is asked for, checked once when it is made.

Built by :meth:`Purchase.session_request <khaime_django.purchases.Purchase.session_request>`
(``start_checkout`` does that), passed whole to ``KhaimeClient.create_session``. An invalid one
cannot exist: construction raises ``KhaimeRequestInvalidError`` naming each bad field, before
any row is stored or any byte is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from .exceptions import KhaimeRequestInvalidError
from .money import is_currency

SCALAR_TYPES = (str, int, float, bool, type(None))


class Price(Protocol):
    """What a buy button carries: ``Purchase`` and ``SessionRequest`` both have these fields."""

    @property
    def amount(self) -> Any: ...
    @property
    def currency(self) -> Any: ...
    @property
    def product_id(self) -> Any: ...
    @property
    def product_name(self) -> Any: ...
    @property
    def metadata(self) -> Any: ...


def price_errors(price: Price) -> dict[str, str]:
    """What is wrong with ``price`` (the part of a request a buy button carries), by field."""
    amount, currency, product_id = price.amount, price.currency, price.product_id
    product_name, metadata = price.product_name, price.metadata
    errors: dict[str, str] = {}
    if not _positive_int(amount):
        errors["amount"] = "must be a positive integer in the currency's smallest unit (5000 for $50.00)"
    if not is_currency(currency):
        errors["currency"] = "must be an ISO 4217 currency code"
    if product_id is not None and not _positive_int(product_id):
        errors["product_id"] = "must be a positive integer (a Khaime catalogue id)"
    if product_id is None and not product_name:
        errors["product_name"] = "product_id or product_name is required"
    if not isinstance(metadata, Mapping):
        errors["metadata"] = "must be an object"
    else:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, SCALAR_TYPES):
                errors[f"metadata.{key}"] = "values must be scalar (no nested objects or lists)"
    return errors


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class SessionRequest:
    amount: int
    currency: str
    customer: Mapping[str, Any]
    success_url: str
    cancel_url: str
    product_id: int | None = None
    product_name: str | None = None
    subscription_frequency_key: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise, copying mappings only: anything else is left for the checks to refuse.
        if isinstance(self.currency, str):
            object.__setattr__(self, "currency", self.currency.upper())
        for name in ("customer", "metadata"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, {})
            elif isinstance(value, Mapping):
                object.__setattr__(self, name, dict(value))
        object.__setattr__(self, "product_name", self.product_name or None)
        object.__setattr__(self, "subscription_frequency_key", self.subscription_frequency_key or None)
        errors = price_errors(self)
        customer = self.customer
        try:
            validate_email((customer.get("email") if isinstance(customer, Mapping) else "") or "")
        except ValidationError:
            errors["customer.email"] = "a valid email address is required"
        for name in ("success_url", "cancel_url"):
            parts = urlsplit(str(getattr(self, name) or ""))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                errors[name] = "must be an absolute http(s) URL"
        if errors:
            raise KhaimeRequestInvalidError("The payment session request is invalid.", details=errors)

    def to_body(self) -> dict[str, Any]:
        """The JSON body Khaime gets: optional fields only when set."""
        body: dict[str, Any] = {
            "amount": self.amount,
            "currency": self.currency,
            "customer": dict(self.customer),
            "success_url": self.success_url,
            "cancel_url": self.cancel_url,
        }
        if self.product_id is not None:
            body["product_id"] = self.product_id
        if self.product_name:
            body["product_name"] = self.product_name
        if self.subscription_frequency_key:
            body["subscription_frequency_key"] = self.subscription_frequency_key
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        return body

"""The price a buy button carries, signed so the buyer cannot change it.

The token is ``django.core.signing`` with a salt of our own, so no other signed value of the site
(a session cookie, a password-reset link) can be passed off as a price, and it expires after
``KHAIME["TOKEN_MAX_AGE"]`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core import signing
from django.utils.translation import gettext_lazy as _

from .conf import khaime_settings
from .exceptions import KhaimeRequestInvalid
from .money import is_currency

SALT = "khaime_django.purchase.v1"
_SCALARS = (str, int, float, bool, type(None))


class InvalidPurchase(Exception):
    """The buy-button token is missing, tampered with, expired or foreign. The message is shown
    to the buyer (checkout_invalid.html), so it is translatable."""


@dataclass(frozen=True)
class Purchase:
    amount: int
    currency: str
    product_name: str = ""
    product_id: int | None = None
    subscription_frequency_key: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        errors = {}
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            errors["amount"] = "must be a positive integer in the currency's smallest unit (5000 for $50.00)"
        if not is_currency(self.currency):
            errors["currency"] = "must be an ISO 4217 code"
        if self.product_id is None and not self.product_name:
            errors["product_name"] = "product_id or product_name is required"
        if not isinstance(self.metadata, Mapping) or not all(
            isinstance(value, _SCALARS) for value in self.metadata.values()
        ):
            errors["metadata"] = "must be a dict of scalar values"
        if errors:
            raise KhaimeRequestInvalid("Invalid purchase.", details=errors)
        object.__setattr__(self, "currency", self.currency.upper())
        object.__setattr__(self, "metadata", dict(self.metadata))

    def sign(self) -> str:
        return signing.dumps(asdict(self), salt=SALT, compress=True)

    @classmethod
    def from_token(cls, token: str) -> Purchase:
        if not token:
            raise InvalidPurchase(_("The purchase token is missing."))
        try:
            data = signing.loads(token, salt=SALT, max_age=khaime_settings.TOKEN_MAX_AGE)
        except signing.SignatureExpired as error:
            raise InvalidPurchase(_("This buy button has expired; reload the page.")) from error
        except signing.BadSignature as error:
            raise InvalidPurchase(_("The purchase token is not valid.")) from error
        try:
            return cls(**data)
        except (TypeError, KhaimeRequestInvalid) as error:
            raise InvalidPurchase(_("The purchase token is not valid.")) from error

    def checkout_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``services.start_checkout``."""
        return {
            "amount": self.amount,
            "currency": self.currency,
            "product_name": self.product_name or None,
            "product_id": self.product_id,
            "subscription_frequency_key": self.subscription_frequency_key or None,
            "metadata": dict(self.metadata),
        }

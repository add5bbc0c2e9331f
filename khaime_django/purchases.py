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
from .exceptions import KhaimeRequestInvalidError
from .session_request import SessionRequest, price_errors

SALT = "khaime_django.purchase.v1"


class InvalidPurchaseError(Exception):
    """The buy-button token is missing, tampered with, expired or foreign. The message is shown
    to the buyer (checkout_invalid.html), so it is translatable."""


#: The name before 0.2.
InvalidPurchase = InvalidPurchaseError


@dataclass(frozen=True)
class Purchase:
    amount: int
    currency: str
    product_name: str = ""
    product_id: int | None = None
    subscription_frequency_key: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        errors = price_errors(self)
        if errors:
            raise KhaimeRequestInvalidError("Invalid purchase.", details=errors)
        object.__setattr__(self, "currency", self.currency.upper())
        object.__setattr__(self, "metadata", dict(self.metadata))

    @classmethod
    def build(
        cls,
        *,
        amount: Any,
        currency: Any,
        product_name: str | None = None,
        product_id: int | None = None,
        subscription_frequency_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Purchase:
        """A purchase from loosely given values (None for "not set"), as callers of
        ``start_checkout`` and the ``khaime_buy_button`` tag pass them."""
        return cls(
            amount=amount,
            currency=currency,
            product_name=product_name or "",
            product_id=product_id,
            subscription_frequency_key=subscription_frequency_key or "",
            metadata=metadata if metadata is not None else {},
        )

    def sign(self) -> str:
        return signing.dumps(asdict(self), salt=SALT, compress=True)

    @classmethod
    def from_token(cls, token: str) -> Purchase:
        if not token:
            raise InvalidPurchaseError(_("The purchase token is missing."))
        try:
            data = signing.loads(token, salt=SALT, max_age=khaime_settings.TOKEN_MAX_AGE)
        except signing.SignatureExpired as error:
            raise InvalidPurchaseError(_("This buy button has expired; reload the page.")) from error
        except signing.BadSignature as error:
            raise InvalidPurchaseError(_("The purchase token is not valid.")) from error
        try:
            return cls(**data)
        except (TypeError, KhaimeRequestInvalidError) as error:
            raise InvalidPurchaseError(_("The purchase token is not valid.")) from error

    def session_request(
        self, *, customer: Mapping[str, Any], success_url: str, cancel_url: str, reference: str
    ) -> SessionRequest:
        """The request for Khaime for this price, this buyer and these return URLs; ``reference``
        (ours) travels in ``metadata.reference``."""
        return SessionRequest(
            amount=self.amount,
            currency=self.currency,
            customer=customer,
            success_url=success_url,
            cancel_url=cancel_url,
            product_id=self.product_id,
            product_name=self.product_name,
            subscription_frequency_key=self.subscription_frequency_key,
            metadata={**self.metadata, "reference": reference},
        )

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

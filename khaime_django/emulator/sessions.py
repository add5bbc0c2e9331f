"""Payment sessions: what a create request must contain, and how a session changes state.

Statuses are Khaime's: ``pending`` -> ``completed`` | ``failed`` | ``expired``. A pending session
past ``expires_at`` reads as ``expired`` without anything having to run at that moment. Refunds
and disputes happen to the payment a completed session made (``records.Payment``); the session
itself stays ``completed`` (Khaime documents no other session status).
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeGuard, cast
from urllib.parse import urlsplit

from .money import transaction_fee
from .timestamps import iso_millis

SCALAR_TYPES = (str, int, float, bool, type(None))
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FREQUENCIES = ("daily", "weekly", "monthly", "quarterly", "yearly")


class InvalidSessionRequest(ValueError):
    """The create-session body fails validation; ``details`` names each bad field."""

    def __init__(self, details: dict[str, str]):
        self.details = details
        super().__init__("Validation failed")


class UnknownRecord(KeyError):
    """No session, payment, subscription, refund or event has this id; answered with 404."""

    kind = "record"

    def __init__(self, record_id: str):
        self.record_id = record_id
        super().__init__(record_id)

    def __str__(self) -> str:
        return f"No {self.kind} {self.record_id!r}"


class UnknownSession(UnknownRecord):
    kind = "session"

    @property
    def session_id(self) -> str:
        return self.record_id


class TransitionNotAllowed(ValueError):
    """The action does not apply to the record in its current status; answered with 409."""

    def __init__(self, record_id: str, action: str, status: str, reason: str | None = None, kind: str = "session"):
        self.record_id = self.session_id = record_id
        self.action = action
        self.status = status
        super().__init__(reason or f"Cannot {action} a {kind} that is {status}")


@dataclass(frozen=True)
class SessionRequest:
    """A validated ``POST /payments/sessions`` body."""

    amount: int
    currency: str
    product_id: int | None
    product_name: str | None
    customer: dict
    metadata: dict
    success_url: str | None
    cancel_url: str | None
    subscription_frequency_key: str | None

    @property
    def product_title(self) -> str:
        return self.product_name or f"Product {self.product_id}"

    @property
    def payment_type(self) -> str:
        return "subscription" if self.subscription_frequency_key else "one_time"


def parse_session_request(body: dict) -> SessionRequest:
    """Validate a decoded JSON object; optional fields sent as ``null`` count as absent."""
    details: dict[str, str] = {}

    amount = body.get("amount")
    if not _is_int(amount) or amount <= 0:
        details["amount"] = "must be a positive integer in the currency's smallest unit"

    currency = body.get("currency")
    if isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isalpha():
        currency = currency.upper()
    else:
        details["currency"] = "must be a 3-letter ISO 4217 code"

    product_id = body.get("product_id")
    product_name = body.get("product_name")
    if product_id is not None and not _is_int(product_id):
        details["product_id"] = "must be an integer"
    if product_name is not None and not (isinstance(product_name, str) and product_name.strip()):
        details["product_name"] = "must be a non-empty string"
    if product_id is None and product_name is None:
        details["product_id"] = details["product_name"] = "product_id or product_name is required"

    customer = body.get("customer")
    if not isinstance(customer, dict):
        details["customer"] = "must be an object with an email"
    elif not (isinstance(customer.get("email"), str) and EMAIL_PATTERN.match(customer["email"])):
        details["customer.email"] = "must be a valid email address"

    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        details["metadata"] = "must be an object"
    else:
        for key, value in metadata.items():
            if not isinstance(value, SCALAR_TYPES):
                details[f"metadata.{key}"] = "must be a string, number, boolean or null"

    for name in ("success_url", "cancel_url"):
        url = body.get(name)
        if url is not None and not _is_absolute_http_url(url):
            details[name] = "must be an absolute http(s) URL"

    frequency = body.get("subscription_frequency_key")
    if frequency is not None and frequency not in FREQUENCIES:
        details["subscription_frequency_key"] = f"must be one of {', '.join(FREQUENCIES)}"

    if details:
        raise InvalidSessionRequest(details)
    # No details: amount, currency and customer passed the checks above.
    return SessionRequest(
        amount=cast(int, amount),
        currency=cast(str, currency),
        product_id=product_id,
        product_name=product_name,
        customer=cast(dict, customer),
        metadata=metadata,
        success_url=body.get("success_url"),
        cancel_url=body.get("cancel_url"),
        subscription_frequency_key=frequency,
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_absolute_http_url(value) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@dataclass
class Session:
    session_id: str
    stripe_session_id: str
    mode: str
    request: SessionRequest
    transaction_fee: int
    customer_pays_fees: bool
    payment_url: str
    created_at: datetime
    expires_at: datetime
    state: str = "pending"
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    transaction_id: str | None = None  # of the payment made when it completed

    @classmethod
    def create(cls, request: SessionRequest, *, mode: str, base_url: str, config, now: datetime) -> Session:
        session_id = f"sess_{uuid.uuid4()}"
        stripe_prefix = "cs_live_" if mode == "live" else "cs_test_"
        return cls(
            session_id=session_id,
            stripe_session_id=stripe_prefix + uuid.uuid4().hex,
            mode=mode,
            request=request,
            transaction_fee=transaction_fee(request.amount, config.fee_bps, config.fee_fixed),
            customer_pays_fees=config.customer_pays_fees,
            payment_url=f"{base_url}/checkout/{session_id}",
            created_at=now,
            expires_at=now + timedelta(seconds=config.session_ttl),
        )

    @property
    def total_amount(self) -> int:
        if self.customer_pays_fees:
            return self.request.amount + self.transaction_fee
        return self.request.amount

    @property
    def currency(self) -> str:
        return self.request.currency

    def status(self, now: datetime) -> str:
        if self.state == "pending" and now >= self.expires_at:
            return "expired"
        return self.state

    # --- transitions: each raises TransitionNotAllowed instead of changing a terminal state ---

    def complete(self, now: datetime) -> None:
        self._require_pending("complete", now)
        self.state, self.completed_at = "completed", now
        self.transaction_id = f"txn_{uuid.uuid4().hex}"

    def fail(self, now: datetime) -> None:
        self._require_pending("fail", now)
        self.state, self.failed_at = "failed", now

    def expire(self, now: datetime) -> None:
        self._require_pending("expire", now)
        self.state, self.expires_at = "expired", now

    def _require_pending(self, action: str, now: datetime) -> None:
        status = self.status(now)
        if status != "pending":
            raise TransitionNotAllowed(self.session_id, action, status)

    # --- views of a session ---

    def fee_details(self) -> dict:
        return {
            "base_product_price": self.request.amount,
            "transaction_fee": self.transaction_fee,
            "total_amount": self.total_amount,
            "customer_pays_fees": self.customer_pays_fees,
        }

    def created_response(self) -> dict:
        """``data`` of ``POST /payments/sessions`` (the documented example's shape)."""
        return {
            "session_id": self.session_id,
            "stripe_session_id": self.stripe_session_id,
            "payment_url": self.payment_url,
            "expires_at": iso_millis(self.expires_at),
            "amount": self.total_amount,
            "currency": self.currency,
            "status": "pending",
            "mode": self.mode,
            "payment_type": self.request.payment_type,
            "fee_details": self.fee_details(),
        }

    def retrieved_response(self, now: datetime) -> dict:
        """``data`` of ``GET /payments/sessions/{id}``."""
        return {
            "session_id": self.session_id,
            "status": self.status(now),
            "amount": self.total_amount,
            "currency": self.currency,
            "payment_type": self.request.payment_type,
            "created_at": iso_millis(self.created_at),
            "completed_at": iso_millis(self.completed_at),
            "expires_at": iso_millis(self.expires_at),
        }

    def snapshot(self, now: datetime) -> dict:
        """Everything the emulator knows about the session, as fresh JSON-ready values."""
        request = self.request
        return {
            **self.created_response(),
            **self.retrieved_response(now),
            "transaction_id": self.transaction_id,
            "product_id": request.product_id,
            "product_name": request.product_name,
            "product_title": request.product_title,  # what the buyer and webhooks see
            "customer": copy.deepcopy(request.customer),
            "metadata": copy.deepcopy(request.metadata),
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "subscription_frequency_key": request.subscription_frequency_key,
            "failed_at": iso_millis(self.failed_at),
        }

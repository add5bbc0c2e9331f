"""Reading what Khaime says about a subscription: a ``subscription.*`` event's object, an item of
``GET /subscriptions``, or ``GET /subscriptions/{id}``'s answer. Khaime's schemas are not fully
documented, so every value is checked before it is used and an unreadable one is left out.

Nothing here writes: applying what a payload says is ``subscription_reports``'s.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from ..models import PaymentSession
from ..subscription_statuses import REMOTE_SUBSCRIPTION_STATUS
from ..timestamps import parse_timestamp
from . import ledger, payments

#: The longest subscription id stored (``Subscription.subscription_id``).
MAX_SUBSCRIPTION_ID = 255
#: ``payment_history`` statuses that mean money was received.
MONEY_RECEIVED = frozenset({"succeeded", "paid", "completed", "refunded", "partially_refunded", "disputed"})
#: Keys under which a subscription object may carry its trial's end (Khaime documents none).
TRIAL_END_KEYS = ("trial_ends_at", "trial_end", "trial_end_date", "trial_ends")


def subscription_id_of(data: Any, *keys: str) -> str | None:
    """The subscription id under the first of ``keys`` that holds one, or None."""
    if not isinstance(data, Mapping):
        return None
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip() and len(value) <= MAX_SUBSCRIPTION_ID:
            return value.strip()
    return None


def status_of(data: Mapping[str, Any]) -> str | None:
    """The status Khaime's ``status`` word means, or None (absent or unknown)."""
    value = data.get("status")
    return REMOTE_SUBSCRIPTION_STATUS.get(value.lower()) if isinstance(value, str) else None


def payment_history(data: Mapping[str, Any]) -> list[tuple[ledger.PaymentFacts, str]]:
    """The money-received entries of ``payment_history`` as ledger facts, in Khaime's order
    (oldest first, as ``GET /subscriptions/{id}`` documents)."""
    history = data.get("payment_history")
    if not isinstance(history, list):
        return []
    entries = []
    for entry in history:
        transaction_id = ledger.transaction_id_of(entry)
        status = entry.get("status") if isinstance(entry, dict) else None
        if transaction_id is None or (isinstance(status, str) and status.lower() not in MONEY_RECEIVED):
            continue
        amount, currency = entry.get("amount"), entry.get("currency")
        valid = isinstance(amount, int) and not isinstance(amount, bool) and isinstance(currency, str)
        facts = ledger.PaymentFacts(
            transaction_id=transaction_id,
            amount=amount if valid else None,
            currency=currency if valid else "",
            paid_at=parse_timestamp(entry.get("paid_at")),
            amounts={},
            is_live=None,
        )
        entries.append((facts, str(status)))
    return entries


def reported_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """``{Subscription field: value}`` for what ``data`` says (the status aside). A key it does
    not carry, or carries unreadable, is left out; a timestamp it carries as null clears it."""
    reported: dict[str, Any] = {}
    for name, key in (("frequency", "frequency"), ("product_name", "product_title"), ("product_name", "product_name")):
        value = data.get(key)
        if isinstance(value, str) and value:
            reported[name] = value[:255]
    currency = data.get("currency")
    if isinstance(currency, str) and len(currency) == 3:
        reported["currency"] = currency.upper()
    email = data.get("customer_email")
    if isinstance(email, str) and "@" in email and len(email) <= 254:
        reported["customer_email"] = email
    for name in ("amount", "product_id"):
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            reported[name] = value
    for name, keys in (
        ("next_payment_date", ("next_payment_date",)),
        ("cancelled_at", ("cancelled_at",)),
        ("ended_at", ("ended_at",)),
        ("started_at", ("created_at",)),
        ("trial_ends_at", TRIAL_END_KEYS),
    ):
        for key in keys:
            if key in data:
                value = data.get(key)
                parsed = parse_timestamp(value)
                if parsed is not None or value is None:
                    reported[name] = parsed
                break
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        reported["metadata"] = metadata
    return reported


def starting_session(data: Mapping[str, Any]) -> PaymentSession | None:
    """The checkout that started the subscription: by ``metadata.reference``, then session id."""
    metadata = data.get("metadata")
    reference = metadata.get("reference") if isinstance(metadata, Mapping) else None
    lookups: list[dict[str, Any]] = []
    if isinstance(reference, str):
        try:
            lookups.append({"reference": uuid.UUID(reference)})
        except ValueError:
            pass
    session_id = data.get("session_id")
    if isinstance(session_id, str) and session_id:
        lookups.append({"session_id": session_id})
    return payments.first_session(lookups)

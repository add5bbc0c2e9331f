"""Webhook bodies built and signed the way Khaime does it (docs/khaime-api.md, "Webhooks"): the signature is
the lowercase hex HMAC-SHA256 of the exact body bytes, keyed with the whole ``whsec_`` secret.

Signing is written out here rather than imported from khaime_django.webhooks, so a bug there
cannot make the tests agree with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

from django.urls import reverse

SECRET = "whsec_test_secret"  # the one tests/conftest.py configures


def khaime_signature(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def to_body(payload) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def new_event_id() -> str:
    return f"evt_{uuid.uuid4()}"


def payment_event(
    event_type: str,
    session=None,
    *,
    event_id: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    is_live: bool | None = None,
    reference=...,
    session_id=...,
    **data,
) -> dict:
    """A 2026-03-27 ``payment.*`` envelope about ``session``; amounts default to what it expects.

    ``reference=None`` / ``session_id=None`` leave those keys out (to test matching).
    """
    total = amount if amount is not None else _expected_amount(session)
    currency = currency or (session.currency if session is not None else "USD")
    metadata = {}
    if reference is ...:
        reference = session.reference if session is not None else None
    if reference is not None:
        metadata["reference"] = str(reference)
    if session_id is ...:
        session_id = session.session_id if session is not None else None
    payment = {
        "object": "payment",
        # One payment per session, as at Khaime: every event about it carries the same id.
        "id": f"txn_{session.reference.hex}" if session is not None else f"txn_{uuid.uuid4().hex}",
        "status": event_type.split(".", 1)[1],
        "payment_type": "one_time",
        "gateway": "stripe",
        "amounts": {
            "customer_paid": {"amount": total, "currency": currency},
            "merchant_gross": {"amount": total, "currency": currency},
            "merchant_net": {"amount": total - 320, "currency": currency},
            "fees": {"amount": 320, "currency": currency},
        },
        "customer": {"email": "buyer@example.com"},
        "product": {"id": None, "title": "Premium Plan", "type": "digital"},
        "metadata": metadata,
        "paid_at": "2026-03-27T14:31:58Z",
    }
    if session_id is not None:
        payment["session_id"] = session_id
    payment.update(data)
    return {
        "api_version": "2026-03-27",
        "event_id": event_id or new_event_id(),
        "event_type": event_type,
        "occurred_at": "2026-03-27T14:32:00Z",
        "is_live": _is_live(session) if is_live is None else is_live,
        "business_id": "1042",
        "data": payment,
    }


def legacy_payment_event(
    event_type: str,
    session=None,
    *,
    event_id: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    **data,
) -> dict:
    """A pre-2026-03-27 envelope: no api_version nor business_id, flat amount/currency,
    ``data.customer`` with paid_amount/paid_currency, flat product_id + transaction_details."""
    total = amount if amount is not None else _expected_amount(session)
    currency = currency or (session.currency if session is not None else "USD")
    payment = {
        "id": f"pay_{uuid.uuid4().hex[:12]}",
        "status": event_type.split(".", 1)[1],
        "amount": total,
        "currency": currency,
        "customer": {
            "email": "buyer@example.com",
            "paid_amount": total,
            "paid_currency": currency,
        },
        "product_id": None,
        "transaction_details": {"product_name": "Premium Plan"},
        "metadata": {"reference": str(session.reference)} if session is not None else {},
    }
    if session is not None and session.session_id:
        payment["session_id"] = session.session_id
    payment.update(data)
    return {
        "event_id": event_id or new_event_id(),
        "event_type": event_type,
        "occurred_at": "2026-03-01T10:00:00Z",
        "is_live": _is_live(session),
        "data": payment,
    }


def post_webhook(
    client,
    payload=None,
    *,
    body: bytes | None = None,
    secret: str | None = SECRET,
    signature: str | None = None,
    **extra,
):
    """POST like Khaime: the body's bytes, signed with ``secret`` (None: no signature header)."""
    if body is None:
        body = to_body(payload)
    headers = dict(extra)
    if signature is None and secret is not None:
        signature = khaime_signature(body, secret)
    if signature is not None:
        headers["HTTP_X_KHAIME_SIGNATURE"] = signature
    if isinstance(payload, dict):
        headers.setdefault("HTTP_X_KHAIME_EVENT", str(payload.get("event_type")))
        headers.setdefault("HTTP_X_KHAIME_EVENT_ID", str(payload.get("event_id")))
    return client.post(reverse("khaime:webhook"), data=body, content_type="application/json", **headers)


def _expected_amount(session) -> int:
    if session is None:
        return 5320
    return session.total_amount if session.total_amount is not None else session.amount


def _is_live(session) -> bool:
    return session is not None and session.mode == "live"

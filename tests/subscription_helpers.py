"""``subscription.*`` webhook envelopes shaped as docs/emulator.md documents them."""

from __future__ import annotations

from .webhook_helpers import new_event_id


def history_entry(transaction_id: str, amount: int = 5320, currency: str = "USD", status: str = "succeeded") -> dict:
    return {
        "id": transaction_id,
        "transaction_id": transaction_id,
        "amount": amount,
        "currency": currency,
        "status": status,
        "refunded_amount": 0,
        "paid_at": "2026-03-27T14:32:00.000Z",
    }


def subscription_object(
    subscription_id: str = "sub_1",
    session=None,
    *,
    status: str = "active",
    payments: tuple[str, ...] = ("txn_first",),
    next_payment_date: str = "2026-04-27T14:32:00.000Z",
    **fields,
) -> dict:
    data = {
        "object": "subscription",
        "id": subscription_id,
        "product_id": 7,
        "product_title": "Monthly Membership",
        "customer_email": "member@example.com",
        "amount": 5320,
        "currency": "USD",
        "frequency": "monthly",
        "status": status,
        "next_payment_date": next_payment_date,
        "created_at": "2026-03-27T14:32:00.000Z",
        "cancelled_at": None,
        "ended_at": None,
        "session_id": session.session_id if session is not None else None,
        "metadata": {"reference": str(session.reference)} if session is not None else {},
        "payment_history": [history_entry(txn) for txn in payments],
    }
    data.update(fields)
    return data


def subscription_event(event_type: str, data: dict, *, occurred_at: str = "2026-03-27T14:32:00Z", **envelope) -> dict:
    return {
        "api_version": "2026-03-27",
        "event_id": envelope.pop("event_id", None) or new_event_id(),
        "event_type": event_type,
        "occurred_at": occurred_at,
        "is_live": envelope.pop("is_live", False),
        "business_id": "1042",
        "data": data,
        **envelope,
    }

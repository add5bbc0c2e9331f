"""The webhook endpoint under fire: signed bodies that are arbitrary JSON, arbitrary bytes, or
well-formed Khaime events with fields of the wrong type, missing, huge, nested, carrying NUL
characters, or of unknown types. Shared by the fuzz tests and their named examples.

The promise checked (:func:`check_delivery`): the answer is 200 or 400 (413 only for a body
over ``WEBHOOK_MAX_BODY``), never 500; a 400 changes nothing at all; a 200 stored the event
(its payload as sent, NUL as U+FFFD) and changed a session only by applying that event through
an allowed transition; delivering the same body again changes nothing but the delivery count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.test import Client
from hypothesis import strategies as st

from khaime_django.models import PaymentSession, StatusChange, WebhookEvent

from .payment_sessions import PaymentSessionWorld
from .scaffolding import post_signed

PAYMENT_TYPES = ("payment.succeeded", "payment.failed", "payment.refunded", "payment.disputed")
UNKNOWN_TYPES = ("payment.exploded", "subscription.renewed", "refund.completed", "PAYMENT.SUCCEEDED", " ", "x" * 65)
#: Nesting the endpoint must take in its stride. Deeper nesting is a known defect (a 500 from
#: webhooks._without_nul's recursion); test_webhook_fuzz's named example covers it.
MAX_FUZZ_DEPTH = 60

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 10**40, 0, -1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["\x00", "evt\x00id", "\ud7ff", "sess_", "2026-03-27T14:32:00Z", "not a date"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def nested(depth: int, leaf: Any = "deep") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


weird_values = (
    json_values
    | st.builds(nested, st.integers(min_value=2, max_value=MAX_FUZZ_DEPTH))
    | st.sampled_from(["x" * 200_000, "\x00" * 1000, 10**300, list(range(2000))])
    | st.sampled_from(PAYMENT_TYPES + UNKNOWN_TYPES)
)

#: Where a Khaime payment event carries the fields the app reads.
PATHS = (
    ("event_id",),
    ("event_type",),
    ("api_version",),
    ("is_live",),
    ("occurred_at",),
    ("business_id",),
    ("data",),
    ("data", "id"),
    ("data", "session_id"),
    ("data", "session"),
    ("data", "metadata"),
    ("data", "metadata", "reference"),
    ("data", "metadata", "session_id"),
    ("data", "amounts"),
    ("data", "amounts", "customer_paid"),
    ("data", "amounts", "customer_paid", "amount"),
    ("data", "amounts", "customer_paid", "currency"),
    ("data", "amount"),
    ("data", "currency"),
    ("data", "paid_at"),
)


@dataclass(frozen=True)
class Mutation:
    path: tuple[str, ...]
    value: Any = None
    delete: bool = False

    def apply(self, payload: dict) -> None:
        target: Any = payload
        for key in self.path[:-1]:
            if not isinstance(target, dict):
                return
            target = target.setdefault(key, {})
        if not isinstance(target, dict):
            return
        if self.delete:
            target.pop(self.path[-1], None)
        else:
            target[self.path[-1]] = self.value

    def __repr__(self) -> str:
        where = ".".join(self.path)
        if self.delete:
            return f"del {where}"
        shown = repr(self.value)
        return f"{where} = {shown[:60]}{'...' if len(shown) > 60 else ''}"


mutations = st.builds(Mutation, path=st.sampled_from(PATHS), value=weird_values) | st.builds(
    Mutation, path=st.sampled_from(PATHS), delete=st.just(True)
)


def envelope(session: PaymentSession, event_type: str, event_id: str) -> dict:
    """A well-formed 2026-03-27 payment event about ``session``."""
    money = {"amount": session.total_amount or session.amount, "currency": session.currency}
    return {
        "api_version": "2026-03-27",
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": "2026-03-27T14:32:00Z",
        "is_live": False,
        "business_id": "1042",
        "data": {
            "object": "payment",
            "id": "pay_fuzz",
            "status": event_type.split(".", 1)[-1],
            "session_id": session.session_id,
            "amounts": {"customer_paid": money, "merchant_gross": money},
            "metadata": {"reference": str(session.reference)},
            "paid_at": "2026-03-27T14:31:58Z",
        },
    }


def mutated(session: PaymentSession, event_type: str, event_id: str, changes: list[Mutation]) -> dict:
    payload = envelope(session, event_type, event_id)
    for change in changes:
        change.apply(payload)
    return payload


# -- the check --------------------------------------------------------------------------------


def database_state() -> dict[str, Any]:
    return {
        "sessions": list(
            PaymentSession.objects.order_by("pk").values_list(
                "pk", "status", "needs_review", "completed_at", "updated_at"
            )
        ),
        "history": list(StatusChange.objects.order_by("pk").values_list("session_id", "from_status", "to_status")),
        "events": list(WebhookEvent.objects.order_by("pk").values_list("event_id", "outcome", "deliveries")),
    }


def as_stored(value: Any) -> Any:
    """A JSON value as the database keeps it: NUL (which PostgreSQL's jsonb refuses) as U+FFFD
    (the app's doing), and numbers compared by value, because jsonb keeps a float as the decimal
    Python printed (5.531585088697953e+16 comes back as the int 55315850886979530)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {as_stored(key): as_stored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_stored(item) for item in value]
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


def check_delivery(client: Client, body: bytes) -> int:
    """POST ``body`` signed, check the promise, deliver it again; return the first status code."""
    before = database_state()
    response = post_signed(client, body)
    limit = int(settings.KHAIME.get("WEBHOOK_MAX_BODY", 1024 * 1024))
    allowed = {200, 400} | ({413} if len(body) > limit else set())
    assert response.status_code in allowed, f"answered {response.status_code}: {response.content[:300]!r}"
    after = database_state()
    if response.status_code != 200:
        assert after == before, "a refused delivery changed the database"
        return response.status_code

    answer = json.loads(response.content)
    sent = json.loads(body)
    payload = as_stored(sent)
    stored = WebhookEvent.objects.get(event_id=payload["event_id"])
    assert answer == {"received": True, "outcome": stored.outcome}, answer
    assert stored.outcome in ("applied", "duplicate", "ignored", "unmatched"), (stored.outcome, stored.error)
    assert as_stored(stored.payload) == payload, "the stored payload is not the event as sent"
    assert stored.event_type == payload["event_type"]

    changed = {row[0] for row in after["sessions"] if row not in before["sessions"]}
    if changed:
        # Applied, or a duplicate payment that only raised the review flag.
        assert payload["event_type"] in PAYMENT_TYPES and stored.outcome in ("applied", "duplicate"), (
            f"a {stored.outcome} {payload['event_type']!r} event changed sessions {changed}"
        )
        assert changed == {stored.session_id}, f"changed {changed}, but the event matched {stored.session_id}"
    new_history = after["history"][len(before["history"]) :]
    assert after["history"][: len(before["history"])] == before["history"], "history was rewritten"
    statuses = {pk: status for pk, status, *_ in before["sessions"]}
    for session_id, from_status, to_status in new_history:
        assert from_status == statuses[session_id], f"history row {from_status} -> {to_status} is not a chain"
        assert from_status in PaymentSessionWorld.ALLOWED.get(to_status, ()), f"forbidden {from_status} -> {to_status}"
        statuses[session_id] = to_status
    assert statuses == {pk: status for pk, status, *_ in after["sessions"]}, "a status changed without history"

    again = post_signed(client, body)
    assert again.status_code == 200, f"a redelivery answered {again.status_code}"
    assert json.loads(again.content)["outcome"] == "duplicate"
    final = database_state()
    assert final["sessions"] == after["sessions"] and final["history"] == after["history"], "a redelivery changed"
    return response.status_code

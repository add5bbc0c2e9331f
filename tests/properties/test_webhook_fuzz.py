"""The webhook endpoint never answers 500 to bad input, and a bad delivery changes nothing
(tests/properties/webhook_fuzz.py says exactly what is checked)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from khaime_django.models import Status

from .scaffolding import Savepoint, body_of
from .webhook_fuzz import (
    PAYMENT_TYPES,
    UNKNOWN_TYPES,
    Mutation,
    check_delivery,
    json_values,
    mutated,
    mutations,
    nested,
)

SESSION_STATUSES = [Status.PENDING, Status.CANCELLED, Status.COMPLETED, Status.FAILED, Status.EXPIRED]


@pytest.fixture
def raw_client():
    """A client that answers 500 like production would, instead of raising the view's exception."""
    return Client(raise_request_exception=False)


def run_isolated(check):
    savepoint = Savepoint()
    try:
        return check()
    finally:
        savepoint.rollback()


envelopes = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.text(min_size=1, max_size=300) | json_values,
        "event_type": st.sampled_from(PAYMENT_TYPES + UNKNOWN_TYPES) | json_values,
        "api_version": st.sampled_from(["2026-03-27", "1999-01-01", "x" * 40]) | json_values,
        "is_live": json_values,
        "occurred_at": json_values,
        "data": json_values,
    },
)
signed_bodies = {
    "arbitrary JSON": json_values.map(body_of),
    "arbitrary bytes": st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    "envelope-shaped JSON": envelopes.map(body_of),
}


@pytest.mark.parametrize("kind", list(signed_bodies))
def test_signed_bodies_are_answered_200_or_400_and_change_nothing_unless_valid(
    db, raw_client, hypothesis_settings, kind
):
    @hypothesis_settings
    @given(body=signed_bodies[kind])
    def check(body):
        run_isolated(lambda: check_delivery(raw_client, body))

    check()


def test_well_formed_events_with_bad_fields_are_stored_or_refused_cleanly(
    db, raw_client, make_session, hypothesis_settings
):
    @hypothesis_settings
    @given(
        status=st.sampled_from(SESSION_STATUSES),
        event_type=st.sampled_from(PAYMENT_TYPES + UNKNOWN_TYPES),
        changes=st.lists(mutations, min_size=1, max_size=3),
        event_number=st.integers(min_value=0, max_value=10**6),
    )
    def check(status, event_type, changes, event_number):
        def deliver():
            session = make_session(status)
            payload = mutated(session, event_type, f"evt_fuzz_{event_number}", changes)
            check_delivery(raw_client, body_of(payload))

        run_isolated(deliver)

    check()


# -- named examples: each way of breaking it tried by hand, kept as a specification ------------


@pytest.mark.parametrize(
    "changes",
    [
        [Mutation(("data",), "not an object")],
        [Mutation(("data", "metadata", "reference"), 12345)],
        [Mutation(("data", "metadata", "reference"), "not-a-uuid")],
        [Mutation(("data", "amounts", "customer_paid", "amount"), "5320")],
        [Mutation(("data", "amounts", "customer_paid", "amount"), 10**40)],
        [Mutation(("data", "paid_at"), "yesterday")],
        [Mutation(("is_live",), "yes")],
        [Mutation(("event_id",), "evt\x00nul")],
        [Mutation(("data", "session_id"), "x" * 200_000)],
        [Mutation(("data", "metadata"), nested(50))],
        [Mutation(("data",), None, delete=True)],
        [Mutation(("event_type",), "payment.exploded")],
    ],
    ids=repr,
)
def test_a_payment_event_with_a_bad_field_is_stored_or_refused_cleanly(db, raw_client, make_session, changes):
    session = make_session(Status.PENDING)
    status = check_delivery(raw_client, body_of(mutated(session, "payment.succeeded", "evt_named", changes)))
    assert status in (200, 400)


def test_a_body_that_is_not_utf8_is_refused_with_400(db, raw_client):
    assert check_delivery(raw_client, b'{"event_id": "\xff\xfe"}') == 400


def test_an_integer_too_long_to_parse_is_refused_with_400(db, raw_client):
    body = ('{"event_id":"evt_big","event_type":"payment.succeeded","data":{"amount":%s}}' % ("9" * 5000)).encode()
    assert check_delivery(raw_client, body) == 400


def test_a_valid_event_changes_the_session_it_matched(db, raw_client, make_session):
    """The checker itself can see a change: a valid payment.succeeded completes the session."""
    session = make_session(Status.PENDING)
    check_delivery(raw_client, body_of(mutated(session, "payment.succeeded", "evt_valid", [])))
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


@pytest.mark.parametrize("depth", [600])
def test_deeply_nested_signed_json_is_answered_400_not_500(db, raw_client, depth):
    body = json.dumps({"event_id": "evt_deep", "event_type": "payment.succeeded", "data": nested(depth)}).encode()
    check_delivery(raw_client, body)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_signed_body_with_a_non_json_number_is_answered_400_not_500(db, raw_client, constant):
    body = b'{"event_id":"evt_nan","event_type":"payment.succeeded","data":{"amount":' + constant.encode() + b"}}"
    check_delivery(raw_client, body)

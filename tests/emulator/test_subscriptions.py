"""Subscriptions: created by paying a session with a frequency key, listed and read through the
Partner API, and moved by the control API's actions, each with its signed events."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from khaime_django.emulator import TransitionNotAllowed
from khaime_django.emulator.records import one_period_after

from .conftest import LIVE_KEY


@pytest.fixture
def subscribe(api, emulator):
    """Pay a monthly session; answer the subscription id."""

    def run(frequency: str = "monthly", key=None, **fields) -> str:
        extra = {"key": key} if key else {}
        session_id = api.create_session(subscription_frequency_key=frequency, **extra, **fields)["session_id"]
        return emulator.complete(session_id)["subscription_id"]

    return run


def types(emulator) -> list[str]:
    return [event["event_type"] for event in emulator.events()]


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.mark.parametrize("frequency", ["daily", "weekly", "monthly", "quarterly", "yearly"])
def test_paying_a_frequency_session_creates_an_active_subscription_one_period_ahead(
    api, emulator, subscribe, frequency
):
    subscription_id = subscribe(frequency)

    subscription = emulator.subscription(subscription_id)
    assert subscription_id.startswith("sub_")
    assert (subscription["status"], subscription["frequency"]) == ("active", frequency)
    created = parse(subscription["created_at"])
    assert parse(subscription["next_payment_date"]) == one_period_after(created, frequency)
    assert len(subscription["payment_history"]) == 1
    assert types(emulator) == ["subscription.created", "payment.succeeded"]


def test_months_are_clamped_to_the_end_of_a_shorter_month():
    assert one_period_after(datetime(2027, 1, 31, 12), "monthly") == datetime(2027, 2, 28, 12)
    assert one_period_after(datetime(2027, 11, 30), "quarterly") == datetime(2028, 2, 29)
    assert one_period_after(datetime(2028, 2, 29), "yearly") == datetime(2029, 2, 28)


def test_an_unknown_frequency_key_is_422(api):
    response = api.create(subscription_frequency_key="fortnightly")

    assert response.status_code == 422
    assert "subscription_frequency_key" in response.json()["details"]


def test_first_payment_event_carries_the_subscription_and_a_transaction_id(emulator, subscribe):
    subscription_id = subscribe()

    created, paid = emulator.events()
    assert created["data"] == {**emulator.subscription(subscription_id)}
    assert paid["data"]["subscription_id"] == subscription_id
    assert paid["data"]["id"].startswith("txn_")
    assert paid["data"]["payment_type"] == "subscription"
    assert created["data"]["payment_history"][0]["transaction_id"] == paid["data"]["id"]


def test_renew_adds_a_payment_with_a_new_transaction_id_and_sends_renewed_and_succeeded(control, emulator, subscribe):
    subscription_id = subscribe()
    before = emulator.subscription(subscription_id)

    response = control("POST", f"/subscriptions/{subscription_id}/renew")

    after = response.json()["data"]
    assert response.status_code == 200
    history = [payment["transaction_id"] for payment in after["payment_history"]]
    assert len(set(history)) == 2
    assert parse(after["next_payment_date"]) == one_period_after(parse(before["next_payment_date"]), "monthly")
    renewed, paid = emulator.events()[2:]
    assert (renewed["event_type"], paid["event_type"]) == ("subscription.renewed", "payment.succeeded")
    assert renewed["data"] == after
    assert paid["data"]["id"] == history[1]
    assert paid["data"]["subscription_id"] == subscription_id


@pytest.mark.parametrize(
    ("steps", "status", "event_type"),
    [
        (["fail_payment"], "due", "subscription.payment_failed"),
        (["fail_payment", "renew"], "active", "payment.succeeded"),
        (["cancel"], "cancelled", "subscription.cancelled"),
        (["cancel", "expire"], "expired", "subscription.expired"),
        (["fail_payment", "expire"], "expired", "subscription.expired"),
        (["pause"], "paused", "subscription.paused"),
        (["pause", "resume"], "active", "subscription.resumed"),
    ],
)
def test_each_action_changes_the_status_and_sends_its_event(control, emulator, subscribe, steps, status, event_type):
    subscription_id = subscribe()

    for step in steps:
        assert control("POST", f"/subscriptions/{subscription_id}/{step}").status_code == 200

    assert emulator.subscription(subscription_id)["status"] == status
    last = emulator.events()[-1]
    assert last["event_type"] == event_type
    if event_type.startswith("subscription."):
        assert last["data"] == emulator.subscription(subscription_id)


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ("cancel", "renew"),
        ("cancel", "pause"),
        ("cancel", "resume"),
        ("cancel", "cancel"),
        ("pause", "renew"),
        ("pause", "fail_payment"),
    ],
)
def test_an_action_that_does_not_apply_is_409_and_sends_nothing(control, emulator, subscribe, setup, action):
    subscription_id = subscribe()
    control("POST", f"/subscriptions/{subscription_id}/{setup}")
    sent = len(emulator.events())

    response = control("POST", f"/subscriptions/{subscription_id}/{action}")

    assert response.status_code == 409
    assert len(emulator.events()) == sent


def test_an_expired_subscription_takes_no_action(emulator, subscribe):
    subscription_id = subscribe()
    emulator.expire_subscription(subscription_id)

    with pytest.raises(TransitionNotAllowed):
        emulator.renew_subscription(subscription_id)


def test_unknown_subscription_is_404(api, control):
    assert control("POST", "/subscriptions/sub_nope/renew").status_code == 404
    assert api.request("GET", "/subscriptions/sub_nope").status_code == 404


def test_get_subscription_has_the_documented_fields_and_payment_history(api, subscribe):
    subscription_id = subscribe(customer={"email": "member@example.com"}, product_id=7, product_name=None)

    data = api.request("GET", f"/subscriptions/{subscription_id}").json()["data"]

    assert {
        "id", "product_id", "customer_email", "amount", "currency", "frequency", "status",
        "next_payment_date", "created_at", "payment_history",
    } <= set(data)  # fmt: skip
    assert (data["customer_email"], data["product_id"], data["amount"]) == ("member@example.com", 7, 5320)
    assert data["payment_history"][0]["status"] == "succeeded"


def test_list_filters_by_status_and_product(api, emulator, subscribe):
    first = subscribe(product_id=1, product_name=None)
    second = subscribe(product_id=2, product_name=None)
    emulator.cancel_subscription(second)

    def ids(query: str) -> list[str]:
        body = api.request("GET", f"/subscriptions{query}").json()["data"]
        return [subscription["id"] for subscription in body["subscriptions"]]

    assert ids("?status=active") == [first]
    assert ids("?status=cancelled") == [second]
    assert ids("?product_id=2") == [second]
    assert "payment_history" not in api.request("GET", "/subscriptions").json()["data"]["subscriptions"][0]


def test_list_pages_and_sorts(api, subscribe):
    made = [subscribe(amount=amount) for amount in (3000, 1000, 2000)]

    page = api.request("GET", "/subscriptions?limit=2&offset=1&sort_by=actual_price&sort_order=asc").json()["data"]

    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert [subscription["id"] for subscription in page["subscriptions"]] == [made[2], made[0]]
    newest_first = api.request("GET", "/subscriptions").json()["data"]["subscriptions"]
    assert [subscription["id"] for subscription in newest_first] == made[::-1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lapsed", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("offset=-1", "offset"),
        ("sort_by=colour", "sort_by"),
        ("sort_order=up", "sort_order"),
    ],
)
def test_list_parameters_out_of_range_are_422(api, query, field):
    response = api.request("GET", f"/subscriptions?{query}")

    assert response.status_code == 422
    assert field in response.json()["details"]


def test_a_non_integer_list_parameter_is_400(api):
    assert api.request("GET", "/subscriptions?limit=ten").status_code == 400


def test_a_key_sees_only_the_subscriptions_of_its_mode(api, subscribe):
    live = subscribe(key=LIVE_KEY)

    assert api.request("GET", "/subscriptions").json()["data"]["total"] == 0
    assert api.request("GET", f"/subscriptions/{live}").status_code == 404
    assert api.request("GET", f"/subscriptions/{live}", key=LIVE_KEY).status_code == 200


def test_subscription_events_are_signed_and_delivered(api, wired_emulator, receiver):
    session_id = api.create_session(subscription_frequency_key="weekly")["session_id"]
    subscription_id = wired_emulator.complete(session_id)["subscription_id"]
    wired_emulator.renew_subscription(subscription_id)
    wired_emulator.wait_for_deliveries(4)

    delivered = sorted(json.loads(request["body"])["event_type"] for request in receiver.received)
    assert delivered == ["payment.succeeded", "payment.succeeded", "subscription.created", "subscription.renewed"]

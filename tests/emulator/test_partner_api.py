"""The Partner API under /api/v1/partner, over real HTTP, against khaime-api.md."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from .conftest import LIVE_KEY, OMIT

ISO_MILLIS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def test_create_session_answers_201_with_the_documented_shape(api):
    response = api.create()

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {
        "session_id", "stripe_session_id", "payment_url", "expires_at", "amount", "currency",
        "status", "mode", "payment_type", "fee_details",
    }  # fmt: skip
    assert re.fullmatch(r"sess_[0-9a-f-]{36}", data["session_id"])
    assert data["stripe_session_id"].startswith("cs_test_")
    assert data["payment_url"] == f"{api.emulator.base_url}/checkout/{data['session_id']}"
    assert ISO_MILLIS_Z.match(data["expires_at"])
    assert (data["status"], data["mode"], data["payment_type"], data["currency"]) == (
        "pending", "sandbox", "one_time", "USD",
    )  # fmt: skip


def test_customer_paying_fees_gives_the_documented_5000_320_5320_example(api):
    data = api.create_session(amount=5000)

    assert data["amount"] == 5320
    assert data["fee_details"] == {
        "base_product_price": 5000,
        "transaction_fee": 320,
        "total_amount": 5320,
        "customer_pays_fees": True,
    }


def test_merchant_absorbing_fees_charges_the_base_price(api):
    api.emulator.configure(customer_pays_fees=False)

    data = api.create_session(amount=5000)

    assert data["amount"] == 5000
    assert data["fee_details"] == {
        "base_product_price": 5000,
        "transaction_fee": 320,
        "total_amount": 5000,
        "customer_pays_fees": False,
    }


def test_fee_rate_and_fixed_fee_are_configurable(api):
    api.emulator.configure(fee_bps=290, fee_fixed=30)

    data = api.create_session(amount=10_000)

    assert data["fee_details"]["transaction_fee"] == 290 + 30
    assert data["amount"] == 10_320


def test_live_key_creates_a_live_session(api):
    data = api.create_session(key=LIVE_KEY)

    assert data["mode"] == "live"
    assert data["stripe_session_id"].startswith("cs_live_")


def test_subscription_frequency_makes_a_subscription(api):
    data = api.create_session(subscription_frequency_key="monthly")

    assert data["payment_type"] == "subscription"


def test_currency_is_uppercased(api):
    assert api.create_session(currency="eur")["currency"] == "EUR"


def test_product_id_alone_names_the_product(api):
    data = api.create_session(product_name=OMIT, product_id=77)

    assert api.emulator.session(data["session_id"])["product_id"] == 77


def test_session_expires_session_ttl_seconds_after_creation(api):
    api.emulator.configure(session_ttl=600)
    session_id = api.create_session()["session_id"]

    data = api.retrieve(session_id).json()["data"]

    assert parse(data["expires_at"]) - parse(data["created_at"]) == timedelta(seconds=600)


def test_request_fields_are_kept_on_the_stored_session(api):
    session_id = api.create_session(
        customer={"email": "ada@example.com", "first_name": "Ada"},
        metadata={"reference": "ord-9", "gift": True, "weight": 1.5, "note": None},
    )["session_id"]

    stored = api.emulator.session(session_id)

    assert stored["customer"] == {"email": "ada@example.com", "first_name": "Ada"}
    assert stored["metadata"] == {
        "reference": "ord-9",
        "gift": True,
        "weight": 1.5,
        "note": None,
    }
    assert stored["product_name"] == "Field guide (PDF)"
    assert stored["success_url"] == "https://shop.example/return/success?order=ord-1"
    assert stored["cancel_url"] == "https://shop.example/return/cancel?order=ord-1"


def test_get_session_answers_the_documented_shape(api):
    created = api.create_session()

    response = api.retrieve(created["session_id"])

    assert response.status_code == 200
    data = response.json()["data"]
    assert data == {
        "session_id": created["session_id"],
        "status": "pending",
        "amount": 5320,
        "currency": "USD",
        "payment_type": "one_time",
        "created_at": data["created_at"],
        "completed_at": None,
        "expires_at": created["expires_at"],
    }
    assert ISO_MILLIS_Z.match(data["created_at"])


def test_get_session_shows_completed_at_once_paid(api):
    session_id = api.create_session()["session_id"]
    api.emulator.complete(session_id)

    data = api.retrieve(session_id).json()["data"]

    assert data["status"] == "completed"
    assert ISO_MILLIS_Z.match(data["completed_at"])


def test_unknown_session_is_404_envelope(api):
    response = api.retrieve("sess_00000000-0000-0000-0000-000000000000")

    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Session not found"}


def test_account_names_the_merchant(api):
    response = api.request("GET", "/account")

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": {"merchant_id": 1042, "baseline_currency": "USD"},
    }


@pytest.mark.parametrize("key", [None, "", "sk_live_abc", "pk_test_abc", "PK_SANDBOX_abc"])
def test_missing_or_unknown_api_key_is_401(api, key):
    response = api.request("GET", "/account", key=key)

    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["error"]


@pytest.mark.parametrize("raw", [b"", b"[]", b'"text"', b"{not json", b"\xff\xfe"])
def test_body_that_is_not_a_json_object_is_400(api, raw):
    response = api.request("POST", "/payments/sessions", data=raw)

    assert response.status_code == 400
    assert response.json()["success"] is False


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"amount": OMIT}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 50.0}, "amount"),
        ({"amount": "5000"}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": OMIT}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": "US1"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"product_name": OMIT}, "product_id"),
        ({"product_name": ""}, "product_name"),
        ({"product_name": OMIT, "product_id": "7"}, "product_id"),
        ({"product_name": OMIT, "product_id": True}, "product_id"),
        ({"customer": OMIT}, "customer"),
        ({"customer": "buyer@example.com"}, "customer"),
        ({"customer": {}}, "customer.email"),
        ({"customer": {"email": "not-an-email"}}, "customer.email"),
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {"nested": {"a": 1}}}, "metadata.nested"),
        ({"metadata": {"items": [1, 2]}}, "metadata.items"),
        ({"success_url": "/relative"}, "success_url"),
        ({"success_url": "javascript:alert(1)"}, "success_url"),
        ({"cancel_url": "ftp://shop.example/"}, "cancel_url"),
        ({"subscription_frequency_key": 12}, "subscription_frequency_key"),
    ],
    ids=lambda value: repr(value) if isinstance(value, dict) else value,
)
def test_invalid_field_is_422_naming_the_field(api, fields, bad_field):
    response = api.create(**fields)

    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert body["error"] == "Validation failed"
    assert bad_field in body["details"]


def test_every_invalid_field_is_reported_at_once(api):
    response = api.create(amount=0, currency="x", customer={"email": "nope"}, metadata={"a": {}})

    assert set(response.json()["details"]) == {
        "amount",
        "currency",
        "customer.email",
        "metadata.a",
    }


def test_unknown_api_path_is_404_envelope(api):
    response = api.request("GET", "/payments/charges")

    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Not found"}


def test_wrong_method_is_405_envelope(api):
    response = api.request("DELETE", "/payments/sessions")

    assert response.status_code == 405
    assert response.json()["success"] is False
    assert response.json()["details"] == {"allowed": ["POST"]}
    assert response.headers["Allow"] == "POST"


def test_body_over_one_megabyte_is_413(api):
    response = api.request("POST", "/payments/sessions", data=b" " * (1024 * 1024 + 1))

    assert response.status_code == 413
    assert response.json()["success"] is False

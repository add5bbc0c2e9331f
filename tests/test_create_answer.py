"""Khaime's answer to POST /payments/sessions is checked against what we asked for, field by
field, before anything in it is stored or the buyer is sent anywhere (issue 10, items 2 and 4)."""

from __future__ import annotations

import copy

import pytest
from django.urls import reverse

from khaime_django.exceptions import KhaimeResponseError
from khaime_django.models import PaymentSession, Status
from khaime_django.services import start_checkout

from .conftest import API_BASE, SEED_CREATE_RESPONSE

SESSIONS_URL = f"{API_BASE}/payments/sessions"

pytestmark = pytest.mark.django_db


def answer_with(**changes):
    answer = copy.deepcopy(SEED_CREATE_RESPONSE)
    for name, value in changes.items():
        if name.startswith("fee_") and name != "fee_details":
            answer["data"]["fee_details"][name[4:]] = value
        else:
            answer["data"][name] = value
    return answer


def checkout(client, token):
    return client.post(reverse("khaime:checkout"), {"token": token, "email": "buyer@example.com"})


MISMATCHES = {
    "a total below the price": ({"amount": 1, "fee_total_amount": 1}, "amount is 1, below the requested 5000"),
    "another currency": ({"currency": "EUR"}, "currency is EUR, not USD"),
    "another base price": ({"fee_base_product_price": 4000}, "base_product_price is 4000, not the requested 5000"),
    "totals that disagree": ({"amount": 5320, "fee_total_amount": 6000}, "fee_details.total_amount is 6000"),
}


@pytest.mark.parametrize(("changes", "reason"), MISMATCHES.values(), ids=MISMATCHES.keys())
def test_an_answer_that_does_not_match_the_request_is_an_error_and_the_buyer_is_not_sent_to_pay(
    client, khaime_api, buy_token, changes, reason
):
    khaime_api.post(SESSIONS_URL, json=answer_with(**changes), status=201)
    response = checkout(client, buy_token)
    assert response.status_code == 502
    assert "Payment is unavailable right now" in response.content.decode()
    session = PaymentSession.objects.get()
    assert session.status == Status.ERROR
    assert reason in session.last_error
    assert session.payment_url == "" and session.total_amount is None


def test_a_matching_answer_with_customer_paid_fees_is_accepted(client, seed_create, buy_token):
    response = checkout(client, buy_token)
    assert response.status_code == 303
    assert PaymentSession.objects.get().total_amount == 5320


def test_a_lower_case_currency_in_the_answer_is_the_same_currency(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json=answer_with(currency="usd"), status=201)
    assert checkout(client, buy_token).status_code == 303


WRONG_TYPES = {
    "payment_url a number": {"payment_url": 12},
    "payment_url an object": {"payment_url": {"href": "https://checkout.stripe.com/x"}},
    "session_id a list": {"session_id": ["sess_1"]},
    "session_id too long": {"session_id": "sess_" + "x" * 300},
    "status a number": {"status": 1},
    "a negative amount": {"amount": -5320},
    "amount a string": {"amount": "5320"},
    "amount a float": {"amount": 5320.0},
    "amount a boolean": {"amount": True},
    "currency a number": {"currency": 840},
    "fee_details a list": {"fee_details": [5000]},
    "a negative fee": {"fee_transaction_fee": -1},
    "expires_at a number": {"expires_at": 1700000000},
    "mode a boolean": {"mode": False},
    "stripe_session_id a number": {"stripe_session_id": 7},
    "payment_type an object": {"payment_type": {}},
}


@pytest.mark.parametrize("changes", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_every_field_of_a_successful_answer_is_type_checked(client, khaime_api, buy_token, changes):
    khaime_api.post(SESSIONS_URL, json=answer_with(**changes), status=201)
    response = checkout(client, buy_token)
    assert response.status_code == 502
    session = PaymentSession.objects.get()
    assert session.status == Status.ERROR
    assert "does not match the session we asked for" in session.last_error


def test_after_a_malformed_answer_the_next_buy_creates_a_new_session_at_once(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json=answer_with(payment_url=12), status=201)
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    checkout(client, buy_token)
    assert checkout(client, buy_token).status_code == 303
    assert [s.status for s in PaymentSession.objects.order_by("pk")] == [Status.ERROR, Status.PENDING]


@pytest.mark.usefixtures("transactional_db")
def test_any_failure_after_the_insert_moves_the_row_to_error_before_raising(seed_create, settings, make_session):
    """Khaime names a session id another row already has: storing it breaks the unique index."""
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.test"}
    make_session(Status.PENDING, session_id=SEED_CREATE_RESPONSE["data"]["session_id"])
    with pytest.raises(Exception) as raised:
        start_checkout(amount=5000, currency="USD", customer_email="other@example.com", product_name="Premium Plan")
    assert not isinstance(raised.value, KhaimeResponseError)
    session = PaymentSession.objects.get(customer_email="other@example.com")
    assert session.status == Status.ERROR
    assert type(raised.value).__name__ in session.last_error
    assert session.status_changes.get().to_status == Status.ERROR

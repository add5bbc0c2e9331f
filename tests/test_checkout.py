"""Checkout: a buy-button POST becomes one stored PaymentSession and a 303 to Khaime's payment_url."""

from __future__ import annotations

import copy
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
import requests
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from khaime_django import services, signals
from khaime_django.exceptions import (
    KhaimeRequestInvalid,
    KhaimeServerError,
    KhaimeUnsafeRedirect,
)
from khaime_django.models import PaymentSession, Source, Status, StatusChange
from khaime_django.purchases import Purchase
from khaime_django.views import CheckoutView

from .conftest import API_BASE, SEED_CREATE_RESPONSE, sql_statements

pytestmark = pytest.mark.django_db

API_KEY = "pk_sandbox_test_0123456789"
SESSIONS_URL = f"{API_BASE}/payments/sessions"
SEED = SEED_CREATE_RESPONSE["data"]
CHECKOUT_URL = "/payments/checkout/"


def second_response(**changes):
    """Another Khaime session, told apart from the seed one by its id and URL."""
    answer = copy.deepcopy(SEED_CREATE_RESPONSE)
    answer["data"].update(
        {"session_id": "sess_second", "payment_url": "https://checkout.stripe.com/c/pay/cs_second", **changes}
    )
    return answer


def checkout(client, token, email="buyer@example.com"):
    data = {"token": token}
    if email is not None:
        data["email"] = email
    return client.post(reverse("khaime:checkout"), data)


def browser_request(rf, store=None, **kwargs):
    """A POST from one browser: requests given the same ``store`` share its Django session."""
    from django.contrib.sessions.backends.db import SessionStore

    request = rf.post("/", **kwargs)
    request.session = store if store is not None else SessionStore()
    request.user = AnonymousUser()
    return request


def sent_body(khaime_api, index=0):
    return json.loads(khaime_api.calls[index].request.body)


# -- the happy path -------------------------------------------------------------------------------


def test_checkout_url_is_payments_checkout():
    assert reverse("khaime:checkout") == CHECKOUT_URL


def test_post_creates_the_session_and_answers_303_to_the_payment_url(client, seed_create, buy_token):
    response = checkout(client, buy_token)
    assert response.status_code == 303
    assert response["Location"] == SEED["payment_url"]
    assert PaymentSession.objects.get().status == Status.PENDING
    assert len(seed_create.calls) == 1


def test_get_is_not_allowed(client, khaime_api):
    response = client.get(reverse("khaime:checkout"))
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_post_without_csrf_token_is_forbidden(seed_create, buy_token):
    response = checkout(Client(enforce_csrf_checks=True), buy_token)
    assert response.status_code == 403
    assert len(seed_create.calls) == 0


def test_seed_example_response_is_stored_exactly(client, seed_create, buy_token):
    checkout(client, buy_token)
    session = PaymentSession.objects.get()
    assert session.session_id == "sess_a1b2c3d4-e5f6-g7h8-i9j0"
    assert session.stripe_session_id == "cs_live_a1b2"
    assert session.payment_url == "https://checkout.stripe.com/c/pay/cs_live_a1b2"
    assert session.mode == "sandbox"
    assert session.payment_type == "one_time"
    assert session.amount == 5000
    assert session.total_amount == 5320
    assert session.currency == "USD"
    assert session.fee_details == {
        "base_product_price": 5000,
        "transaction_fee": 320,
        "total_amount": 5320,
        "customer_pays_fees": True,
    }
    assert timezone.is_aware(session.expires_at)
    assert session.expires_at == datetime(2099, 1, 16, 22, 0, tzinfo=UTC)
    assert session.product_name == "Premium Plan"
    assert session.customer_email == "buyer@example.com"
    assert session.last_error == ""


def test_total_amount_falls_back_to_fee_details_when_khaime_omits_amount(client, khaime_api, buy_token):
    answer = copy.deepcopy(SEED_CREATE_RESPONSE)
    del answer["data"]["amount"]
    khaime_api.post(SESSIONS_URL, json=answer, status=201)
    checkout(client, buy_token)
    assert PaymentSession.objects.get().total_amount == 5320


def test_missing_optional_fields_are_stored_empty(client, khaime_api, buy_token):
    minimal = {
        "session_id": "sess_min",
        "payment_url": "https://checkout.stripe.com/c/pay/cs_min",
        "status": "pending",
        "expires_at": "not a date",
        "mode": "galactic",
    }
    khaime_api.post(SESSIONS_URL, json={"success": True, "data": minimal}, status=201)
    checkout(client, buy_token)
    session = PaymentSession.objects.get()
    assert (session.stripe_session_id, session.payment_type, session.fee_details) == ("", "", {})
    assert session.total_amount is None
    assert session.expires_at is None
    assert session.mode == "sandbox"  # from the key, since Khaime's value is not one we know


@pytest.mark.parametrize(
    ("expires_at", "stored"),
    [
        ("2099-01-16T22:00:00", datetime(2099, 1, 16, 22, 0, tzinfo=UTC)),  # no zone: Khaime means UTC
        ("2099-01-16T23:00:00+01:00", datetime(2099, 1, 16, 22, 0, tzinfo=UTC)),
        ("2099-13-45T25:00:00Z", None),  # looks like a timestamp, is not one
    ],
)
def test_expires_at_is_stored_as_an_aware_datetime_or_not_at_all(client, khaime_api, buy_token, expires_at, stored):
    khaime_api.post(SESSIONS_URL, json=second_response(expires_at=expires_at), status=201)
    checkout(client, buy_token)
    assert PaymentSession.objects.get().expires_at == stored


def test_request_sent_to_khaime_carries_the_reference_and_absolute_return_urls(client, seed_create, buy_token):
    checkout(client, buy_token)
    session = PaymentSession.objects.get()
    body = sent_body(seed_create)
    reference = str(session.reference)
    assert body["metadata"] == {"reference": reference}
    assert body["success_url"] == f"http://testserver/payments/sessions/{reference}/success/"
    assert body["cancel_url"] == f"http://testserver/payments/sessions/{reference}/cancel/"
    assert (session.success_url, session.cancel_url) == (body["success_url"], body["cancel_url"])
    assert body["amount"] == 5000
    assert body["currency"] == "USD"
    assert body["product_name"] == "Premium Plan"
    assert body["customer"] == {"email": "buyer@example.com"}
    assert "product_id" not in body


def test_merchant_metadata_is_sent_with_the_reference_and_stored_without_it(client, seed_create):
    token = Purchase(amount=5000, currency="USD", product_name="Premium Plan", metadata={"order": 42}).sign()
    checkout(client, token)
    session = PaymentSession.objects.get()
    assert sent_body(seed_create)["metadata"] == {"order": 42, "reference": str(session.reference)}
    assert session.metadata == {"order": 42}


def test_session_created_signal_fires_once_on_commit(
    client, seed_create, buy_token, django_capture_on_commit_callbacks
):
    received = []

    def on_created(sender, session, **kwargs):
        received.append(session.reference)

    signals.payment_session_created.connect(on_created)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            checkout(client, buy_token)
    finally:
        signals.payment_session_created.disconnect(on_created)
    assert received == [PaymentSession.objects.get().reference]


def test_checkout_logs_the_status_change_with_its_source(client, seed_create, buy_token):
    checkout(client, buy_token)
    change = StatusChange.objects.get()
    assert (change.from_status, change.to_status, change.source) == (Status.CREATED, Status.PENDING, Source.CHECKOUT)


# -- the buyer's email ----------------------------------------------------------------------------


def test_email_from_the_form_is_used_and_normalised(client, seed_create, buy_token):
    checkout(client, buy_token, email="  Buyer@Example.COM ")
    assert PaymentSession.objects.get().customer_email == "buyer@example.com"


def test_logged_in_users_email_is_used_when_the_form_has_none(client, seed_create, buy_token, django_user_model):
    user = django_user_model.objects.create_user("ada", email="ada@example.com")
    client.force_login(user)
    assert checkout(client, buy_token, email=None).status_code == 303
    session = PaymentSession.objects.get()
    assert session.customer_email == "ada@example.com"
    assert session.user == user
    assert sent_body(seed_create)["customer"] == {"email": "ada@example.com"}


def test_form_email_wins_over_the_users_email(client, seed_create, buy_token, django_user_model):
    client.force_login(django_user_model.objects.create_user("ada", email="ada@example.com"))
    checkout(client, buy_token, email="gift@example.com")
    assert PaymentSession.objects.get().customer_email == "gift@example.com"


def test_no_email_at_all_is_a_400_with_no_khaime_call_and_no_row(client, khaime_api, buy_token):
    response = checkout(client, buy_token, email="")
    assert response.status_code == 400
    assert "enter your email address" in response.content.decode()
    assert len(khaime_api.calls) == 0
    assert not PaymentSession.objects.exists()


def test_logged_in_user_without_email_must_give_one(client, khaime_api, buy_token, django_user_model):
    client.force_login(django_user_model.objects.create_user("bob", email=""))
    assert checkout(client, buy_token, email=None).status_code == 400
    assert not PaymentSession.objects.exists()


def test_malformed_email_is_a_400_with_no_khaime_call(client, khaime_api, buy_token):
    response = checkout(client, buy_token, email="not-an-email")
    assert response.status_code == 400
    assert "valid email" in response.content.decode()
    assert len(khaime_api.calls) == 0


# -- one Khaime session per purchase --------------------------------------------------------------


def test_double_submitted_checkout_creates_one_khaime_session(client, seed_create, buy_token):
    first = checkout(client, buy_token)
    second = checkout(client, buy_token)
    assert second.status_code == 303
    assert second["Location"] == first["Location"] == SEED["payment_url"]
    assert len(seed_create.calls) == 1
    assert PaymentSession.objects.count() == 1


def test_same_purchase_with_differently_cased_email_reuses_the_session(client, seed_create, buy_token):
    checkout(client, buy_token, email="buyer@example.com")
    checkout(client, buy_token, email="BUYER@example.com")
    assert len(seed_create.calls) == 1


def test_different_price_creates_a_new_session(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    fees = {"base_product_price": 6000, "transaction_fee": 380, "total_amount": 6380, "customer_pays_fees": True}
    khaime_api.post(SESSIONS_URL, json=second_response(amount=6380, fee_details=fees), status=201)
    checkout(client, buy_token)
    other = checkout(client, Purchase(amount=6000, currency="USD", product_name="Premium Plan").sign())
    assert other["Location"] == "https://checkout.stripe.com/c/pay/cs_second"
    assert len(khaime_api.calls) == 2
    assert PaymentSession.objects.filter(status=Status.PENDING).count() == 2


def test_different_metadata_is_a_different_purchase(client, khaime_api):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime_api.post(SESSIONS_URL, json=second_response(), status=201)
    checkout(client, Purchase(amount=5000, currency="USD", product_name="P", metadata={"order": 1}).sign())
    checkout(client, Purchase(amount=5000, currency="USD", product_name="P", metadata={"order": 2}).sign())
    assert len(khaime_api.calls) == 2


def test_different_buyer_creates_a_new_session(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime_api.post(SESSIONS_URL, json=second_response(), status=201)
    checkout(client, buy_token, email="one@example.com")
    checkout(client, buy_token, email="two@example.com")
    assert len(khaime_api.calls) == 2
    assert PaymentSession.objects.count() == 2


def test_expired_pending_session_is_marked_expired_and_not_reused(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime_api.post(SESSIONS_URL, json=second_response(), status=201)
    checkout(client, buy_token)
    stale = PaymentSession.objects.get()
    PaymentSession.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = checkout(client, buy_token)
    assert response["Location"] == "https://checkout.stripe.com/c/pay/cs_second"
    assert len(khaime_api.calls) == 2
    stale.refresh_from_db()
    assert stale.status == Status.EXPIRED
    assert stale.status_changes.last().source == Source.CHECKOUT


def test_cancelled_session_is_reused_while_khaime_still_accepts_payment(client, khaime_api, buy_token):
    # Khaime keeps a cancelled checkout payable until expires_at: a second session beside it would
    # let a buyer with two tabs pay twice.
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    checkout(client, buy_token)
    client.get(PaymentSession.objects.get().cancel_url)
    assert checkout(client, buy_token)["Location"] == SEED["payment_url"]
    assert len(khaime_api.calls) == 1
    assert PaymentSession.objects.get().status == Status.CANCELLED


def test_expired_cancelled_session_is_replaced(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime_api.post(SESSIONS_URL, json=second_response(), status=201)
    checkout(client, buy_token)
    client.get(PaymentSession.objects.get().cancel_url)
    PaymentSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert checkout(client, buy_token)["Location"] == "https://checkout.stripe.com/c/pay/cs_second"
    assert sorted(PaymentSession.objects.values_list("status", flat=True)) == [Status.EXPIRED, Status.PENDING]


def test_session_after_a_failed_attempt_is_created_afresh(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "boom"}, status=500)
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    assert checkout(client, buy_token).status_code == 502
    assert checkout(client, buy_token).status_code == 303
    assert sorted(PaymentSession.objects.values_list("status", flat=True)) == [Status.ERROR, Status.PENDING]


def test_session_abandoned_while_creating_is_marked_error_and_replaced(khaime_api, buy_token, rf):
    """A `created` row older than any create call can take: its request died mid-call."""
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime_api.post(SESSIONS_URL, json=second_response(), status=201)
    browser = browser_request(rf).session
    services.start_checkout(
        request=browser_request(rf, browser),
        customer_email="buyer@example.com",
        **Purchase.from_token(buy_token).checkout_kwargs(),
    )
    first = PaymentSession.objects.get()
    PaymentSession.objects.filter(pk=first.pk).update(
        status=Status.CREATED, created_at=timezone.now() - timedelta(hours=1)
    )
    session = services.start_checkout(
        request=browser_request(rf, browser),
        customer_email="buyer@example.com",
        **Purchase.from_token(buy_token).checkout_kwargs(),
    )
    assert session.pk != first.pk
    first.refresh_from_db()
    assert first.status == Status.ERROR
    assert "Abandoned" in first.last_error


def test_concurrent_checkout_waits_for_the_session_in_flight_and_reuses_it(seed_create, buy_token, rf, monkeypatch):
    """A second request for the same purchase finds the first one's row still `created`: it waits
    for that request to store Khaime's answer, then reuses its session instead of creating another."""
    kwargs = {"customer_email": "buyer@example.com", **Purchase.from_token(buy_token).checkout_kwargs()}
    browser = browser_request(rf).session
    first = services.start_checkout(request=browser_request(rf, browser), **kwargs)
    PaymentSession.objects.filter(pk=first.pk).update(status=Status.CREATED)
    waits = []

    def first_request_finishes(seconds):
        waits.append(seconds)
        PaymentSession.objects.filter(pk=first.pk).update(status=Status.PENDING)

    monkeypatch.setattr("time.sleep", first_request_finishes)
    second = services.start_checkout(request=browser_request(rf, browser), **kwargs)
    assert second.pk == first.pk
    assert len(waits) == 1
    assert len(seed_create.calls) == 1


def test_insert_that_breaks_another_constraint_raises_instead_of_looping(khaime_api, settings, monkeypatch):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example"}
    attempts = []

    def insert_refused(**values):
        attempts.append(values)
        if len(attempts) > 10:
            raise AssertionError("start_checkout keeps retrying an INSERT that can never succeed")
        raise IntegrityError("CHECK constraint failed")

    monkeypatch.setattr(PaymentSession.objects, "create", insert_refused)
    with pytest.raises(IntegrityError):
        services.start_checkout(amount=5000, currency="USD", product_name="P", customer_email="a@example.com")
    assert len(attempts) == 3
    assert len(khaime_api.calls) == 0


# -- Khaime fails ---------------------------------------------------------------------------------


KHAIME_FAILURES = [
    ({"json": {"success": False, "error": "Invalid API key"}, "status": 401}, 502),
    ({"json": {"success": False, "error": "Bad request", "details": {"amount": "too big"}}, "status": 400}, 502),
    ({"json": {"success": False, "error": "Unprocessable", "details": {"currency": "no"}}, "status": 422}, 502),
    ({"json": {"success": False, "error": "Not found"}, "status": 404}, 502),
    ({"json": {"success": False, "error": "Too many requests"}, "status": 429}, 503),
    ({"json": {"success": False, "error": "Internal error"}, "status": 500}, 502),
    ({"body": "<html>Bad gateway</html>", "status": 502}, 502),
    ({"json": {"success": False, "error": "Unavailable"}, "status": 503}, 502),
    ({"body": "<html>ok?</html>", "status": 200}, 502),
    ({"json": {"success": False, "error": "Nope"}, "status": 200}, 502),
    ({"json": {"success": True}, "status": 201}, 502),
    ({"json": {"success": True, "data": {"session_id": "sess_x", "status": "pending"}}, "status": 201}, 502),
    ({"body": requests.ReadTimeout("read timed out")}, 502),
    ({"body": requests.ConnectionError("connection reset")}, 502),
]
FAILURE_IDS = [
    "401",
    "400",
    "422",
    "404",
    "429",
    "500",
    "502-html",
    "503",
    "not-json",
    "success-false",
    "no-data",
    "no-payment-url",
    "timeout",
    "connection-error",
]


@pytest.mark.parametrize(("failure", "status"), KHAIME_FAILURES, ids=FAILURE_IDS)
def test_khaime_failure_gives_an_error_page_and_keeps_the_row_in_error(client, khaime_api, buy_token, failure, status):
    khaime_api.post(SESSIONS_URL, **failure)
    response = checkout(client, buy_token)
    assert response.status_code == status
    page = response.content.decode()
    assert "Payment is unavailable right now" in page
    assert "No payment was taken" in page
    assert "Try again" in page and f'action="{CHECKOUT_URL}"' in page
    assert "Traceback" not in page
    assert API_KEY not in page
    session = PaymentSession.objects.get()
    assert session.status == Status.ERROR
    assert session.last_error
    assert session.status_changes.get().to_status == Status.ERROR


@pytest.mark.parametrize(("failure", "status"), KHAIME_FAILURES, ids=FAILURE_IDS)
def test_error_page_never_shows_the_key_even_with_debug(client, khaime_api, buy_token, settings, failure, status):
    settings.DEBUG = True
    khaime_api.post(SESSIONS_URL, **failure)
    response = checkout(client, buy_token)
    assert response.status_code == status
    assert API_KEY not in response.content.decode()


def test_retry_button_posts_the_same_token_and_email(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "boom"}, status=500)
    page = checkout(client, buy_token, email="buyer@example.com").content.decode()
    assert f'<input type="hidden" name="token" value="{buy_token}">' in page
    assert '<input type="hidden" name="email" value="buyer@example.com">' in page


def test_rate_limited_page_tells_the_buyer_to_try_again_in_a_moment(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "slow down"}, status=429)
    assert "try again in a moment" in checkout(client, buy_token).content.decode()


def test_khaime_validation_reason_is_recorded_in_last_error(client, khaime_api, buy_token):
    khaime_api.post(
        SESSIONS_URL, json={"success": False, "error": "Bad request", "details": {"amount": "too big"}}, status=400
    )
    checkout(client, buy_token)
    last_error = PaymentSession.objects.get().last_error
    assert "Bad request" in last_error
    assert "too big" in last_error


def test_khaime_failure_is_logged_for_the_merchant(client, khaime_api, buy_token, caplog):
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "boom"}, status=500)
    checkout(client, buy_token)
    session = PaymentSession.objects.get()
    assert any(
        record.levelno == logging.ERROR
        and str(session.reference) in record.getMessage()
        and "boom" in record.getMessage()
        for record in caplog.records
    )


def test_key_never_appears_in_a_log_record_of_a_failed_checkout(client, khaime_api, buy_token, caplog):
    caplog.set_level(logging.DEBUG)
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "Invalid API key"}, status=401)
    checkout(client, buy_token)
    assert caplog.records
    assert all(API_KEY not in logging.Formatter().format(record) for record in caplog.records)


def test_key_echoed_back_by_khaime_reaches_no_page_row_or_log(client, khaime_api, buy_token, caplog):
    caplog.set_level(logging.DEBUG)
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": f"Invalid API key {API_KEY}"}, status=401)
    response = checkout(client, buy_token)
    assert API_KEY not in response.content.decode()
    assert API_KEY not in PaymentSession.objects.get().last_error
    assert API_KEY not in StatusChange.objects.get().detail
    assert all(API_KEY not in logging.Formatter().format(record) for record in caplog.records)


def test_http_payment_url_to_a_foreign_host_is_refused(client, khaime_api, buy_token):
    khaime_api.post(SESSIONS_URL, json=second_response(payment_url="http://evil.example/pay"), status=201)
    response = checkout(client, buy_token)
    assert response.status_code == 502
    assert "evil.example" not in response.get("Location", "")
    session = PaymentSession.objects.get()
    assert session.status == Status.ERROR
    assert "payment_url" in session.last_error


@pytest.mark.parametrize("url", ["javascript:alert(1)", "//evil.example/pay", "https:///nohost"])
def test_payment_url_that_is_not_https_with_a_host_is_refused(client, khaime_api, buy_token, url):
    khaime_api.post(SESSIONS_URL, json=second_response(payment_url=url), status=201)
    assert checkout(client, buy_token).status_code == 502


def test_emulators_loopback_origin_is_allowed_over_http(client, khaime_api, buy_token, settings):
    emulator = "http://127.0.0.1:8765"
    settings.KHAIME = {**settings.KHAIME, "API_BASE_URL": f"{emulator}/api/v1/partner"}
    khaime_api.post(
        f"{emulator}/api/v1/partner/payments/sessions",
        json=second_response(payment_url=f"{emulator}/checkout/sess_second"),
        status=201,
    )
    response = checkout(client, buy_token)
    assert response.status_code == 303
    assert response["Location"] == f"{emulator}/checkout/sess_second"


def test_another_loopback_port_is_not_the_emulator(client, khaime_api, buy_token, settings):
    settings.KHAIME = {**settings.KHAIME, "API_BASE_URL": "http://127.0.0.1:8765/api/v1/partner"}
    khaime_api.post(
        "http://127.0.0.1:8765/api/v1/partner/payments/sessions",
        json=second_response(payment_url="http://127.0.0.1:9999/pay"),
        status=201,
    )
    assert checkout(client, buy_token).status_code == 502


def test_explicitly_allowed_payment_origin_is_allowed(client, khaime_api, buy_token, settings):
    settings.KHAIME = {**settings.KHAIME, "ALLOWED_PAYMENT_ORIGINS": ["http://pay.lan:9000"]}
    khaime_api.post(SESSIONS_URL, json=second_response(payment_url="http://pay.lan:9000/c/1"), status=201)
    assert checkout(client, buy_token)["Location"] == "http://pay.lan:9000/c/1"


def test_missing_api_key_fails_before_a_row_exists(client, khaime_api, buy_token, settings):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": ""}
    with pytest.raises(ImproperlyConfigured):
        checkout(client, buy_token)
    assert not PaymentSession.objects.exists()


# -- SQL per checkout -----------------------------------------------------------------------------


@pytest.mark.usefixtures("transactional_db")
def test_checkout_costs_three_statements_one_transaction(
    client, seed_create, buy_token, django_assert_num_queries, settings
):
    # Counts the checkout's own statements: where Django keeps sessions is the site's choice.
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    # INSERT the row (created, autocommitted) before calling Khaime, so nothing is lost if Khaime
    # fails; then the status change: UPDATE with Khaime's answer and its log. On PostgreSQL that
    # is one statement (a data-modifying CTE), elsewhere one transaction of two.
    if connection.vendor == "postgresql":
        with django_assert_num_queries(2) as captured:
            response = checkout(client, buy_token)
        assert sql_statements(captured) == ["INSERT", "WITH"]
        assert "UPDATE" in captured[1]["sql"] and "INSERT INTO" in captured[1]["sql"]
    else:
        with django_assert_num_queries(3 + 2) as captured:
            response = checkout(client, buy_token)
        assert sql_statements(captured) == ["INSERT", "UPDATE", "INSERT"]
    assert response.status_code == 303


@pytest.mark.usefixtures("transactional_db")
def test_reused_checkout_costs_two_statements(client, seed_create, buy_token, django_assert_num_queries, settings):
    # Counts the checkout's own statements: where Django keeps sessions is the site's choice.
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    checkout(client, buy_token)
    # The INSERT hits the one-open-session constraint, then a SELECT finds the open session.
    with django_assert_num_queries(2) as captured:
        checkout(client, buy_token)
    assert sql_statements(captured) == ["INSERT", "SELECT"]


@pytest.mark.usefixtures("transactional_db")
def test_double_submit_is_reused_inside_atomic_requests(seed_create, buy_token, monkeypatch):
    # With ATOMIC_REQUESTS the constraint violation must not poison the request's transaction.
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    client = Client()
    first = checkout(client, buy_token)
    second = checkout(client, buy_token)
    assert first["Location"] == second["Location"] == SEED["payment_url"]
    assert PaymentSession.objects.count() == 1


# -- the service API for merchants with their own pricing -----------------------------------------


def test_start_checkout_from_merchant_code_with_a_request(seed_create, rf, settings):
    settings.ALLOWED_HOSTS = ["shop.example"]
    request = rf.post("/shop/buy/", HTTP_HOST="shop.example")
    request.user = AnonymousUser()
    session = services.start_checkout(
        request=request,
        amount=5000,
        currency="usd",
        product_name="Premium Plan",
        customer_email="buyer@example.com",
        metadata={"order": "A-1"},
    )
    assert isinstance(session, PaymentSession)
    assert session.status == Status.PENDING
    assert session.payment_url == SEED["payment_url"]
    assert session.currency == "USD"
    body = sent_body(seed_create)
    assert body["success_url"] == f"http://shop.example/payments/sessions/{session.reference}/success/"
    assert body["metadata"] == {"order": "A-1", "reference": str(session.reference)}


def test_start_checkout_from_merchant_code_with_site_url(seed_create, settings):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example/"}
    session = services.start_checkout(amount=5000, currency="USD", product_id=12, customer_email="buyer@example.com")
    body = sent_body(seed_create)
    assert body["success_url"] == f"https://shop.example/payments/sessions/{session.reference}/success/"
    assert body["cancel_url"] == f"https://shop.example/payments/sessions/{session.reference}/cancel/"
    assert body["product_id"] == 12
    assert session.product_id == 12


def test_start_checkout_for_a_user_links_the_session(seed_create, settings, django_user_model):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example"}
    user = django_user_model.objects.create_user("ada", email="ada@example.com")
    session = services.start_checkout(
        amount=5000, currency="USD", product_name="P", customer_email=user.email, user=user
    )
    assert session.user == user


def test_start_checkout_sends_a_subscription_frequency(seed_create, settings):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example"}
    session = services.start_checkout(
        amount=999,
        currency="USD",
        product_name="Pro",
        customer_email="a@example.com",
        subscription_frequency_key="monthly",
        customer={"first_name": "Ada"},
    )
    body = sent_body(seed_create)
    assert body["subscription_frequency_key"] == "monthly"
    assert body["customer"] == {"first_name": "Ada", "email": "a@example.com"}
    assert session.subscription_frequency_key == "monthly"


def test_start_checkout_without_request_or_site_url_is_a_configuration_error(khaime_api):
    with pytest.raises(ImproperlyConfigured, match="SITE_URL"):
        services.start_checkout(amount=5000, currency="USD", product_name="P", customer_email="a@example.com")
    assert not PaymentSession.objects.exists()


def test_start_checkout_refuses_the_reserved_reference_metadata_key(khaime_api, settings):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example"}
    with pytest.raises(KhaimeRequestInvalid) as caught:
        services.start_checkout(
            amount=5000,
            currency="USD",
            product_name="P",
            customer_email="a@example.com",
            metadata={"reference": "mine"},
        )
    assert "metadata.reference" in caught.value.details
    assert len(khaime_api.calls) == 0
    assert not PaymentSession.objects.exists()


def test_buy_button_with_reserved_metadata_key_gets_a_400(client, khaime_api):
    token = Purchase(amount=5000, currency="USD", product_name="P", metadata={"reference": "x"}).sign()
    response = checkout(client, token)
    assert response.status_code == 400
    assert "cannot be paid" in response.content.decode()
    assert not PaymentSession.objects.exists()


@pytest.mark.parametrize(
    "bad",
    [
        {"amount": 0},
        {"amount": "5000"},
        {"currency": "XYZ"},
        {"product_name": None},
        {"customer_email": "nope"},
        {"metadata": {"cart": [1, 2]}},
        {"product_id": -1, "product_name": None},
    ],
)
def test_start_checkout_refuses_an_invalid_request_before_a_row_exists(khaime_api, settings, bad):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example"}
    kwargs = {"amount": 5000, "currency": "USD", "product_name": "P", "customer_email": "a@example.com", **bad}
    with pytest.raises(KhaimeRequestInvalid):
        services.start_checkout(**kwargs)
    assert len(khaime_api.calls) == 0
    assert not PaymentSession.objects.exists()


def test_start_checkout_raises_the_khaime_error_and_keeps_the_row(khaime_api, settings):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example"}
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "boom"}, status=500)
    with pytest.raises(KhaimeServerError):
        services.start_checkout(amount=5000, currency="USD", product_name="P", customer_email="a@example.com")
    assert PaymentSession.objects.get().status == Status.ERROR


def test_start_checkout_raises_unsafe_redirect_for_a_foreign_http_url(khaime_api, settings):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example"}
    khaime_api.post(SESSIONS_URL, json=second_response(payment_url="http://evil.example/pay"), status=201)
    with pytest.raises(KhaimeUnsafeRedirect):
        services.start_checkout(amount=5000, currency="USD", product_name="P", customer_email="a@example.com")


# -- subclassing the view -------------------------------------------------------------------------


class PlanCheckoutView(CheckoutView):
    """A merchant's view that prices from its own catalogue instead of a signed token."""

    PLANS: ClassVar[dict[str, Purchase]] = {"gold": Purchase(amount=5000, currency="USD", product_name="Gold plan")}

    def get_purchase(self, request, form):
        return self.PLANS[request.POST["plan"]]


def test_subclass_overriding_get_purchase_checks_out_its_own_price(seed_create, rf):
    request = rf.post("/shop/buy/", {"plan": "gold", "email": "buyer@example.com"})
    request.user = AnonymousUser()
    response = PlanCheckoutView.as_view()(request)
    assert response.status_code == 303
    assert response["Location"] == SEED["payment_url"]
    session = PaymentSession.objects.get()
    assert session.product_name == "Gold plan"
    assert sent_body(seed_create)["product_name"] == "Gold plan"


def test_subclass_error_page_retries_the_same_post_against_the_subclass(khaime_api, rf):
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "boom"}, status=500)
    request = rf.post("/shop/buy/", {"plan": "gold", "email": "buyer@example.com"})
    request.user = AnonymousUser()
    response = PlanCheckoutView.as_view()(request)
    assert response.status_code == 502
    page = response.content.decode()
    assert 'action="/shop/buy/"' in page
    assert '<input type="hidden" name="plan" value="gold">' in page
    assert '<input type="hidden" name="email" value="buyer@example.com">' in page


def test_subclass_can_change_where_the_email_comes_from(seed_create, rf):
    class FixedEmailView(PlanCheckoutView):
        def get_customer_email(self, request, form):
            return "orders@example.com"

    request = rf.post("/shop/buy/", {"plan": "gold"})
    request.user = AnonymousUser()
    assert FixedEmailView.as_view()(request).status_code == 303
    assert PaymentSession.objects.get().customer_email == "orders@example.com"


# -- real concurrency (PostgreSQL) ----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: SQLite serialises writers, so requests cannot race"
)
def test_racing_double_submits_create_one_khaime_session(seed_create, buy_token):
    """Six POSTs of the same buy button from one browser at the same instant, each on its own
    connection: the partial unique index, not a read-then-write, makes them share one Khaime session."""
    from .buyer_helpers import new_browser, same_browser

    browser, buy_token = new_browser()  # the product page gave the browser its buyer token
    submits = 6
    barrier = threading.Barrier(submits)
    responses, errors = [None] * submits, []

    def submit(index):
        try:
            barrier.wait(timeout=30)
            responses[index] = checkout(same_browser(browser), buy_token)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(submits)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request is stuck"
    assert not errors, errors
    assert [r.status_code for r in responses] == [303] * submits
    assert {r["Location"] for r in responses} == {SEED["payment_url"]}
    assert len(seed_create.calls) == 1
    assert PaymentSession.objects.count() == 1


# -- a webhook overtaking the create call ---------------------------------------------------------


def test_session_settled_while_khaime_was_answering_keeps_khaimes_fields_and_shows_the_result(
    client, khaime_api, buy_token
):
    def khaime_creates_and_a_webhook_settles_it_meanwhile(request):
        row = PaymentSession.objects.get()
        from khaime_django.transitions import transition

        transition(row, Status.COMPLETED, source=Source.WEBHOOK, completed_at=timezone.now())
        return 201, {}, json.dumps(SEED_CREATE_RESPONSE)

    khaime_api.add_callback("POST", SESSIONS_URL, callback=khaime_creates_and_a_webhook_settles_it_meanwhile)
    response = checkout(client, buy_token)
    session = PaymentSession.objects.get()
    assert response.status_code == 303
    assert response["Location"] == session.get_absolute_url()
    assert session.status == Status.COMPLETED
    assert session.session_id == SEED["session_id"]
    assert session.payment_url == SEED["payment_url"]
    assert session.fee_details == SEED["fee_details"]


# -- the mode is part of the purchase -------------------------------------------------------------


def test_open_sandbox_session_is_not_reused_after_switching_to_a_live_key(client, khaime_api, buy_token, settings):
    """After the key changes from pk_sandbox_ to pk_live_, the buyer's open sandbox session (its
    payment_url takes test cards) must not be handed out for a real purchase."""
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example"}
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime_api.post(SESSIONS_URL, json=second_response(mode="live"), status=201)
    assert checkout(client, buy_token)["Location"] == SEED["payment_url"]
    settings.KHAIME = {**settings.KHAIME, "API_KEY": "pk_live_0123456789"}
    live = checkout(client, buy_token)
    assert live["Location"] == "https://checkout.stripe.com/c/pay/cs_second"
    assert len(khaime_api.calls) == 2
    assert sorted(PaymentSession.objects.values_list("mode", "status")) == [
        ("live", Status.PENDING),
        ("sandbox", Status.PENDING),
    ]
    # And back: the live session is not reused under the sandbox key either.
    settings.KHAIME = {**settings.KHAIME, "API_KEY": "pk_sandbox_test_0123456789"}
    assert checkout(client, buy_token)["Location"] == SEED["payment_url"]
    assert len(khaime_api.calls) == 2


# -- a live session's return URLs -----------------------------------------------------------------

LIVE_KEY = "pk_live_0123456789"


@pytest.mark.parametrize(
    ("site_url", "host", "secure"),
    [
        ("", "shop.example", False),  # a TLS proxy without SECURE_PROXY_SSL_HEADER: http://
        ("", "127.0.0.1", True),  # a proxy rewriting Host without USE_X_FORWARDED_HOST
        ("http://shop.example", "shop.example", True),
        ("https://localhost:8443", "shop.example", True),
    ],
)
def test_live_checkout_with_unsafe_return_urls_is_refused_before_a_row_exists(
    khaime_api, rf, settings, caplog, site_url, host, secure
):
    from khaime_django.return_urls import UnsafeReturnURL

    settings.ALLOWED_HOSTS = ["shop.example", "127.0.0.1"]
    settings.KHAIME = {**settings.KHAIME, "API_KEY": LIVE_KEY, "SITE_URL": site_url}
    request = rf.post("/payments/checkout/", HTTP_HOST=host, secure=secure)
    request.user = AnonymousUser()
    with caplog.at_level(logging.ERROR, logger="khaime_django.return_urls"), pytest.raises(UnsafeReturnURL):
        services.start_checkout(request=request, amount=5000, currency="USD", product_name="P", customer_email="a@b.co")
    assert not PaymentSession.objects.exists()
    assert len(khaime_api.calls) == 0
    assert "SITE_URL" in caplog.records[0].getMessage()


def test_live_checkout_with_unsafe_return_urls_answers_the_clear_error_page(client, khaime_api, buy_token, settings):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": LIVE_KEY}
    response = checkout(client, buy_token)  # the test client is http://testserver
    assert response.status_code == 503
    page = response.content.decode()
    assert "Payment is unavailable right now" in page
    assert "No payment was taken" in page
    assert "Refused to create" not in page  # the operator's fix is in the log, not shown to buyers
    assert not PaymentSession.objects.exists()
    assert len(khaime_api.calls) == 0


def test_live_checkout_with_a_public_https_site_url_is_created(client, khaime_api, buy_token, settings):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": LIVE_KEY, "SITE_URL": "https://shop.example"}
    khaime_api.post(SESSIONS_URL, json=second_response(mode="live"), status=201)
    assert checkout(client, buy_token).status_code == 303
    session = PaymentSession.objects.get()
    assert session.success_url.startswith("https://shop.example/") and session.mode == "live"


def test_sandbox_checkout_may_return_to_loopback_over_http(khaime_api, rf, seed_create):
    request = rf.post("/payments/checkout/", HTTP_HOST="127.0.0.1")
    request.user = AnonymousUser()
    session = services.start_checkout(
        request=request, amount=5000, currency="USD", product_name="P", customer_email="a@b.co"
    )
    assert session.success_url.startswith("http://127.0.0.1/")

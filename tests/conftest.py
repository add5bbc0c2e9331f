"""Shared fixtures. Khaime is never called for real: `responses` stubs it for unit tests, the
emulator (khaime_django.emulator) serves it over real HTTP for integration tests."""

from __future__ import annotations

import re

import pytest
import requests
import responses as responses_lib

API_BASE = "https://api.khaime.test/api/v1/partner"

SEED_CREATE_RESPONSE = {
    "success": True,
    "data": {
        "session_id": "sess_a1b2c3d4-e5f6-g7h8-i9j0",
        "stripe_session_id": "cs_live_a1b2",
        "payment_url": "https://checkout.stripe.com/c/pay/cs_live_a1b2",
        "expires_at": "2099-01-16T22:00:00.000Z",
        "amount": 5320,
        "currency": "USD",
        "status": "pending",
        "mode": "sandbox",
        "payment_type": "one_time",
        "fee_details": {
            "base_product_price": 5000,
            "transaction_fee": 320,
            "total_amount": 5320,
            "customer_pays_fees": True,
        },
    },
}


@pytest.fixture(autouse=True)
def khaime_test_settings(settings):
    """Every test starts from a known, fast configuration (no backoff sleeps)."""
    settings.KHAIME = {
        "API_KEY": "pk_sandbox_test_0123456789",
        "API_BASE_URL": API_BASE,
        "WEBHOOK_SECRETS": ["whsec_test_secret"],
        "TIMEOUT": (1, 2),
        "RETURN_TIMEOUT": (1, 1),
        "RETURN_WEBHOOK_WAIT": 0,
        "MAX_RETRIES": 2,
        "BACKOFF_BASE": 0,
        "BACKOFF_MAX": 0,
    }
    return settings.KHAIME


#: Requests to anything but the stubbed Khaime (the emulator, live_server, a closed port on
#: loopback) go out for real.
NOT_STUBBED_KHAIME = re.compile(rf"^(?!{re.escape(API_BASE)})")


@pytest.fixture(autouse=True)
def khaime_api():
    """Khaime stubbed with `responses` for every test. A call to it that no test registered is
    refused (so nothing reaches the network) and fails the test at teardown, naming the call,
    even if the code under test caught the connection error it got."""
    from khaime_django.client import clear_holds

    clear_holds()  # one test's 429 must not hold the next test's calls
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(NOT_STUBBED_KHAIME)
        yield mock
        unstubbed = unstubbed_calls(mock)
    if unstubbed:
        pytest.fail("Khaime was called without a stub registered for the call: " + "; ".join(unstubbed))


_REFUSED_BY_RESPONSES = "Connection refused by Responses"


def unstubbed_calls(mock: responses_lib.RequestsMock) -> list[str]:
    """The calls ``mock`` refused because no stub matched them, as "METHOD URL"."""
    return [
        f"{call.request.method} {call.request.url}"
        for call in mock.calls
        if isinstance(call.response, requests.ConnectionError) and _REFUSED_BY_RESPONSES in str(call.response)
    ]


def created_answer(request_body: dict) -> dict:
    """Khaime's seed create answer for the price ``request_body`` asks for (the seed itself for
    $50.00): the client refuses an answer that does not describe what it asked for."""
    import copy

    answer = copy.deepcopy(SEED_CREATE_RESPONSE)
    amount, currency = request_body["amount"], request_body["currency"]
    fee = amount * 64 // 1000
    answer["data"].update(amount=amount + fee, currency=currency.upper())
    answer["data"]["fee_details"].update(base_product_price=amount, transaction_fee=fee, total_amount=amount + fee)
    return answer


@pytest.fixture
def seed_create(khaime_api):
    import json

    khaime_api.add_callback(
        responses_lib.POST,
        f"{API_BASE}/payments/sessions",
        callback=lambda request: (201, {}, json.dumps(created_answer(json.loads(request.body)))),
        content_type="application/json",
    )
    return khaime_api


# -- issue 2: checkout, return pages, admin (appended) ----------------------------------------


@pytest.fixture
def buy_token():
    """The signed price a buy button for $50.00 "Premium Plan" carries (Khaime charges 5320)."""
    from khaime_django.purchases import Purchase

    return Purchase(amount=5000, currency="USD", product_name="Premium Plan").sign()


@pytest.fixture
def make_session(db):
    """Stores a PaymentSession; any status past `created` gets a Khaime session id and URL."""
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    from khaime_django.models import PaymentSession, Status

    def make(status=Status.PENDING, **fields):
        values = {
            "amount": 5000,
            "total_amount": 5320,
            "currency": "USD",
            "product_name": "Premium Plan",
            "customer_email": "buyer@example.com",
            "success_url": "https://shop.test/payments/success/",
            "cancel_url": "https://shop.test/payments/cancel/",
            "purchase_key": uuid.uuid4().hex,
        }
        if status != Status.CREATED:
            values.update(
                session_id=f"sess_{uuid.uuid4()}",
                payment_url="https://checkout.stripe.com/c/pay/cs_test_1",
                expires_at=timezone.now() + timedelta(hours=1),
                payment_type="one_time",
            )
        values.update(fields)
        return PaymentSession.objects.create(status=status, **values)

    return make


@pytest.fixture
def khaime_says(khaime_api):
    """``khaime_says(session, "completed")`` stubs GET /payments/sessions/{id} for that session."""

    def stub(session, status, **data):
        return khaime_api.get(
            f"{API_BASE}/payments/sessions/{session.session_id}",
            json={"success": True, "data": {"session_id": session.session_id, "status": status, **data}},
        )

    return stub


# -- issue 3: webhooks, reconciliation (appended) ---------------------------------------------


@pytest.fixture
def signal_log():
    """Every khaime signal sent during the test, as (signal name, kwargs) in order; thread-safe."""
    import threading

    from khaime_django import signals

    names = [name for name in dir(signals) if isinstance(getattr(signals, name), signals.Signal)]
    log: list[tuple[str, dict]] = []
    lock = threading.Lock()
    receivers = []
    for name in names:

        def receiver(sender, _name=name, **kwargs):
            kwargs.pop("signal", None)
            with lock:
                log.append((_name, kwargs))

        getattr(signals, name).connect(receiver, weak=False)
        receivers.append((getattr(signals, name), receiver))
    yield log
    for signal, receiver in receivers:
        signal.disconnect(receiver)


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """``deliver(payload)`` POSTs a signed event to the webhook view and runs the on-commit hooks
    (signals) as a real commit would; keyword arguments go to webhook_helpers.post_webhook."""
    from .webhook_helpers import post_webhook

    def send(payload=None, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return post_webhook(client, payload, **kwargs)

    return send


def sql_statements(captured) -> list[str]:
    """The SQL verbs in a django_assert_num_queries capture, without the BEGIN/COMMIT/ROLLBACK
    that Django (4.2+) also records as queries."""
    return [
        query["sql"].split()[0]
        for query in captured.captured_queries
        if query["sql"] not in ("BEGIN", "COMMIT", "ROLLBACK")
    ]

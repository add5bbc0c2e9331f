"""``KhaimeClient.create_refund`` and what ``refund_payment`` makes of each answer, with
``responses`` for exact control of Khaime's answers: a POST that moves money is retried only
where Khaime cannot have acted."""

from __future__ import annotations

import pytest
import requests
from django.utils import timezone

from khaime_django.client import KhaimeClient
from khaime_django.exceptions import KhaimeRequestInvalidError, KhaimeServerError
from khaime_django.models import Payment, Refund
from khaime_django.refund_statuses import RefundStatus
from khaime_django.services import refund_payment

from .conftest import API_BASE

REFUNDS = f"{API_BASE}/refunds"
ACCEPTED = {"success": True, "data": {"refund_id": "ref_1", "status": "processing", "amount": 100, "currency": "USD"}}


@pytest.fixture
def payment(db, make_session):
    return Payment.objects.create(
        transaction_id="txn_1", session=make_session(), amount=5320, currency="USD", paid_at=timezone.now()
    )


def client() -> KhaimeClient:
    return KhaimeClient("pk_sandbox_x", API_BASE, max_retries=2, backoff_base=0, backoff_max=0, sleep=lambda _: None)


def test_create_refund_sends_the_transaction_amount_and_reason(khaime_api):
    khaime_api.post(REFUNDS, json=ACCEPTED)
    assert client().create_refund("txn_1", amount=100, reason="damaged")["refund_id"] == "ref_1"
    assert khaime_api.calls[0].request.body == b'{"transaction_id": "txn_1", "amount": 100, "reason": "damaged"}'


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_create_refund_refuses_a_bad_amount_before_sending(khaime_api, amount):
    with pytest.raises(KhaimeRequestInvalidError):
        client().create_refund("txn_1", amount=amount)
    assert not khaime_api.calls


def test_a_5xx_is_not_retried(khaime_api):
    khaime_api.post(REFUNDS, json={"success": False, "error": "boom"}, status=502)
    with pytest.raises(KhaimeServerError):
        client().create_refund("txn_1", amount=100)
    assert len(khaime_api.calls) == 1


def test_a_429_is_retried(khaime_api):
    khaime_api.post(REFUNDS, json={"success": False, "error": "slow down"}, status=429, headers={"Retry-After": "0"})
    khaime_api.post(REFUNDS, json=ACCEPTED)
    assert client().create_refund("txn_1", amount=100)["refund_id"] == "ref_1"
    assert len(khaime_api.calls) == 2


def test_a_read_timeout_is_not_retried(khaime_api):
    khaime_api.post(REFUNDS, body=requests.ReadTimeout("slow"))
    with pytest.raises(Exception, match="did not answer"):
        client().create_refund("txn_1", amount=100)
    assert len(khaime_api.calls) == 1


def test_an_answer_without_refund_id_is_an_error(khaime_api):
    khaime_api.post(REFUNDS, json={"success": True, "data": {"status": "processing"}})
    with pytest.raises(Exception, match="refund_id"):
        client().create_refund("txn_1")


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ({"status": 500, "json": {"success": False, "error": "boom"}}, RefundStatus.UNKNOWN),
        ({"status": 200, "body": "not json"}, RefundStatus.UNKNOWN),
        ({"status": 200, "json": {"success": True, "data": {"status": "processing"}}}, RefundStatus.UNKNOWN),
        ({"status": 422, "json": {"success": False, "error": "Validation failed"}}, RefundStatus.FAILED),
        ({"status": 404, "json": {"success": False, "error": "Transaction not found"}}, RefundStatus.FAILED),
        ({"status": 403, "json": {"success": False, "error": "live payment"}}, RefundStatus.FAILED),
        ({"body": requests.ReadTimeout("slow")}, RefundStatus.UNKNOWN),
        ({"body": requests.ConnectionError("reset by peer")}, RefundStatus.UNKNOWN),
        ({"body": requests.ConnectTimeout("no route")}, RefundStatus.FAILED),
    ],
)
def test_what_each_answer_makes_of_the_refund(khaime_api, payment, answer, status):
    khaime_api.post(REFUNDS, **answer)
    refund = refund_payment(payment, 100)
    assert refund.status == status
    assert refund.last_error
    counted = 100 if status == RefundStatus.UNKNOWN else 0
    assert payment.refundable_amount == 5320 - counted


def test_a_429_every_time_fails_the_refund_after_the_retries(khaime_api, payment):
    for _ in range(3):
        khaime_api.post(REFUNDS, json={"success": False, "error": "quota"}, status=429, headers={"Retry-After": "0"})
    refund = refund_payment(payment, 100)
    assert refund.status == RefundStatus.FAILED
    assert len(khaime_api.calls) == 3


def test_the_refund_row_exists_before_khaime_is_called(khaime_api, payment):
    seen = []

    def callback(request):
        seen.append(list(Refund.objects.values_list("status", "amount")))
        return (200, {}, '{"success": true, "data": {"refund_id": "ref_9", "status": "processing"}}')

    khaime_api.add_callback("POST", REFUNDS, callback=callback)
    refund_payment(payment, 250)
    assert seen == [[(RefundStatus.REQUESTED, 250)]]


def test_a_connection_never_made_is_retried_then_fails(khaime_api, payment, settings):
    settings.KHAIME = {**settings.KHAIME, "API_BASE_URL": "http://127.0.0.1:9/api/v1/partner"}
    refund = refund_payment(payment, 100)
    assert refund.status == RefundStatus.FAILED
    assert "could not be reached" in refund.last_error

"""Refunds: POST /refunds with Khaime's validation, completion webhooks, dashboard refunds, and the
faults a merchant's refund code must survive (fail, hang, answer timeout, dropped connection)."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from khaime_django.emulator import RefundRefused

from .conftest import LIVE_KEY


@pytest.fixture
def paid(api, emulator):
    """A completed one-time session's transaction id (5320 USD paid)."""
    session_id = api.create_session()["session_id"]
    return emulator.complete(session_id)["transaction_id"]


@pytest.fixture
def refund(api):
    def run(transaction_id: str, key=None, **fields) -> requests.Response:
        extra = {"key": key} if key else {}
        return api.request("POST", "/refunds", json={"transaction_id": transaction_id, **fields}, **extra)

    return run


@pytest.fixture
def fast(emulator):
    emulator.configure(refund_delay=0.01)
    return emulator


def wait_for_events(emulator, count: int) -> list[dict]:
    # Refunds complete on a timer; wait on the deliveries the same way a receiver would.
    emulator.wait_for_deliveries(count, timeout=5)
    return emulator.events()


def test_full_refund_answers_processing_then_completes_with_both_events(api, wired_emulator, paid, refund, fast):
    response = refund(paid, reason="requested_by_customer")

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["refund_id"].startswith("ref_")
    assert (data["status"], data["amount"], data["currency"]) == ("processing", 5320, "USD")
    events = wait_for_events(wired_emulator, 3)
    assert [event["event_type"] for event in events] == ["payment.succeeded", "refund.completed", "payment.refunded"]
    completed = events[1]["data"]
    assert completed["id"] == completed["refund_id"] == data["refund_id"]
    assert (completed["transaction_id"], completed["amount"], completed["status"]) == (paid, 5320, "completed")
    assert completed["reason"] == "requested_by_customer"
    assert completed["metadata"] == {"reference": "ord-1", "attempt": 1}
    assert completed["session_id"] == events[0]["data"]["session_id"]
    assert completed["subscription_id"] is None
    assert events[2]["data"]["id"] == paid
    assert events[2]["data"]["status"] == "refunded"
    assert wired_emulator.refund_record(data["refund_id"])["status"] == "completed"


def test_two_partial_refunds_up_to_the_total_then_a_third_is_refused(wired_emulator, paid, refund, fast):
    assert refund(paid, amount=2000).status_code == 200
    assert refund(paid, amount=3320).status_code == 200

    third = refund(paid, amount=1)

    assert third.status_code == 422
    events = wait_for_events(wired_emulator, 4)
    assert [event["event_type"] for event in events].count("payment.refunded") == 1
    assert events[-1]["event_type"] == "payment.refunded"


def test_a_partial_refund_sends_no_payment_refunded(wired_emulator, paid, refund, fast):
    refund(paid, amount=100)

    events = wait_for_events(wired_emulator, 2)
    assert [event["event_type"] for event in events] == ["payment.succeeded", "refund.completed"]
    assert wired_emulator.payments()[0]["refundable_amount"] == 5220


def test_a_refund_in_flight_counts_against_what_remains(paid, refund, emulator):
    emulator.next_refund("hang")
    assert refund(paid, amount=5000).status_code == 200

    assert refund(paid, amount=500).status_code == 422
    assert refund(paid, amount=320).status_code == 200


@pytest.mark.parametrize("amount", [0, -5, 5321, 10.5, "100", True])
def test_an_amount_not_positive_or_over_the_payment_is_422(paid, refund, amount):
    response = refund(paid, amount=amount)

    assert response.status_code == 422
    assert "amount" in response.json()["details"]


def test_an_unknown_transaction_is_404(refund):
    response = refund("txn_unknown")

    assert response.status_code == 404
    assert response.json()["error"] == "Transaction not found"


@pytest.mark.parametrize("body", [{}, {"transaction_id": 12}, {"transaction_id": ""}])
def test_a_missing_transaction_id_is_422(api, body):
    assert api.request("POST", "/refunds", json=body).status_code == 422


def test_a_sandbox_key_cannot_refund_a_live_payment(api, emulator, refund):
    live = emulator.complete(api.create_session(key=LIVE_KEY)["session_id"])["transaction_id"]

    response = refund(live)

    assert response.status_code == 403
    assert emulator.refunds() == []
    assert refund(live, key=LIVE_KEY).status_code == 200


def test_a_renewal_is_refunded_with_its_subscription_id(api, wired_emulator, refund, fast):
    session_id = api.create_session(subscription_frequency_key="monthly")["session_id"]
    subscription_id = wired_emulator.complete(session_id)["subscription_id"]
    renewal = wired_emulator.renew_subscription(subscription_id)["payment_history"][1]["transaction_id"]

    refund(renewal)

    events = wait_for_events(wired_emulator, 6)
    completed = next(event["data"] for event in events if event["event_type"] == "refund.completed")
    assert (completed["transaction_id"], completed["subscription_id"]) == (renewal, subscription_id)
    history = wired_emulator.subscription(subscription_id)["payment_history"]
    assert [payment["status"] for payment in history] == ["succeeded", "refunded"]


def test_next_refund_fail_answers_processing_and_never_completes(wired_emulator, paid, refund, fast, control):
    control("POST", "/refunds/next", json={"fault": "fail"})

    refund_id = refund(paid).json()["data"]["refund_id"]

    wired_emulator.wait_for_deliveries(1)
    with pytest.raises(TimeoutError):
        wired_emulator.wait_for_deliveries(2, timeout=0.3)
    assert wired_emulator.refund_record(refund_id)["status"] == "failed"
    assert wired_emulator.payments()[0]["refundable_amount"] == 5320  # a failed refund holds nothing


def test_next_refund_hang_stays_processing_until_settled(wired_emulator, paid, refund, fast, control):
    control("POST", "/refunds/next", json={"fault": "hang"})
    refund_id = refund(paid).json()["data"]["refund_id"]
    with pytest.raises(TimeoutError):
        wired_emulator.wait_for_deliveries(2, timeout=0.3)
    assert wired_emulator.refund_record(refund_id)["status"] == "processing"

    response = control("POST", f"/refunds/{refund_id}/complete")

    assert response.json()["data"]["status"] == "completed"
    assert [event["event_type"] for event in wait_for_events(wired_emulator, 3)][1:] == [
        "refund.completed",
        "payment.refunded",
    ]
    assert control("POST", f"/refunds/{refund_id}/fail").status_code == 409


def test_a_hung_refund_can_be_failed_by_hand(emulator, paid, refund):
    emulator.next_refund("hang")
    refund_id = refund(paid).json()["data"]["refund_id"]

    assert emulator.fail_refund(refund_id)["status"] == "failed"
    assert [event["event_type"] for event in emulator.events()] == ["payment.succeeded"]


def test_the_next_refund_fault_applies_once(wired_emulator, paid, refund, fast):
    wired_emulator.next_refund("hang")
    refund(paid, amount=100)
    refund(paid, amount=100)

    wait_for_events(wired_emulator, 2)
    assert sorted(r["status"] for r in wired_emulator.refunds()) == ["completed", "processing"]


def test_timeout_after_the_refund_was_made_keeps_the_refund(api, wired_emulator, paid, fast, control):
    control("POST", "/config", json={"refund_answer_delay": 1.0})
    control("POST", "/refunds/next", json={"fault": "timeout"})

    with pytest.raises(requests.exceptions.ReadTimeout):
        api.http.post(
            api.emulator.api_base_url + "/refunds",
            json={"transaction_id": paid},
            headers={"X-API-Key": "pk_sandbox_x"},
            timeout=(2, 0.3),
        )

    assert [r["status"] for r in wired_emulator.refunds()] in (["processing"], ["completed"])
    events = wait_for_events(wired_emulator, 3)
    assert events[-1]["event_type"] == "payment.refunded"


def test_dropped_connection_after_the_refund_was_made_keeps_the_refund(api, wired_emulator, paid, fast, control):
    control("POST", "/refunds/next", json={"fault": "drop"})

    with pytest.raises(requests.exceptions.ConnectionError):
        api.request("POST", "/refunds", json={"transaction_id": paid})

    assert len(wired_emulator.refunds()) == 1
    assert wait_for_events(wired_emulator, 3)[-1]["event_type"] == "payment.refunded"


def test_an_unknown_refund_fault_is_422(control):
    response = control("POST", "/refunds/next", json={"fault": "explode"})

    assert response.status_code == 422
    assert "fault" in response.json()["details"]


def test_a_dashboard_refund_sends_its_webhooks_without_our_post(wired_emulator, paid, control, receiver):
    response = control("POST", f"/payments/{paid}/refund", json={"amount": 320, "reason": "goodwill"})

    assert response.status_code == 200
    assert response.json()["data"]["source"] == "dashboard"
    wired_emulator.wait_for_deliveries(2)
    # The payment's own webhook and the refund's are sent by a pool: either may land last.
    bodies = [json.loads(delivery["body"]) for delivery in receiver.received]
    assert sorted(body["event_type"] for body in bodies) == ["payment.succeeded", "refund.completed"]
    completed = next(body for body in bodies if body["event_type"] == "refund.completed")
    assert (completed["data"]["amount"], completed["data"]["reason"]) == (320, "goodwill")


def test_a_dashboard_refund_is_validated_like_any_other(emulator, paid, control):
    assert control("POST", f"/payments/{paid}/refund", json={"amount": 99999}).status_code == 422
    assert control("POST", "/payments/txn_nope/refund").status_code == 404
    with pytest.raises(RefundRefused):
        emulator.dashboard_refund(paid, amount=0)


def test_refunds_are_in_the_truth_with_their_payment(emulator, paid, refund, fast, control):
    refund(paid, amount=1000)
    emulator.dashboard_refund(paid, amount=20)

    truth = control("GET", "/truth").json()["data"]

    assert {"sessions", "payments", "subscriptions", "refunds", "events"} <= set(truth)
    assert truth["payments"][0]["transaction_id"] == paid
    assert sorted(r["amount"] for r in truth["refunds"]) == [20, 1000]
    assert truth["sessions"][0]["transaction_id"] == paid
    assert truth["events"][0]["event_type"] == "payment.succeeded"


def test_concurrent_refunds_never_exceed_the_payment(api, emulator, paid):
    emulator.next_refund("hang")  # the first stays in flight: it must still count
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def refund_1000() -> None:
        barrier.wait()
        response = api.request("POST", "/refunds", json={"transaction_id": paid, "amount": 1000})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=refund_1000) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] * 5 + [422] * 5
    assert sum(refund["amount"] for refund in emulator.refunds()) == 5000


def test_reset_drops_a_refund_still_waiting_to_complete(wired_emulator, paid, refund, control):
    control("POST", "/config", json={"refund_delay": 0.2})
    refund(paid)

    wired_emulator.reset()

    with pytest.raises(TimeoutError):
        wired_emulator.wait_for_deliveries(1, timeout=0.5)
    assert wired_emulator.events() == []

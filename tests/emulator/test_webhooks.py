"""Signed webhooks (khaime-api.md §5): payload, signature, headers, delivery, retries, order."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

import pytest

from khaime_django.emulator import Emulator, TransitionNotAllowed, khaime_sign

from .conftest import LIVE_KEY, SECRET, PartnerApi


def session_id_of(delivery: dict) -> str:
    return json.loads(delivery["body"])["data"]["session_id"]


def test_khaime_sign_is_lowercase_hex_hmac_sha256_of_the_bytes_with_the_whole_secret():
    body = b'{"event_id": "evt_1"}'

    assert khaime_sign(body, "whsec_abc") == hmac.new(b"whsec_abc", body, hashlib.sha256).hexdigest()


def test_webhook_signature_verifies_over_the_raw_body(api, wired_emulator, receiver):
    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)

    delivered = receiver.received[0]
    expected = hmac.new(SECRET.encode(), delivered["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(delivered["headers"]["X-Khaime-Signature"], expected)


def test_webhook_headers_describe_the_event(api, wired_emulator, receiver):
    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)

    headers = receiver.received[0]["headers"]
    envelope = json.loads(receiver.received[0]["body"])
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Khaime-Event"] == "payment.succeeded"
    assert headers["X-Khaime-Event-Id"] == envelope["event_id"]
    assert headers["X-Khaime-Api-Version"] == "2026-03-27"


def test_payment_succeeded_carries_the_2026_03_27_envelope_and_the_session_metadata(api, wired_emulator, receiver):
    session = api.create_session(customer={"email": "ada@example.com", "first_name": "Ada"})
    wired_emulator.complete(session["session_id"])
    wired_emulator.wait_for_deliveries(1)

    envelope = json.loads(receiver.received[0]["body"])
    assert envelope == wired_emulator.events()[0]
    assert envelope["api_version"] == "2026-03-27"
    assert envelope["event_id"].startswith("evt_")
    assert envelope["event_type"] == "payment.succeeded"
    assert datetime.fromisoformat(envelope["occurred_at"])
    assert envelope["is_live"] is False
    assert envelope["business_id"] == "1042"
    data = envelope["data"]
    assert data["object"] == "payment"
    assert data["id"].startswith("txn_")
    assert data["id"] == data["transaction_id"] == wired_emulator.session(session["session_id"])["transaction_id"]
    assert data["subscription_id"] is None
    assert data["session_id"] == session["session_id"]
    assert (data["status"], data["payment_type"], data["gateway"]) == (
        "succeeded",
        "one_time",
        "stripe",
    )
    assert data["amounts"] == {
        "customer_paid": {"amount": 5320, "currency": "USD"},
        "merchant_gross": {"amount": 5320, "currency": "USD"},
        "merchant_net": {"amount": 5000, "currency": "USD"},
        "fees": {"amount": 320, "currency": "USD"},
    }
    assert data["customer"] == {"email": "ada@example.com", "first_name": "Ada"}
    assert data["product"] == {
        "id": None,
        "title": "Field guide (PDF)",
        "type": "digital",
    }
    assert data["metadata"] == {"reference": "ord-1", "attempt": 1}
    assert data["paid_at"]


def test_merchant_absorbing_fees_receives_the_price_less_fees(api, emulator):
    emulator.configure(customer_pays_fees=False)
    emulator.complete(api.create_session(amount=5000)["session_id"])

    amounts = emulator.events()[0]["data"]["amounts"]

    assert amounts["customer_paid"]["amount"] == 5000
    assert amounts["merchant_net"]["amount"] == 4680
    assert amounts["fees"]["amount"] == 320


def test_live_session_events_are_live(api, emulator):
    emulator.complete(api.create_session(key=LIVE_KEY)["session_id"])

    assert emulator.events()[0]["is_live"] is True


def test_decline_sends_payment_failed_without_paid_at(api, emulator):
    emulator.fail(api.create_session()["session_id"])

    event = emulator.events()[0]
    assert event["event_type"] == "payment.failed"
    assert event["data"]["status"] == "failed"
    assert event["data"]["paid_at"] is None


@pytest.mark.parametrize(("action", "event_type", "status"), [
    ("refund", "payment.refunded", "refunded"),
    ("dispute", "payment.disputed", "disputed"),
])  # fmt: skip
def test_refund_and_dispute_of_a_completed_session_send_their_event(api, emulator, action, event_type, status):
    session_id = api.create_session()["session_id"]
    emulator.complete(session_id)

    getattr(emulator, action)(session_id)

    event = emulator.events()[-1]
    assert (event["event_type"], event["data"]["status"]) == (event_type, status)
    assert event["data"]["id"] == emulator.events()[0]["data"]["id"]  # the same payment
    assert emulator.session(session_id)["status"] == "completed"


@pytest.mark.parametrize("action", ["refund", "dispute"])
def test_refund_and_dispute_need_a_completed_session(api, emulator, action):
    session_id = api.create_session()["session_id"]

    with pytest.raises(TransitionNotAllowed):
        getattr(emulator, action)(session_id)
    assert emulator.events() == []


def test_a_payment_is_refunded_only_once(api, emulator):
    session_id = api.create_session()["session_id"]
    emulator.complete(session_id)
    emulator.refund(session_id)

    with pytest.raises(TransitionNotAllowed, match="already refunded"):
        emulator.refund(session_id)


def test_expiry_sends_no_webhook(api, wired_emulator):
    wired_emulator.expire(api.create_session()["session_id"])

    assert wired_emulator.events() == []
    assert wired_emulator.deliveries() == []


def test_without_webhook_url_events_are_recorded_but_not_delivered(api, emulator):
    emulator.complete(api.create_session()["session_id"])

    assert [event["event_type"] for event in emulator.events()] == ["payment.succeeded"]
    with pytest.raises(TimeoutError):
        emulator.wait_for_deliveries(1, timeout=0.1)
    assert emulator.deliveries() == []


def test_failing_receiver_gets_webhook_attempts_attempts_then_delivery_gives_up(api, wired_emulator, receiver):
    wired_emulator.configure(webhook_attempts=3)
    receiver.answer_with(500, 502, 503, 200)

    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)

    attempts = wired_emulator.deliveries()
    assert [(a["attempt"], a["status_code"], a["succeeded"]) for a in attempts] == [
        (1, 500, False), (2, 502, False), (3, 503, False),
    ]  # fmt: skip
    assert len(receiver.received) == 3
    assert attempts[0]["url"] == receiver.url
    assert "response_body" not in attempts[0]  # what the receiver answered is not shown


def test_retries_stop_at_the_first_2xx(api, wired_emulator, receiver):
    receiver.answer_with(500, 204)

    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)

    assert [(a["status_code"], a["succeeded"]) for a in wired_emulator.deliveries()] == [(500, False), (204, True)]
    assert len(receiver.received) == 2


def test_retries_resend_the_same_event_id_and_bytes(api, wired_emulator, receiver):
    receiver.answer_with(500)

    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)

    first, second = receiver.received
    assert first["body"] == second["body"]
    assert first["headers"]["X-Khaime-Event-Id"] == second["headers"]["X-Khaime-Event-Id"]
    assert first["headers"]["X-Khaime-Signature"] == second["headers"]["X-Khaime-Signature"]


def test_retries_are_webhook_retry_delay_apart(api, wired_emulator, receiver):
    wired_emulator.configure(webhook_retry_delay=0.2)
    receiver.answer_with(500)

    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)

    first, second = (datetime.fromisoformat(a["sent_at"]) for a in wired_emulator.deliveries())
    assert (second - first).total_seconds() >= 0.2


def test_duplicate_webhooks_deliver_each_event_twice_with_the_same_bytes(api, wired_emulator, receiver):
    wired_emulator.configure(duplicate_webhooks=True)

    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(2)

    first, second = receiver.received
    assert first["body"] == second["body"]
    assert first["headers"]["X-Khaime-Signature"] == second["headers"]["X-Khaime-Signature"]
    assert len(wired_emulator.events()) == 1


def test_delivery_runs_in_the_background_not_on_the_buyers_request(api, http, wired_emulator, receiver):
    session = api.create_session()
    receiver.hold()

    response = http.post(f"{session['payment_url']}/pay", allow_redirects=False, timeout=2)

    assert response.status_code == 303
    receiver.wait_for(1)  # the webhook is in flight, its answer held back
    assert wired_emulator.deliveries() == []
    receiver.release()
    wired_emulator.wait_for_deliveries(1)


def test_receiver_slower_than_webhook_timeout_counts_as_a_failed_attempt(api, wired_emulator, receiver):
    wired_emulator.configure(webhook_timeout=0.2, webhook_attempts=1)
    receiver.hold()

    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)

    (attempt,) = wired_emulator.deliveries()
    assert attempt["status_code"] is None
    assert "timed out" in attempt["error"]


def test_unreachable_receiver_is_recorded_as_an_error(api, emulator, receiver):
    url = receiver.url
    receiver.close()
    emulator.configure(webhook_url=url, webhook_attempts=2)

    emulator.complete(api.create_session()["session_id"])
    emulator.wait_for_deliveries(1)

    assert [(a["status_code"], bool(a["error"])) for a in emulator.deliveries()] == [
        (None, True),
        (None, True),
    ]


def test_in_order_delivery_with_one_sender_follows_the_order_of_events(receiver, http):
    with Emulator(webhook_workers=1, webhook_url=receiver.url) as single:
        api = PartnerApi(single, http)
        session_ids = [api.create_session()["session_id"] for _ in range(5)]

        for session_id in session_ids:
            single.complete(session_id)
        single.wait_for_deliveries(5)

    assert [session_id_of(delivery) for delivery in receiver.received] == session_ids


def test_senders_deliver_concurrently_so_a_slow_receiver_does_not_hold_back_the_rest(api, wired_emulator, receiver):
    receiver.hold()  # every answer waits until released: only concurrent senders get 4 in at once
    for _ in range(4):
        wired_emulator.complete(api.create_session()["session_id"])

    receiver.wait_for(4, timeout=3)
    receiver.release()
    wired_emulator.wait_for_deliveries(4)
    assert {attempt["status_code"] for attempt in wired_emulator.deliveries()} == {200}


def test_a_stored_event_can_be_redelivered_with_the_same_bytes(api, wired_emulator, receiver, control):
    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)
    event_id = wired_emulator.events()[0]["event_id"]

    response = control("POST", f"/events/{event_id}/redeliver")
    wired_emulator.wait_for_deliveries(2)

    assert response.status_code == 200
    assert response.json()["data"]["event_id"] == event_id
    first, again = receiver.received
    assert again["body"] == first["body"]
    assert again["headers"]["X-Khaime-Signature"] == first["headers"]["X-Khaime-Signature"]
    assert control("POST", "/events/evt_unknown/redeliver").status_code == 404


def test_redelivery_without_a_webhook_url_is_409(api, emulator, control):
    emulator.complete(api.create_session()["session_id"])
    event_id = emulator.events()[0]["event_id"]

    assert control("POST", f"/events/{event_id}/redeliver").status_code == 409


def test_shuffled_delivery_sends_every_event_but_out_of_order(api, wired_emulator, receiver):
    wired_emulator.configure(webhook_order="shuffled", seed=7)
    session_ids = [api.create_session()["session_id"] for _ in range(5)]

    for session_id in session_ids:
        wired_emulator.complete(session_id)
    wired_emulator.wait_for_deliveries(5)

    delivered = [session_id_of(delivery) for delivery in receiver.received]
    assert sorted(delivered) == sorted(session_ids)
    assert delivered != session_ids


def test_wait_for_deliveries_raises_timeout_error_when_deliveries_are_unfinished(api, wired_emulator, receiver):
    receiver.hold()
    wired_emulator.complete(api.create_session()["session_id"])

    with pytest.raises(TimeoutError, match="0 of 1"):
        wired_emulator.wait_for_deliveries(1, timeout=0.1)

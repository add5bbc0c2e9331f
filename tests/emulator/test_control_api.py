"""The /_emulator control API, as a demo or a test in another process drives it."""

from __future__ import annotations

import pytest


def test_lists_sessions_and_gets_one(api, control):
    session_id = api.create_session()["session_id"]

    listed = control("GET", "/sessions").json()
    one = control("GET", f"/sessions/{session_id}").json()

    assert listed["success"] is True
    assert [session["session_id"] for session in listed["data"]] == [session_id]
    assert one["data"]["metadata"] == {"reference": "ord-1", "attempt": 1}
    assert one["data"]["status"] == "pending"


@pytest.mark.parametrize(
    ("action", "status"),
    [("complete", "completed"), ("fail", "failed"), ("expire", "expired")],
)
def test_session_action_changes_the_status(api, control, action, status):
    session_id = api.create_session()["session_id"]

    response = control("POST", f"/sessions/{session_id}/{action}")

    assert response.status_code == 200
    assert response.json()["data"]["status"] == status
    assert api.retrieve(session_id).json()["data"]["status"] == status


def test_refund_action_is_a_full_dashboard_refund(api, control, emulator):
    session_id = api.create_session()["session_id"]
    control("POST", f"/sessions/{session_id}/complete")

    response = control("POST", f"/sessions/{session_id}/refund")

    assert response.status_code == 200
    assert [event["event_type"] for event in control("GET", "/events").json()["data"]] == [
        "payment.succeeded",
        "refund.completed",
        "payment.refunded",
    ]
    assert response.json()["data"]["refunded_amount"] == response.json()["data"]["amount"]


@pytest.mark.parametrize("action", ["complete", "fail", "expire", "refund", "dispute"])
def test_action_not_allowed_in_the_current_status_is_409(api, control, action):
    session_id = api.create_session()["session_id"]
    control("POST", f"/sessions/{session_id}/fail")

    response = control("POST", f"/sessions/{session_id}/{action}")

    assert response.status_code == 409
    assert response.json()["success"] is False
    assert response.json()["details"] == {"status": "failed"}


def test_action_on_unknown_session_is_404(control):
    response = control("POST", "/sessions/sess_unknown/complete")

    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Session not found"}


def test_deliveries_lists_every_attempt(api, control, wired_emulator, receiver):
    receiver.answer_with(500)
    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)

    attempts = control("GET", "/deliveries").json()["data"]

    assert [attempt["status_code"] for attempt in attempts] == [500, 200]
    assert {
        "event_id",
        "event_type",
        "url",
        "attempt",
        "error",
        "sent_at",
    } <= set(attempts[0])


def test_config_changes_options_at_run_time(api, control):
    response = control("POST", "/config", json={"customer_pays_fees": False, "session_ttl": 60})

    assert response.status_code == 200
    assert response.json()["data"]["customer_pays_fees"] is False
    assert api.create_session(amount=5000)["amount"] == 5000


@pytest.mark.parametrize(
    ("options", "bad_option"),
    [
        ({"fail_rate": 2}, "fail_rate"),
        ({"webhook_order": "random"}, "webhook_order"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_config_is_422_naming_the_option(control, options, bad_option):
    response = control("POST", "/config", json=options)

    assert response.status_code == 422
    assert bad_option in response.json()["details"]


def test_config_body_must_be_a_json_object(control):
    response = control("POST", "/config", data=b"[1]", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_reset_forgets_sessions_and_restores_the_initial_config(api, control):
    api.create_session()
    control("POST", "/config", json={"fee_bps": 0})

    response = control("POST", "/reset")

    assert response.status_code == 200
    assert control("GET", "/sessions").json()["data"] == []
    assert control("GET", "/config").json()["data"]["fee_bps"] == 600


def test_unknown_control_path_is_404_and_wrong_method_405(control):
    assert control("GET", "/nothing").status_code == 404
    assert control("GET", "/reset").status_code == 405

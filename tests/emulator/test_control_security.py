"""The control API is a local tool: it must not be drivable from a web page or used as a relay."""

from __future__ import annotations

import pytest

from khaime_django.emulator import Emulator, InvalidConfig


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "127.0.0.1@evil.example", "10.0.0.5:80", ""]
)
def test_a_request_not_addressed_to_a_loopback_host_is_refused(control, host):
    response = control("GET", "/sessions", headers={"Host": host})

    assert response.status_code == 403
    assert response.json()["success"] is False


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8765", "[::1]:8765"])
def test_loopback_host_values_are_served(control, host):
    assert control("GET", "/sessions", headers={"Host": host}).status_code == 200


def test_a_rebound_host_cannot_act_either(api, control):
    session_id = api.create_session()["session_id"]

    response = control("POST", f"/sessions/{session_id}/complete", headers={"Host": "attacker.example"})

    assert response.status_code == 403
    assert api.retrieve(session_id).json()["data"]["status"] == "pending"


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_control_post_that_is_not_json_is_refused_and_changes_nothing(api, control, http, emulator, content_type):
    session_id = api.create_session()["session_id"]
    headers = {"Content-Type": content_type} if content_type else {}

    response = http.post(f"{emulator.base_url}/_emulator/sessions/{session_id}/complete", headers=headers, timeout=5)

    assert response.status_code == 415
    assert api.retrieve(session_id).json()["data"]["status"] == "pending"


def test_json_with_a_charset_is_accepted(control):
    response = control("POST", "/reset", data=b"{}", headers={"Content-Type": "application/json; charset=utf-8"})

    assert response.status_code == 200


def test_the_webhook_secret_is_never_returned(control):
    assert "webhook_secret" not in control("GET", "/config").json()["data"]
    assert "webhook_secret" not in control("POST", "/config", json={"latency_ms": 0}).json()["data"]
    assert "webhook_secret" not in control("POST", "/reset").json()["data"]


def test_the_webhook_secret_can_still_be_rotated_without_being_shown(control, emulator):
    response = control("POST", "/config", json={"webhook_secret": "whsec_rotated"})

    assert response.status_code == 200
    assert "whsec_rotated" not in response.text
    assert emulator.config.webhook_secret == "whsec_rotated"


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://internal.example/hook", "https://10.0.0.1/"]
)
def test_a_webhook_url_off_loopback_is_refused(control, emulator, url):
    response = control("POST", "/config", json={"webhook_url": url})

    assert response.status_code == 422
    assert "webhook_url" in response.json()["details"]
    assert emulator.config.webhook_url is None


def test_the_control_api_cannot_allow_remote_webhooks(control, emulator):
    response = control(
        "POST", "/config", json={"allow_remote_webhooks": True, "webhook_url": "http://internal.example/"}
    )

    assert response.status_code == 422
    assert response.json()["details"] == {"allow_remote_webhooks": "can only be set at start-up"}
    assert emulator.config.allow_remote_webhooks is False


def test_remote_webhooks_need_the_start_up_flag():
    with pytest.raises(InvalidConfig, match="webhook_url"):
        Emulator(webhook_url="http://hooks.example/khaime/")

    assert Emulator(webhook_url="http://hooks.example/khaime/", allow_remote_webhooks=True).config.webhook_url


def test_what_the_webhook_target_answered_is_not_shown(api, control, wired_emulator, receiver):
    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)

    response = control("GET", "/deliveries")

    assert response.json()["data"][0]["status_code"] == 200
    assert "received" not in response.text  # the receiver's body: {"received": true}

"""The Emulator's Python API: lifecycle, configuration, snapshots, reset."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from khaime_django.emulator import Emulator, InvalidConfig, UnknownSession

from .conftest import valid_session_body


def test_context_manager_serves_inside_and_frees_the_port_after(http):
    with Emulator() as emu:
        url = emu.api_base_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api/v1/partner")
        assert http.get(f"{url}/account", headers={"X-API-Key": "pk_sandbox_x"}, timeout=5).status_code == 200

    with pytest.raises(requests.ConnectionError):
        http.get(f"{url}/account", timeout=5)


def test_base_url_needs_a_running_emulator():
    with pytest.raises(RuntimeError):
        _ = Emulator().base_url


def test_stopped_emulator_can_stop_again_and_restart(http):
    emu = Emulator().start()
    emu.stop()
    emu.stop()

    with emu:
        assert http.get(f"{emu.api_base_url}/account", headers={"X-API-Key": "pk_live_x"}, timeout=5).ok


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("host", ""),
        ("port", 70000),
        ("webhook_url", "not a url"),
        ("webhook_url", "ftp://127.0.0.1/hook"),
        ("webhook_secret", ""),
        ("session_ttl", -1),
        ("customer_pays_fees", "yes"),
        ("fee_bps", -1),
        ("fee_fixed", 1.5),
        ("latency_ms", -1),
        ("fail_rate", 1.5),
        ("fail_status", 200),
        ("rate_limit_per_second", 0),
        ("duplicate_webhooks", 1),
        ("webhook_order", "random"),
        ("webhook_attempts", 0),
        ("webhook_retry_delay", -1),
        ("webhook_timeout", 0),
        ("seed", "abc"),
    ],
)
def test_invalid_option_is_refused_by_constructor_and_configure(emulator, option, value):
    with pytest.raises(InvalidConfig) as refused:
        Emulator(**{option: value})
    assert option in refused.value.details
    with pytest.raises(InvalidConfig):
        emulator.configure(**{option: value})


def test_configure_refuses_unknown_options(emulator):
    with pytest.raises(InvalidConfig, match="colour"):
        emulator.configure(colour="red")


def test_configure_cannot_move_a_running_server(emulator):
    with pytest.raises(InvalidConfig, match="port"):
        emulator.configure(port=1)


def test_snapshots_are_copies(api, emulator):
    session_id = api.create_session()["session_id"]

    emulator.session(session_id)["metadata"]["reference"] = "changed"
    emulator.sessions()[0]["customer"]["email"] = "changed@example.com"

    assert emulator.session(session_id)["metadata"]["reference"] == "ord-1"
    assert emulator.session(session_id)["customer"]["email"] == "buyer@example.com"


def test_unknown_session_raises_unknown_session_a_key_error(emulator):
    with pytest.raises(UnknownSession):
        emulator.session("sess_unknown")
    with pytest.raises(KeyError):
        emulator.complete("sess_unknown")


def test_reset_forgets_everything_and_restores_constructor_config(api, wired_emulator):
    wired_emulator.complete(api.create_session()["session_id"])
    wired_emulator.wait_for_deliveries(1)
    wired_emulator.configure(fee_bps=0)

    wired_emulator.reset()

    assert (
        wired_emulator.sessions(),
        wired_emulator.events(),
        wired_emulator.deliveries(),
    ) == ([], [], [])
    assert wired_emulator.config.fee_bps == 600
    assert wired_emulator.config.webhook_url is None
    assert wired_emulator.config.webhook_secret == "whsec_emulator_tests"  # as constructed


def test_request_in_flight_at_stop_is_still_answered(http):
    emu = Emulator(latency_ms=300).start()
    arrived = threading.Event()
    draw_fault = emu.draw_fault

    def note_arrival():
        arrived.set()
        return draw_fault()

    emu.draw_fault = note_arrival
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(
            http.post,
            f"{emu.api_base_url}/payments/sessions",
            json=valid_session_body(),
            headers={"X-API-Key": "pk_sandbox_x"},
            timeout=5,
        )
        assert arrived.wait(timeout=5)
        emu.stop()

        assert answer.result().status_code == 201


def test_connections_are_kept_alive_for_pooled_clients():
    import http.client
    from urllib.parse import urlsplit

    with Emulator() as emu:
        parts = urlsplit(emu.base_url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        for _ in range(2):  # the second request rides the same TCP connection
            connection.request("GET", "/api/v1/partner/account", headers={"X-API-Key": "pk_sandbox_x"})
            response = connection.getresponse()
            assert response.status == 200
            assert not response.will_close  # HTTP/1.1 keep-alive: the server keeps the socket open
            response.read()
        connection.close()


def test_stop_hangs_up_on_idle_kept_alive_connections(http):
    with Emulator() as emu:
        url = f"{emu.api_base_url}/account"
        assert http.get(url, headers={"X-API-Key": "pk_sandbox_x"}, timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        http.get(url, headers={"X-API-Key": "pk_sandbox_x"}, timeout=5)


def test_truth_lists_what_khaime_holds_for_a_ledger_check(api, emulator):
    one_time = emulator.complete(api.create_session()["session_id"])
    member = emulator.complete(api.create_session(subscription_frequency_key="weekly")["session_id"])
    emulator.renew_subscription(member["subscription_id"])
    emulator.dashboard_refund(one_time["transaction_id"], amount=100)

    truth = emulator.truth()

    assert {session["status"] for session in truth["sessions"]} == {"completed"}
    assert len(truth["payments"]) == 3
    assert [s["id"] for s in truth["subscriptions"]] == [member["subscription_id"]]
    assert len(truth["subscriptions"][0]["payment_history"]) == 2
    assert [(r["amount"], r["status"], r["source"]) for r in truth["refunds"]] == [(100, "completed", "dashboard")]
    assert [e["event_type"] for e in truth["events"]] == [
        "payment.succeeded",
        "subscription.created",
        "payment.succeeded",
        "subscription.renewed",
        "payment.succeeded",
        "refund.completed",
    ]


def test_every_control_action_is_a_python_method():
    from khaime_django.emulator import Emulator
    from khaime_django.emulator.actions import SESSION_ACTIONS, SUBSCRIPTION_ACTIONS

    for method in (*SESSION_ACTIONS.values(), *SUBSCRIPTION_ACTIONS.values()):
        assert getattr(Emulator, method.__name__) is method
    assert set(SUBSCRIPTION_ACTIONS) == {"renew", "fail_payment", "cancel", "expire", "pause", "resume"}

"""Simulated faults: latency, random failures and rate limiting, on the Partner API only."""

from __future__ import annotations

import time


def test_latency_delays_partner_api_answers(api):
    api.emulator.configure(latency_ms=200)

    started = time.monotonic()
    response = api.request("GET", "/account")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


def test_fail_rate_one_answers_every_request_with_fail_status(api):
    api.emulator.configure(fail_rate=1.0, fail_status=503)

    responses = [api.create(), api.request("GET", "/account")]

    assert [response.status_code for response in responses] == [503, 503]
    assert responses[0].json()["success"] is False
    assert "Simulated failure" in responses[0].json()["error"]
    assert api.emulator.sessions() == []


def test_fail_rate_draws_repeat_for_the_same_seed(api):
    def outcomes() -> list[int]:
        return [api.request("GET", "/account").status_code for _ in range(20)]

    api.emulator.configure(fail_rate=0.5, seed=42)
    first = outcomes()
    api.emulator.configure(seed=42)
    second = outcomes()

    assert first == second
    assert {200, 500} == set(first)


def test_rate_limit_answers_429_past_the_limit_in_a_second(api):
    api.emulator.configure(rate_limit_per_second=2)

    responses = [api.request("GET", "/account") for _ in range(5)]

    # Five quick requests span at most two clock seconds: at most four fit under the limit.
    assert [response.status_code for response in responses[:2]] == [200, 200]
    limited = [response for response in responses if response.status_code == 429]
    assert limited
    assert limited[0].json() == {"success": False, "error": "Rate limit exceeded"}


def test_faults_spare_the_checkout_page_and_the_control_api(api, http):
    session = api.create_session()
    api.emulator.configure(fail_rate=1.0, latency_ms=300, rate_limit_per_second=1)

    started = time.monotonic()
    page = http.get(session["payment_url"], timeout=5)
    control = http.get(f"{api.emulator.base_url}/_emulator/sessions", timeout=5)

    assert (page.status_code, control.status_code) == (200, 200)
    assert time.monotonic() - started < 0.3

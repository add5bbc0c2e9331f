"""Fixtures for the emulator's tests: a running emulator, an HTTP client for it, and a tiny
stdlib webhook receiver. None of them needs Django."""

from __future__ import annotations

import pytest
import requests

from khaime_django.emulator import Emulator

from ..webhook_receiver import WebhookReceiver

SANDBOX_KEY = "pk_sandbox_emulator_tests"
LIVE_KEY = "pk_live_emulator_tests"
SECRET = "whsec_emulator_tests"


OMIT = object()  # pass as a field value to leave the field out of the body


def valid_session_body(**overrides) -> dict:
    body = {
        "amount": 5000,
        "currency": "USD",
        "product_name": "Field guide (PDF)",
        "customer": {"email": "buyer@example.com"},
        "success_url": "https://shop.example/return/success?order=ord-1",
        "cancel_url": "https://shop.example/return/cancel?order=ord-1",
        "metadata": {"reference": "ord-1", "attempt": 1},
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not OMIT}


@pytest.fixture
def khaime_test_settings():
    """The emulator's tests run without Django: shadow the suite's autouse settings fixture."""


@pytest.fixture(scope="session")
def shared_emulator():
    with Emulator(webhook_secret=SECRET, webhook_retry_delay=0.01, webhook_timeout=2.0) as emu:
        yield emu


@pytest.fixture
def emulator(shared_emulator):
    """A running emulator, reset for this test (as the pytest plugin serves merchants)."""
    shared_emulator.reset()
    yield shared_emulator
    shared_emulator.reset()


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False  # loopback only: never through a proxy from the environment
    yield session
    session.close()


@pytest.fixture
def control(emulator, http):
    """Calls the control API as a local tool would: POSTs are JSON (``{}`` when no body is given)."""

    def call(method: str, path: str, **kwargs):
        if method == "POST" and "json" not in kwargs and "data" not in kwargs:
            kwargs["json"] = {}
        return http.request(method, f"{emulator.base_url}/_emulator{path}", timeout=5, **kwargs)

    return call


class PartnerApi:
    """Calls the emulator's Partner API the way a merchant's client would."""

    def __init__(self, emulator: Emulator, http: requests.Session):
        self.emulator = emulator
        self.http = http

    def request(self, method: str, path: str, key: str | None = SANDBOX_KEY, **kwargs) -> requests.Response:
        headers = {"X-API-Key": key} if key is not None else {}
        return self.http.request(
            method,
            self.emulator.api_base_url + path,
            headers=headers,
            timeout=5,
            **kwargs,
        )

    def create(self, key: str = SANDBOX_KEY, **fields) -> requests.Response:
        return self.request("POST", "/payments/sessions", key=key, json=valid_session_body(**fields))

    def create_session(self, key: str = SANDBOX_KEY, **fields) -> dict:
        response = self.create(key=key, **fields)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    def retrieve(self, session_id: str) -> requests.Response:
        return self.request("GET", f"/payments/sessions/{session_id}")


@pytest.fixture
def api(emulator, http) -> PartnerApi:
    return PartnerApi(emulator, http)


@pytest.fixture
def receiver():
    webhook_receiver = WebhookReceiver()
    yield webhook_receiver
    webhook_receiver.close()


@pytest.fixture
def wired_emulator(emulator, receiver):
    """The emulator delivering its webhooks to ``receiver``."""
    emulator.configure(webhook_url=receiver.url)
    return emulator

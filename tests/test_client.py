"""KhaimeClient: typed errors, safe retries, request validation, timeouts, no key leaks, pooling."""

from __future__ import annotations

import json
import logging
import socket
import traceback

import pytest
import requests
import responses
from django.test import override_settings

from khaime_django import client as client_module
from khaime_django.client import KhaimeClient, get_client, transport
from khaime_django.exceptions import (
    KhaimeAuthenticationError,
    KhaimeConfigurationError,
    KhaimeConnectionError,
    KhaimeError,
    KhaimeNotFoundError,
    KhaimeRateLimitError,
    KhaimeRequestInvalid,
    KhaimeResponseError,
    KhaimeServerError,
    KhaimeTimeoutError,
    KhaimeValidationError,
)
from khaime_django.session_request import SessionRequest

from .conftest import API_BASE, SEED_CREATE_RESPONSE

API_KEY = "pk_sandbox_test_0123456789"
SESSIONS_URL = f"{API_BASE}/payments/sessions"
SESSION_URL = f"{API_BASE}/payments/sessions/sess_1"
GET_OK = {"success": True, "data": {"session_id": "sess_1", "status": "pending"}}

VALID_REQUEST = {
    "amount": 5000,
    "currency": "USD",
    "product_name": "Premium Plan",
    "customer": {"email": "buyer@example.com"},
    "success_url": "https://shop.test/payments/sessions/r/success/",
    "cancel_url": "https://shop.test/payments/sessions/r/cancel/",
    "metadata": {"reference": "r", "order": 7},
}
REQUEST = SessionRequest(**VALID_REQUEST)


def request(**changes):
    return {**VALID_REQUEST, **changes}


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def khaime(sleeps):
    """A client whose backoff sleeps are recorded instead of slept."""
    return KhaimeClient(
        API_KEY, API_BASE, timeout=(1, 2), max_retries=2, backoff_base=0.5, backoff_max=5, sleep=sleeps.append
    )


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused before anything is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- answers --------------------------------------------------------------------------------------


def test_create_session_returns_khaimes_data(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    assert khaime.create_session(REQUEST) == SEED_CREATE_RESPONSE["data"]


def test_create_session_sends_the_key_and_a_json_body(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime.create_session(REQUEST)
    sent = khaime_api.calls[0].request
    assert sent.headers["X-API-Key"] == API_KEY
    assert json.loads(sent.body) == VALID_REQUEST


def test_get_session_returns_khaimes_data(khaime, khaime_api):
    khaime_api.get(SESSION_URL, json=GET_OK)
    assert khaime.get_session("sess_1") == GET_OK["data"]


def test_get_session_quotes_the_session_id_into_one_path_segment(khaime, khaime_api):
    khaime_api.get(f"{API_BASE}/payments/sessions/sess_..%2Fx", json=GET_OK)
    khaime.get_session("sess_../x")
    assert khaime_api.calls[0].request.url == f"{API_BASE}/payments/sessions/sess_..%2Fx"


def test_get_session_without_an_id_is_refused_before_sending(khaime, khaime_api):
    with pytest.raises(KhaimeRequestInvalid):
        khaime.get_session("")
    assert len(khaime_api.calls) == 0


def test_client_without_a_key_is_a_configuration_error():
    with pytest.raises(KhaimeConfigurationError):
        KhaimeClient("", API_BASE)


# -- each status to its error class ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (401, {"success": False, "error": "Invalid API key"}, KhaimeAuthenticationError),
        (403, {"success": False, "error": "Forbidden"}, KhaimeAuthenticationError),
        (404, {"success": False, "error": "Session not found"}, KhaimeNotFoundError),
        (429, {"success": False, "error": "Too many requests"}, KhaimeRateLimitError),
        (500, {"success": False, "error": "Internal error"}, KhaimeServerError),
        (502, {"success": False, "error": "Bad gateway"}, KhaimeServerError),
        (503, {"success": False, "error": "Unavailable"}, KhaimeServerError),
        (418, {"success": False, "error": "Teapot"}, KhaimeResponseError),
    ],
)
def test_error_status_raises_its_error_class(khaime_api, status, body, error_class):
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=0)
    khaime_api.get(SESSION_URL, json=body, status=status)
    with pytest.raises(error_class) as caught:
        khaime.get_session("sess_1")
    assert caught.value.status_code == status
    assert caught.value.message == body["error"]


@pytest.mark.parametrize("status", [400, 422])
def test_validation_error_carries_khaimes_details(khaime, khaime_api, status):
    details = {"amount": "must be positive", "currency": "unsupported"}
    khaime_api.post(
        SESSIONS_URL, json={"success": False, "error": "Validation failed", "details": details}, status=status
    )
    with pytest.raises(KhaimeValidationError) as caught:
        khaime.create_session(REQUEST)
    assert type(caught.value) is KhaimeValidationError
    assert caught.value.status_code == status
    assert caught.value.details == details
    assert "must be positive" in str(caught.value)


def test_error_message_falls_back_to_message_field(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json={"message": "Key revoked"}, status=401)
    with pytest.raises(KhaimeAuthenticationError, match="Key revoked"):
        khaime.create_session(REQUEST)


def test_error_without_any_message_gets_a_generic_one(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json={"success": False}, status=400)
    with pytest.raises(KhaimeValidationError, match="Khaime returned an error"):
        khaime.create_session(REQUEST)


def test_success_answer_that_is_not_json_is_a_response_error(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, body="<html>maintenance</html>", status=200)
    with pytest.raises(KhaimeResponseError, match="not a JSON object"):
        khaime.create_session(REQUEST)


def test_json_that_is_not_an_object_is_a_response_error(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json=["not", "an", "object"], status=200)
    with pytest.raises(KhaimeResponseError):
        khaime.create_session(REQUEST)


def test_server_error_that_is_not_json_is_a_server_error(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, body="<html>Bad Gateway</html>", status=502)
    with pytest.raises(KhaimeServerError) as caught:
        khaime.create_session(REQUEST)
    assert caught.value.status_code == 502


def test_rate_limit_that_is_not_json_is_a_rate_limit_error(khaime_api):
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=0)
    khaime_api.post(SESSIONS_URL, body="slow down", status=429)
    with pytest.raises(KhaimeRateLimitError):
        khaime.create_session(REQUEST)


def test_success_false_in_a_2xx_answer_is_a_response_error(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "Nope", "details": {"x": 1}}, status=200)
    with pytest.raises(KhaimeResponseError, match="Nope") as caught:
        khaime.create_session(REQUEST)
    assert caught.value.details == {"x": 1}


def test_answer_without_data_is_a_response_error(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json={"success": True}, status=201)
    with pytest.raises(KhaimeResponseError, match="no data object"):
        khaime.create_session(REQUEST)


@pytest.mark.parametrize("field", ["session_id", "payment_url", "status"])
def test_create_answer_missing_a_required_field_is_a_response_error(khaime, khaime_api, field):
    data = {key: value for key, value in SEED_CREATE_RESPONSE["data"].items() if key != field}
    khaime_api.post(SESSIONS_URL, json={"success": True, "data": data}, status=201)
    with pytest.raises(KhaimeResponseError) as caught:
        khaime.create_session(REQUEST)
    assert caught.value.details == {field: "missing"}


def test_get_answer_without_status_is_a_response_error(khaime, khaime_api):
    khaime_api.get(SESSION_URL, json={"success": True, "data": {"session_id": "sess_1"}})
    with pytest.raises(KhaimeResponseError) as caught:
        khaime.get_session("sess_1")
    assert caught.value.details == {"status": "missing"}


# -- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        {"body": requests.ReadTimeout("read timed out")},
        {"body": requests.ConnectionError("connection reset")},
        {"json": {"success": False, "error": "slow down"}, "status": 429},
        {"json": {"success": False, "error": "boom"}, "status": 500},
        {"json": {"success": False, "error": "bad gateway"}, "status": 502},
        {"json": {"success": False, "error": "unavailable"}, "status": 503},
    ],
    ids=["timeout", "connection-error", "429", "500", "502", "503"],
)
def test_get_is_retried_on_transient_failure_then_succeeds(khaime, khaime_api, failure):
    khaime_api.get(SESSION_URL, **failure)
    khaime_api.get(SESSION_URL, json=GET_OK)
    assert khaime.get_session("sess_1")["status"] == "pending"
    assert len(khaime_api.calls) == 2


def test_get_gives_up_after_max_retries_and_raises(khaime, khaime_api, sleeps):
    khaime_api.get(SESSION_URL, json={"success": False, "error": "boom"}, status=500)
    with pytest.raises(KhaimeServerError):
        khaime.get_session("sess_1")
    assert len(khaime_api.calls) == 1 + 2
    assert len(sleeps) == 2


def test_get_timeout_after_max_retries_raises_timeout_error(khaime, khaime_api):
    khaime_api.get(SESSION_URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(KhaimeTimeoutError):
        khaime.get_session("sess_1")
    assert len(khaime_api.calls) == 3


@pytest.mark.parametrize("status", [401, 400, 404, 422])
def test_get_is_not_retried_on_a_permanent_error(khaime, khaime_api, status):
    khaime_api.get(SESSION_URL, json={"success": False, "error": "no"}, status=status)
    with pytest.raises(KhaimeError):
        khaime.get_session("sess_1")
    assert len(khaime_api.calls) == 1


def test_get_is_not_retried_on_an_unreadable_answer(khaime, khaime_api):
    khaime_api.get(SESSION_URL, body="not json", status=200)
    with pytest.raises(KhaimeResponseError):
        khaime.get_session("sess_1")
    assert len(khaime_api.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_post_server_error_is_not_retried(khaime, khaime_api, status):
    # Khaime may have created the session before failing; a retry could create a second one.
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "boom"}, status=status)
    with pytest.raises(KhaimeServerError):
        khaime.create_session(REQUEST)
    assert len(khaime_api.calls) == 1


def test_post_read_timeout_is_not_retried(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(KhaimeTimeoutError):
        khaime.create_session(REQUEST)
    assert len(khaime_api.calls) == 1


def test_post_connection_reset_after_sending_is_not_retried(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, body=requests.ConnectionError("connection reset by peer"))
    with pytest.raises(KhaimeConnectionError):
        khaime.create_session(REQUEST)
    assert len(khaime_api.calls) == 1


def test_post_connect_timeout_is_retried(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, body=requests.ConnectTimeout("connect timed out"))
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    assert khaime.create_session(REQUEST)["session_id"] == SEED_CREATE_RESPONSE["data"]["session_id"]
    assert len(khaime_api.calls) == 2


def test_post_rate_limited_is_retried(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "slow down"}, status=429)
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    assert khaime.create_session(REQUEST)["payment_url"]
    assert len(khaime_api.calls) == 2


def test_post_rate_limited_on_every_attempt_raises_after_max_retries(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "slow down"}, status=429)
    with pytest.raises(KhaimeRateLimitError):
        khaime.create_session(REQUEST)
    assert len(khaime_api.calls) == 3


def test_post_refused_connection_is_retried(sleeps):
    port = closed_port()
    khaime = KhaimeClient(
        API_KEY,
        f"http://127.0.0.1:{port}/api/v1/partner",
        timeout=(1, 1),
        max_retries=2,
        backoff_base=0.01,
        backoff_max=0.01,
        sleep=sleeps.append,
    )
    attempts = []
    send = khaime._http.request
    khaime._http.request = lambda *args, **kwargs: attempts.append(args) or send(*args, **kwargs)
    with pytest.raises(KhaimeConnectionError) as caught:
        khaime.create_session(REQUEST)
    assert not isinstance(caught.value, KhaimeTimeoutError)
    assert len(attempts) == 3
    assert len(sleeps) == 2


def test_other_transport_failure_is_a_connection_error_and_retried_on_get(khaime, khaime_api):
    khaime_api.get(SESSION_URL, body=requests.exceptions.ChunkedEncodingError("truncated"))
    khaime_api.get(SESSION_URL, json=GET_OK)
    assert khaime.get_session("sess_1")["status"] == "pending"
    assert len(khaime_api.calls) == 2


def test_other_transport_failure_on_post_is_not_retried(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, body=requests.exceptions.ChunkedEncodingError("truncated"))
    with pytest.raises(KhaimeConnectionError):
        khaime.create_session(REQUEST)
    assert len(khaime_api.calls) == 1


def test_zero_max_retries_means_one_attempt(khaime_api):
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=0)
    khaime_api.get(SESSION_URL, body=requests.ConnectionError("down"))
    with pytest.raises(KhaimeConnectionError):
        khaime.get_session("sess_1")
    assert len(khaime_api.calls) == 1


class UpperBoundRandom:
    """Stands in for `random`: records each jitter range and picks its upper half-point."""

    def __init__(self):
        self.ranges = []

    def uniform(self, low, high):
        self.ranges.append((low, high))
        return high / 2


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter(khaime_api, monkeypatch):
    jitter = UpperBoundRandom()
    monkeypatch.setattr(transport, "random", jitter)  # where the retry loop looks it up
    sleeps = []
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=5, backoff_base=1, backoff_max=3, sleep=sleeps.append)
    khaime_api.get(SESSION_URL, json={"success": False, "error": "boom"}, status=503)
    with pytest.raises(KhaimeServerError):
        khaime.get_session("sess_1")
    assert jitter.ranges == [(0, 1), (0, 2), (0, 3), (0, 3), (0, 3)]
    assert sleeps == [0.5, 1, 1.5, 1.5, 1.5]


def test_backoff_delays_are_random_and_never_above_the_cap(khaime_api):
    sleeps = []
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=8, backoff_base=1, backoff_max=2, sleep=sleeps.append)
    khaime_api.get(SESSION_URL, json={"success": False, "error": "boom"}, status=500)
    with pytest.raises(KhaimeServerError):
        khaime.get_session("sess_1")
    assert len(sleeps) == 8
    assert all(0 <= delay <= 2 for delay in sleeps)
    assert len(set(sleeps)) > 1


# -- timeouts -------------------------------------------------------------------------------------


def test_every_attempt_is_sent_with_the_configured_timeout(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime_api.get(SESSION_URL, json={"success": False, "error": "boom"}, status=500)
    khaime_api.get(SESSION_URL, json=GET_OK)
    khaime.create_session(REQUEST)
    khaime.get_session("sess_1")
    assert [call.request.req_kwargs["timeout"] for call in khaime_api.calls] == [(1, 2)] * 3


def test_get_session_uses_a_shorter_timeout_when_given(khaime, khaime_api):
    khaime_api.get(SESSION_URL, json=GET_OK)
    khaime.get_session("sess_1", timeout=(0.5, 0.5))
    assert khaime_api.calls[0].request.req_kwargs["timeout"] == (0.5, 0.5)


def test_shared_client_takes_its_timeout_from_settings(settings, khaime_api):
    settings.KHAIME = {**settings.KHAIME, "TIMEOUT": (4, 9)}
    khaime_api.get(SESSION_URL, json=GET_OK)
    get_client().get_session("sess_1")
    assert khaime_api.calls[0].request.req_kwargs["timeout"] == (4, 9)


# -- requests are validated before sending --------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "bad_field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 50.0}, "amount"),
        ({"amount": "5000"}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"product_name": None}, "product_name"),
        ({"product_id": "12"}, "product_id"),
        ({"product_id": True}, "product_id"),
        ({"product_id": -1}, "product_id"),
        ({"product_id": 0}, "product_id"),
        ({"customer": {"email": "not-an-email"}}, "customer.email"),
        ({"customer": {}}, "customer.email"),
        ({"metadata": {"order": {"id": 7}}}, "metadata.order"),
        ({"metadata": {"tags": ["a", "b"]}}, "metadata.tags"),
        ({"success_url": "/payments/success/"}, "success_url"),
        ({"cancel_url": "ftp://shop.test/cancel/"}, "cancel_url"),
    ],
)
def test_invalid_request_is_refused_before_sending_with_details(khaime, khaime_api, changes, bad_field):
    with pytest.raises(KhaimeRequestInvalid) as caught:
        khaime.create_session(SessionRequest(**request(**changes)))
    assert bad_field in caught.value.details
    assert len(khaime_api.calls) == 0


def test_metadata_that_is_not_a_mapping_is_refused(khaime, khaime_api):
    with pytest.raises(KhaimeRequestInvalid) as caught:
        khaime.create_session(SessionRequest(**request(metadata=["reference"])))
    assert "metadata" in caught.value.details


def test_customer_that_is_not_a_mapping_is_refused(khaime, khaime_api):
    with pytest.raises(KhaimeRequestInvalid) as caught:
        khaime.create_session(SessionRequest(**request(customer="buyer@example.com")))
    assert "customer.email" in caught.value.details


def test_product_id_alone_is_enough(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime.create_session(SessionRequest(**request(product_name=None, product_id=12)))
    assert json.loads(khaime_api.calls[0].request.body)["product_id"] == 12


def test_lowercase_currency_is_sent_uppercase(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime.create_session(SessionRequest(**request(currency="usd")))
    assert json.loads(khaime_api.calls[0].request.body)["currency"] == "USD"


def test_subscription_frequency_is_sent_when_given(khaime, khaime_api):
    khaime_api.post(SESSIONS_URL, json=SEED_CREATE_RESPONSE, status=201)
    khaime.create_session(SessionRequest(**request(subscription_frequency_key="monthly")))
    assert json.loads(khaime_api.calls[0].request.body)["subscription_frequency_key"] == "monthly"


# -- the key never leaks --------------------------------------------------------------------------


def test_repr_of_client_hides_the_key(khaime):
    assert API_KEY not in repr(khaime)
    assert API_KEY not in str(khaime)


def assert_no_key_in(error: BaseException):
    assert API_KEY not in str(error)
    assert API_KEY not in repr(error)
    assert API_KEY not in "".join(traceback.format_exception(error))


@pytest.mark.parametrize(
    "failure",
    [
        {"json": {"success": False, "error": "Invalid API key"}, "status": 401},
        {"json": {"success": False, "error": "boom"}, "status": 500},
        {"body": requests.ReadTimeout("read timed out")},
        {"body": requests.ConnectionError("connection reset")},
        {"body": "not json", "status": 200},
    ],
    ids=["401", "500", "timeout", "connection-error", "not-json"],
)
def test_key_never_appears_in_a_raised_exception(khaime, khaime_api, failure):
    khaime_api.get(SESSION_URL, **failure)
    with pytest.raises(KhaimeError) as caught:
        khaime.get_session("sess_1")
    assert_no_key_in(caught.value)


def test_key_echoed_back_by_khaime_never_appears_in_the_raised_exception(khaime, khaime_api):
    khaime_api.post(
        SESSIONS_URL,
        status=401,
        json={
            "success": False,
            "error": f"Invalid API key {API_KEY}",
            "details": {"key": API_KEY, "hint": [API_KEY]},
        },
    )
    with pytest.raises(KhaimeAuthenticationError) as caught:
        khaime.create_session(REQUEST)
    assert_no_key_in(caught.value)
    assert "Invalid API key" in caught.value.message


def test_key_never_appears_in_a_refused_connection_error(sleeps):
    khaime = KhaimeClient(API_KEY, f"http://127.0.0.1:{closed_port()}", max_retries=0, sleep=sleeps.append)
    with pytest.raises(KhaimeConnectionError) as caught:
        khaime.get_session("sess_1")
    assert_no_key_in(caught.value)


def test_key_never_appears_in_any_log_record(khaime, khaime_api, caplog, sleeps):
    caplog.set_level(logging.DEBUG)
    khaime_api.post(SESSIONS_URL, json={"success": False, "error": "Invalid API key"}, status=401)
    khaime_api.get(SESSION_URL, body=requests.ReadTimeout("read timed out"))
    khaime_api.get(SESSION_URL, json={"success": False, "error": "boom"}, status=503)
    with pytest.raises(KhaimeAuthenticationError):
        khaime.create_session(REQUEST)
    with pytest.raises(KhaimeServerError):
        khaime.get_session("sess_1")
    refused = KhaimeClient(API_KEY, f"http://127.0.0.1:{closed_port()}", max_retries=1, sleep=sleeps.append)
    with pytest.raises(KhaimeConnectionError):
        refused.create_session(REQUEST)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "retry" in logged  # the failing run was logged at all
    assert API_KEY not in logged


# -- one pooled session per configuration ---------------------------------------------------------


def test_get_client_reuses_one_pooled_session_for_the_same_settings():
    first, second = get_client(), get_client()
    assert first is second
    assert first._http is second._http
    assert isinstance(first._http, requests.Session)


def test_get_client_builds_a_new_session_for_new_settings(settings):
    before = get_client()
    with override_settings(KHAIME={**settings.KHAIME, "API_BASE_URL": "https://other.khaime.test/api"}):
        during = get_client()
        assert during.base_url == "https://other.khaime.test/api"
    assert during is not before
    assert during._http is not before._http
    assert get_client() is before


def test_get_client_reads_the_key_lazily(settings, khaime_api):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": "pk_sandbox_other_key"}
    khaime_api.get(SESSION_URL, json=GET_OK)
    get_client().get_session("sess_1")
    assert khaime_api.calls[0].request.headers["X-API-Key"] == "pk_sandbox_other_key"


def test_get_client_without_a_key_is_a_configuration_error(settings):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": ""}
    with pytest.raises(KhaimeConfigurationError):
        get_client()


def test_close_closes_the_pooled_session(khaime, monkeypatch):
    closed = []
    monkeypatch.setattr(khaime._http, "close", lambda: closed.append(True))
    khaime.close()
    assert closed == [True]


# -- Retry-After ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "waited"), [(None, 0.5), ("0", 0.5), ("2", 2.0), ("7", 7.0)])
def test_rate_limit_waits_for_retry_after_with_a_minimum(khaime, khaime_api, sleeps, header, waited):
    headers = {"Retry-After": header} if header is not None else {}
    khaime_api.get(SESSION_URL, json={"success": False, "error": "slow down"}, status=429, headers=headers)
    khaime_api.get(SESSION_URL, json=GET_OK)
    assert khaime.get_session("sess_1")["status"] == "pending"
    assert sleeps == [waited]


def test_rate_limit_with_an_http_date_retry_after_waits_until_then(khaime, khaime_api, sleeps):
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=4), usegmt=True)
    khaime_api.get(
        SESSION_URL, json={"success": False, "error": "slow down"}, status=429, headers={"Retry-After": when}
    )
    khaime_api.get(SESSION_URL, json=GET_OK)
    khaime.get_session("sess_1")
    assert 2 < sleeps[0] <= 4


def test_rate_limit_asking_for_longer_than_a_request_can_wait_is_raised_at_once(khaime, khaime_api, sleeps):
    khaime_api.post(
        SESSIONS_URL, json={"success": False, "error": "quota"}, status=429, headers={"Retry-After": "3600"}
    )
    with pytest.raises(KhaimeRateLimitError) as caught:
        khaime.create_session(REQUEST)
    assert caught.value.retry_after == 3600
    assert len(khaime_api.calls) == 1
    assert sleeps == []


def test_unreadable_retry_after_falls_back_to_the_minimum(khaime, khaime_api, sleeps):
    khaime_api.get(SESSION_URL, json={"success": False, "error": "x"}, status=429, headers={"Retry-After": "soon"})
    khaime_api.get(SESSION_URL, json=GET_OK)
    khaime.get_session("sess_1")
    assert sleeps == [0.5]


def test_longest_call_follows_the_clients_own_policy():
    khaime = KhaimeClient(API_KEY, API_BASE, timeout=(1, 2), max_retries=2, backoff_max=5)
    # Three attempts of 1 + 2 s, two retry waits and the first attempt's wait for another call's
    # 429, each at most MAX_RETRY_AFTER.
    assert khaime.longest_call() == 3 * 3 + client_module.MAX_RETRY_AFTER * 3 + 1
    assert KhaimeClient(API_KEY, API_BASE, timeout=(1, 2), max_retries=0).longest_call() == (
        4 + client_module.MAX_RETRY_AFTER
    )


# -- a 429 holds the whole client -------------------------------------------------------------


def slow_down(khaime_api, retry_after: str | None = None):
    headers = {"Retry-After": retry_after} if retry_after else {}
    khaime_api.get(SESSION_URL, json={"success": False, "error": "slow down"}, status=429, headers=headers)


def test_after_a_429_the_next_call_waits_out_retry_after_before_it_sends(khaime_api, sleeps):
    """Another buyer's call, a moment after a 429, would be refused too: it waits instead of
    spending a request of the quota on a certain 429."""
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=0, sleep=sleeps.append)
    slow_down(khaime_api, "2")
    with pytest.raises(KhaimeRateLimitError):
        khaime.get_session("sess_1")
    khaime_api.replace(responses.GET, SESSION_URL, json=GET_OK)

    assert khaime.get_session("sess_1")["status"] == "pending"
    assert sleeps == [pytest.approx(2, abs=0.2)]
    assert len(khaime_api.calls) == 2


def test_a_call_that_cannot_wait_out_the_hold_fails_without_sending(khaime_api, sleeps):
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=0, sleep=sleeps.append)
    slow_down(khaime_api, "5")
    with pytest.raises(KhaimeRateLimitError):
        khaime.get_session("sess_1")

    with pytest.raises(KhaimeRateLimitError, match="not sent") as refused:
        khaime.get_session("sess_1", deadline=1.0)  # a page load: at most a second
    assert refused.value.retry_after == pytest.approx(5, abs=0.2)
    assert len(khaime_api.calls) == 1
    assert sleeps == []


def test_an_hourly_quota_holds_calls_for_a_minute_then_one_asks_again(khaime_api, sleeps, monkeypatch):
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=0, sleep=sleeps.append)
    slow_down(khaime_api, "3600")
    with pytest.raises(KhaimeRateLimitError):
        khaime.get_session("sess_1")
    with pytest.raises(KhaimeRateLimitError, match="not sent"):
        khaime.get_session("sess_1")
    assert len(khaime_api.calls) == 1

    real_monotonic = transport.time.monotonic
    monkeypatch.setattr(transport.time, "monotonic", lambda: real_monotonic() + transport.MAX_HOLD)
    khaime_api.replace(responses.GET, SESSION_URL, json=GET_OK)
    assert khaime.get_session("sess_1")["status"] == "pending"
    assert len(khaime_api.calls) == 2


def test_a_429_without_retry_after_holds_the_minimum(khaime_api, sleeps):
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=0, sleep=sleeps.append)
    slow_down(khaime_api)
    with pytest.raises(KhaimeRateLimitError):
        khaime.get_session("sess_1")
    khaime_api.replace(responses.GET, SESSION_URL, json=GET_OK)
    khaime.get_session("sess_1")
    assert sleeps == [pytest.approx(client_module.MIN_RATE_LIMIT_DELAY, abs=0.1)]


def test_the_hold_is_shared_by_threads_of_one_client(khaime_api):
    """gthread workers share a process's client: one thread's 429 holds the others."""
    import threading

    slept = []
    khaime = KhaimeClient(API_KEY, API_BASE, max_retries=0, sleep=slept.append)
    slow_down(khaime_api, "3")
    with pytest.raises(KhaimeRateLimitError):
        khaime.get_session("sess_1")
    khaime_api.replace(responses.GET, SESSION_URL, json=GET_OK)
    threads = [threading.Thread(target=khaime.get_session, args=("sess_1",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(slept) == 4 and all(wait > 2.5 for wait in slept)


def test_get_client_max_retries_override_is_a_separate_shared_client():
    assert get_client(max_retries=0).max_retries == 0
    assert get_client(max_retries=0) is get_client(max_retries=0)
    assert get_client() is not get_client(max_retries=0)


# -- the proxy and CA-bundle environment, read once ------------------------------------------


def test_the_proxy_and_ca_bundle_environment_is_read_when_the_client_is_made(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/company.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    khaime = KhaimeClient(API_KEY, "https://api.khaime.example/api/v1/partner")

    assert khaime._http.proxies["https"] == "http://proxy.example:3128"
    assert khaime._http.verify == "/etc/ssl/company.pem"
    assert khaime._http.trust_env is False


def test_no_proxy_for_khaimes_host_means_no_proxy(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.khaime.example")
    khaime = KhaimeClient(API_KEY, "https://api.khaime.example/api/v1/partner")

    assert "https" not in khaime._http.proxies


def test_requests_do_not_read_the_environment_again(khaime, khaime_api, monkeypatch):
    """requests re-reads and parses the whole environment on every call when trust_env is on."""
    calls = []
    real = requests.utils.get_environ_proxies
    monkeypatch.setattr(requests.utils, "get_environ_proxies", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", requests.utils.get_environ_proxies)
    khaime_api.get(f"{API_BASE}/payments/sessions/cs_1", json={"data": {"session_id": "cs_1", "status": "pending"}})
    khaime.get_session("cs_1")
    assert calls == []

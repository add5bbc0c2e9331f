"""``KhaimeClient``: the only code that speaks HTTP to Khaime.

- One pooled ``requests.Session`` per configuration (keep-alive saves a TLS handshake per call).
- A (connect, read) timeout on every call.
- Bounded retries with capped exponential backoff and full jitter. GET is safe to repeat, so it
  is retried on connection errors, timeouts, 429 and 5xx. Khaime documents no idempotency key,
  so a POST is retried only where Khaime cannot have acted: the connection was never made, or
  Khaime answered 429. A 429 waits at least ``MIN_RATE_LIMIT_DELAY`` and honours ``Retry-After``
  up to ``MAX_RETRY_AFTER``; a longer one is raised at once.
- Our own retry loop, not urllib3's ``Retry``: ``Retry`` decides per method from one
  ``allowed_methods`` list, so it cannot retry a POST on 429 while refusing it on 5xx and read
  errors without a second ``Retry`` per request; it sleeps inside urllib3, where the wait is
  neither logged with Khaime's reason nor injectable in tests; and after the last attempt it
  hands back a response or a ``MaxRetryError`` instead of the typed error of that attempt. The
  loop below is two short methods (``_request``, ``_retry_delay``).
- Requests arrive validated (a ``SessionRequest`` cannot be invalid); responses are validated
  before they are trusted.
- Every failure is a typed ``KhaimeError`` (see exceptions.py). The API key never appears in a
  log record, an exception or a repr.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from . import __version__
from .conf import khaime_settings
from .exceptions import (
    KhaimeAuthenticationError,
    KhaimeConfigurationError,
    KhaimeConnectionError,
    KhaimeError,
    KhaimeNotFoundError,
    KhaimeRateLimitError,
    KhaimeRequestInvalidError,
    KhaimeResponseError,
    KhaimeServerError,
    KhaimeTimeoutError,
    KhaimeValidationError,
)
from .session_request import SessionRequest

logger = logging.getLogger(__name__)

#: A 429 is retried after at least this long, whatever Retry-After says.
MIN_RATE_LIMIT_DELAY = 0.5
#: A 429 whose Retry-After asks for longer than this is raised at once, not waited out.
MAX_RETRY_AFTER = 10.0

CREATE_SESSION_FIELDS = ("session_id", "payment_url", "status")
GET_SESSION_FIELDS = ("session_id", "status")
CREATE_REFUND_FIELDS = ("refund_id", "status")


class KhaimeClient:
    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: tuple[float, float] = (3.05, 10),
        max_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not api_key:
            raise KhaimeConfigurationError("KHAIME['API_KEY'] is not set.")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._api_key = api_key  # only to scrub it from Khaime's error messages
        self._http = requests.Session()
        self._http.headers.update(
            {
                "X-API-Key": api_key,
                "Accept": "application/json",
                "User-Agent": f"khaime-django/{__version__}",
            }
        )

    def __repr__(self) -> str:
        return f"<KhaimeClient {self.base_url}>"

    # -- the API ------------------------------------------------------------------------------

    def create_session(self, request: SessionRequest) -> dict:
        """``POST /payments/sessions``; returns Khaime's ``data`` (session_id, payment_url, ...)."""
        data = self._request("POST", "/payments/sessions", json=request.to_body())
        _require_fields(data, CREATE_SESSION_FIELDS)
        return data

    def get_session(self, session_id: str, *, timeout: tuple[float, float] | None = None) -> dict:
        """``GET /payments/sessions/{session_id}``; returns Khaime's ``data`` (status, ...)."""
        if not session_id:
            raise KhaimeRequestInvalidError("A session id is required.", details={"session_id": "required"})
        data = self._request("GET", f"/payments/sessions/{quote(session_id, safe='')}", timeout=timeout)
        _require_fields(data, GET_SESSION_FIELDS)
        return data

    def longest_call(self) -> float:
        """The longest one call can take, retries and waits included (seconds)."""
        connect, read = self.timeout
        return (connect + read) * (self.max_retries + 1) + self._longest_wait() * self.max_retries + 1

    def create_refund(self, transaction_id: str, *, amount: int | None = None, reason: str = "") -> dict:
        """``POST /refunds``; returns Khaime's ``data`` (``refund_id``, ``status``, ``amount``,
        ``currency``). ``amount`` in minor units (omitted: all that remains). Like every POST it is
        retried only where Khaime cannot have acted (no connection made, or 429): a timeout or a
        5xx after sending raises, and the caller must treat the refund as possibly made."""
        if not transaction_id:
            raise KhaimeRequestInvalidError("A transaction id is required.", details={"transaction_id": "required"})
        body: dict = {"transaction_id": transaction_id}
        if amount is not None:
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise KhaimeRequestInvalidError(
                    "A refund amount is a positive integer in minor units.", details={"amount": "invalid"}
                )
            body["amount"] = amount
        if reason:
            body["reason"] = reason
        data = self._request("POST", "/refunds", json=body)
        _require_fields(data, CREATE_REFUND_FIELDS)
        return data

    def close(self) -> None:
        self._http.close()

    # -- transport ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, json=None, timeout=None) -> dict:
        url = self.base_url + path
        attempt = 0
        while True:
            try:
                return self._send_once(method, url, json=json, timeout=timeout or self.timeout)
            except KhaimeError as error:
                delay = self._retry_delay(method, error, attempt)
                if delay is None:
                    raise
                logger.warning(
                    "Khaime %s %s failed (%s); retry %d of %d in %.2fs",
                    method,
                    path,
                    error,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                self._sleep(delay)
                attempt += 1

    def _send_once(self, method: str, url: str, *, json, timeout) -> dict:
        started = time.monotonic()
        try:
            response = self._http.request(method, url, json=json, timeout=timeout)
        except requests.Timeout as exc:
            error: KhaimeConnectionError = KhaimeTimeoutError(f"Khaime did not answer within {timeout}s.")
            error.never_sent = isinstance(exc, requests.ConnectTimeout)
            raise error from None
        except requests.ConnectionError as exc:
            error = KhaimeConnectionError(f"Khaime could not be reached: {type(_root_cause(exc)).__name__}.")
            error.never_sent = _connection_never_made(exc)
            raise error from None
        except requests.RequestException as exc:
            raise KhaimeConnectionError(f"Request to Khaime failed: {type(exc).__name__}.") from None
        logger.debug(
            "Khaime %s %s -> %s in %.0f ms",
            method,
            urlsplit(url).path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        try:
            return _parse_response(response)
        except KhaimeRateLimitError as error:
            error.retry_after = _retry_after(response.headers.get("Retry-After"))
            _redact(error, self._api_key)
            raise
        except KhaimeError as error:
            # Khaime's own words go into logs, last_error and admin messages: if it ever echoes
            # the key back ("Invalid API key pk_live_..."), it must not travel on from here.
            _redact(error, self._api_key)
            raise

    def _retry_delay(self, method: str, error: KhaimeError, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to raise it now."""
        if attempt >= self.max_retries or not self._may_retry(method, error):
            return None
        delay = self._backoff(attempt)
        if isinstance(error, KhaimeRateLimitError):
            wanted = max(error.retry_after or 0.0, MIN_RATE_LIMIT_DELAY)
            if wanted > MAX_RETRY_AFTER:
                return None  # an hourly quota: no request should hold a buyer that long
            delay = max(delay, wanted)
        return delay

    @staticmethod
    def _may_retry(method: str, error: KhaimeError) -> bool:
        if isinstance(error, KhaimeRateLimitError):
            return True  # Khaime refused before doing anything.
        if method == "GET":
            return error.transient
        # A POST may have created a session even if we never saw the answer: only retry when the
        # connection was never established.
        return isinstance(error, KhaimeConnectionError) and error.never_sent

    def _longest_wait(self) -> float:
        return max(float(self.backoff_max), MAX_RETRY_AFTER)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return random.uniform(0, ceiling)  # noqa: S311 - retry jitter, not a secret


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _redact(error: KhaimeError, secret: str) -> None:
    def scrub(value):
        if isinstance(value, str):
            return value.replace(secret, "[redacted]")
        if isinstance(value, Mapping):
            return {scrub(key): scrub(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [scrub(item) for item in value]
        return value

    if secret:
        error.message, error.details = scrub(error.message), scrub(error.details)
        error.args = tuple(scrub(arg) for arg in error.args)


def _causes(exc: BaseException):
    """The exception and what it wraps: requests -> urllib3 MaxRetryError.reason -> socket error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        elif current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__ or current.__context__


def _root_cause(exc: BaseException) -> BaseException:
    *_, last = _causes(exc)
    return last


def _connection_never_made(exc: requests.ConnectionError) -> bool:
    """True when the TCP/TLS connection was never established, so Khaime cannot have acted."""
    return any(
        isinstance(cause, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError)) for cause in _causes(exc)
    )


def _parse_response(response: requests.Response) -> dict:
    status = response.status_code
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        if status >= 500:
            raise KhaimeServerError("Khaime failed with a non-JSON answer.", status_code=status)
        if status == 429:
            raise KhaimeRateLimitError("Khaime rate limit exceeded.", status_code=status)
        raise KhaimeResponseError("Khaime's answer is not a JSON object.", status_code=status)

    if 200 <= status < 300:
        if payload.get("success") is False:
            raise KhaimeResponseError(_error_message(payload), status_code=status, details=payload.get("details"))
        data = payload.get("data")
        if not isinstance(data, dict):
            raise KhaimeResponseError("Khaime's answer has no data object.", status_code=status)
        return data

    message = _error_message(payload)
    details = payload.get("details") if isinstance(payload.get("details"), dict) else {}
    error_class: type[KhaimeError]
    if status == 401 or status == 403:
        error_class = KhaimeAuthenticationError
    elif status in (400, 422):
        error_class = KhaimeValidationError
    elif status == 404:
        error_class = KhaimeNotFoundError
    elif status == 429:
        error_class = KhaimeRateLimitError
    elif status >= 500:
        error_class = KhaimeServerError
    else:
        error_class = KhaimeResponseError
    raise error_class(message, status_code=status, details=details)


def _error_message(payload: dict) -> str:
    # Khaime puts the reason in `error`, some endpoints in `message` (docs/khaime-api.md).
    for key in ("error", "message"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return "Khaime returned an error."


def _require_fields(data: dict, fields: tuple[str, ...]) -> None:
    missing = [field for field in fields if not data.get(field)]
    if missing:
        raise KhaimeResponseError(
            "Khaime's answer lacks " + ", ".join(missing) + ".", details={field: "missing" for field in missing}
        )


_clients: dict[tuple, KhaimeClient] = {}
_clients_lock = threading.Lock()


def get_client(*, max_retries: int | None = None) -> KhaimeClient:
    """The shared client for the current settings (one connection pool per configuration).
    ``max_retries`` overrides ``KHAIME["MAX_RETRIES"]`` (khaime_sync asks with 0)."""
    config = (
        khaime_settings.API_KEY,
        khaime_settings.API_BASE_URL,
        tuple(khaime_settings.TIMEOUT),
        int(khaime_settings.MAX_RETRIES) if max_retries is None else max_retries,
        khaime_settings.BACKOFF_BASE,
        khaime_settings.BACKOFF_MAX,
    )
    client = _clients.get(config)
    if client is None:
        with _clients_lock:
            client = _clients.get(config)
            if client is None:
                api_key, base_url, timeout, max_retries, backoff_base, backoff_max = config
                client = KhaimeClient(
                    api_key,
                    base_url,
                    timeout=timeout,
                    max_retries=max_retries,
                    backoff_base=backoff_base,
                    backoff_max=backoff_max,
                )
                _clients[config] = client
    return client

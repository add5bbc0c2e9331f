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
from urllib.parse import quote, urlencode, urlsplit

import requests
from urllib3 import exceptions as urllib3_exceptions
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
from .money import is_amount
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
        _check_created_session(data, request)
        return data

    def get_session(
        self, session_id: str, *, timeout: tuple[float, float] | None = None, deadline: float | None = None
    ) -> dict:
        """``GET /payments/sessions/{session_id}``; returns Khaime's ``data`` (status, ...).

        ``deadline`` (seconds) bounds the whole call, retries, waits and the body included: a
        buyer-facing page passes it so a slow Khaime cannot hold the buyer longer."""
        if not session_id:
            raise KhaimeRequestInvalidError("A session id is required.", details={"session_id": "required"})
        data = self._request(
            "GET", f"/payments/sessions/{quote(session_id, safe='')}", timeout=timeout, deadline=deadline
        )
        _require_fields(data, GET_SESSION_FIELDS)
        return data

    def list_subscriptions(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        status: str | None = None,
        sort_by: str = "created_at",
        sort_order: str = "asc",
    ) -> dict:
        """``GET /subscriptions``: one page, ``{subscriptions: [...], total, limit, offset}``.
        Oldest first by default, so new subscriptions join the end and offsets stay put."""
        query = {"limit": limit, "offset": offset, "sort_by": sort_by, "sort_order": sort_order}
        if status:
            query["status"] = status
        data = self._request("GET", f"/subscriptions?{urlencode(query)}")
        if not isinstance(data.get("subscriptions"), list):
            raise KhaimeResponseError("Khaime's answer lacks subscriptions.", details={"subscriptions": "missing"})
        return data

    def get_subscription(self, subscription_id: str) -> dict:
        """``GET /subscriptions/{id}``: the subscription object with ``payment_history``."""
        if not subscription_id:
            raise KhaimeRequestInvalidError("A subscription id is required.", details={"subscription_id": "required"})
        data = self._request("GET", f"/subscriptions/{quote(subscription_id, safe='')}")
        _require_fields(data, ("id", "status"))
        return data

    def longest_call(self) -> float:
        """The longest one call can take, retries and waits included (seconds)."""
        return longest_call(self.timeout, self.max_retries, self.backoff_max)

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

    def _request(self, method: str, path: str, *, json=None, timeout=None, deadline: float | None = None) -> dict:
        url = self.base_url + path
        ends = None if deadline is None else time.monotonic() + deadline
        attempt = 0
        while True:
            try:
                return self._send_once(method, url, json=json, timeout=timeout or self.timeout, ends=ends)
            except KhaimeError as error:
                delay = self._retry_delay(method, error, attempt)
                if delay is not None and ends is not None and time.monotonic() + delay >= ends:
                    delay = None  # no time left for another attempt
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

    def _send_once(self, method: str, url: str, *, json, timeout, ends: float | None = None) -> dict:
        started = time.monotonic()
        try:
            if ends is None:
                response = self._http.request(method, url, json=json, timeout=timeout)
            else:
                response = self._request_until(ends, method, url, json=json, timeout=timeout)
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

    def _request_until(self, ends: float, method: str, url: str, *, json, timeout) -> requests.Response:
        """One request that ends by ``ends`` (a ``time.monotonic()`` value) however Khaime
        answers: each socket wait is capped by the time left, and the body is read in chunks that
        stop at the deadline (a (connect, read) timeout alone bounds each wait, not the sum)."""
        remaining = ends - time.monotonic()
        if remaining <= 0:
            raise requests.ReadTimeout("deadline passed before the request")
        connect, read = timeout
        response = self._http.request(
            method, url, json=json, timeout=(min(connect, remaining), min(read, remaining)), stream=True
        )
        chunks = []
        try:
            while True:
                remaining = ends - time.monotonic()
                if remaining <= 0:
                    raise requests.ReadTimeout("deadline passed while reading the answer")
                chunk = _read_some(response, remaining)
                if not chunk:
                    break
                chunks.append(chunk)
        except (OSError, urllib3_exceptions.HTTPError) as exc:
            response.close()  # a half-read answer: the connection cannot be reused
            raise requests.ReadTimeout(f"reading the answer failed: {type(exc).__name__}") from exc
        except BaseException:
            response.close()
            raise
        response.raw.release_conn()  # read to the end: back to the pool for the next call
        # What requests itself does once the body is read, so .json() and .text work as usual.
        response._content = b"".join(chunks)
        return response

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

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return random.uniform(0, ceiling)  # noqa: S311 - retry jitter, not a secret


def _read_some(response: requests.Response, remaining: float) -> bytes:
    """What has arrived of the body, waiting at most ``remaining`` seconds for it (one socket read
    where urllib3 offers ``read1``, so a body sent a byte at a time cannot hold us past it)."""
    raw = response.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(remaining, 0.001))
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        return read1(16384, decode_content=True)
    return raw.read(1, decode_content=True)


def longest_call(timeout: tuple[float, float], max_retries: int, backoff_max: float) -> float:
    """The longest one call can take with this timeout and retry policy, waits included (seconds)."""
    connect, read = timeout
    longest_wait = max(float(backoff_max), MAX_RETRY_AFTER)
    return (connect + read) * (max_retries + 1) + longest_wait * max_retries + 1


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


#: Optional fields of the create answer -> the types each may have (None: Khaime sent null).
_CREATED_SESSION_TYPES: dict[str, tuple[type, ...]] = {
    "session_id": (str,),
    "payment_url": (str,),
    "status": (str,),
    "stripe_session_id": (str, type(None)),
    "expires_at": (str, type(None)),
    "mode": (str, type(None)),
    "payment_type": (str, type(None)),
    "currency": (str, type(None)),
    "fee_details": (dict, type(None)),
}
_FEE_AMOUNTS = ("base_product_price", "transaction_fee", "total_amount")
#: The widths of the columns these fields are stored in.
_LONGEST_TEXT = {"session_id": 255, "stripe_session_id": 255, "payment_url": 2048, "payment_type": 32}


def _check_created_session(data: dict, request: SessionRequest) -> None:
    """Refuse a create answer with a field of the wrong type, or one that does not describe what
    we asked for: another currency, a base price other than the requested amount, or a total
    below it. Stored as it is, such an answer would become what a payment is checked against."""
    problems: dict[str, str] = {}
    for name, types in _CREATED_SESSION_TYPES.items():
        if name in data and not isinstance(data[name], types):
            problems[name] = f"is a {type(data[name]).__name__}"
    for name, longest in _LONGEST_TEXT.items():
        if isinstance(data.get(name), str) and len(data[name]) > longest:
            problems[name] = f"is longer than {longest} characters"
    if "amount" in data and not is_amount(data["amount"]):
        problems["amount"] = "is not a non-negative integer"
    fee_details = data.get("fee_details")
    fees: dict = fee_details if isinstance(fee_details, dict) else {}
    for name in _FEE_AMOUNTS:
        if fees.get(name) is not None and not is_amount(fees[name]):
            problems[f"fee_details.{name}"] = "is not a non-negative integer"
    if not problems:
        problems = _mismatches(data, fees, request)
    if problems:
        raise KhaimeResponseError(
            "Khaime's answer does not match the session we asked for: "
            + "; ".join(f"{name} {why}" for name, why in problems.items())
            + ".",
            details=problems,
        )


def _mismatches(data: dict, fees: dict, request: SessionRequest) -> dict[str, str]:
    problems: dict[str, str] = {}
    currency = data.get("currency")
    if currency is not None and currency.upper() != request.currency.upper():
        problems["currency"] = f"is {currency[:8]}, not {request.currency}"
    base = fees.get("base_product_price")
    if base is not None and base != request.amount:
        problems["fee_details.base_product_price"] = f"is {base}, not the requested {request.amount}"
    for name, total in (("amount", data.get("amount")), ("fee_details.total_amount", fees.get("total_amount"))):
        if total is not None and total < request.amount:
            problems[name] = f"is {total}, below the requested {request.amount}"
    totals = {data.get("amount"), fees.get("total_amount")} - {None}
    if len(totals) > 1:
        problems["amount"] = f"is {data['amount']}, but fee_details.total_amount is {fees['total_amount']}"
    return problems


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

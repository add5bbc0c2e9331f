"""Khaime webhooks: signature verification and event parsing. No database, no HTTP here:
the view (webhook_views.py) reads the request, services.inbox records and applies the event.
The Khaime facts used here are in docs/khaime-api.md, "Webhooks".

Khaime signs the exact raw body: ``X-Khaime-Signature`` is the lowercase hex HMAC-SHA256 of the
body bytes, keyed with the whole ``whsec_...`` secret. There is no timestamp to check; replays
are harmless because ``event_id`` is de-duplicated by a unique constraint.

Two payload versions exist. From ``2026-03-27`` the envelope always has ``api_version``
and ``business_id``, and a payment's ``data.amounts.customer_paid`` is a MoneyAmount
(``{"amount": 5320, "currency": "USD"}``). Before that there is no ``api_version`` and the amount
is flat (``data.amount`` / ``data.currency``). Khaime has not published the full ``data`` schema,
so every accessor below tolerates missing or oddly typed fields and answers None.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from .exceptions import WebhookPayloadError, WebhookSignatureError
from .timestamps import parse_timestamp

#: Django's names for Khaime's headers (request.META keys).
SIGNATURE_HEADER = "HTTP_X_KHAIME_SIGNATURE"
API_VERSION_HEADER = "HTTP_X_KHAIME_API_VERSION"
EVENT_ID_HEADER = "HTTP_X_KHAIME_EVENT_ID"

# Column widths of WebhookEvent; a longer value is a malformed event, not our failure.
_MAX_EVENT_ID = 255
_MAX_EVENT_TYPE = 64
_MAX_API_VERSION = 32

# Where a payment event may carry Khaime's session id (Khaime does not document the key).
_SESSION_ID_PATHS = (
    ("session_id",),
    ("payment_session_id",),
    ("checkout_session_id",),
    ("session", "id"),
    ("session",),
    ("metadata", "session_id"),
)


def signature_for(body: bytes, secret: str) -> str:
    """What Khaime sends in ``X-Khaime-Signature`` for ``body`` signed with ``secret``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, signature: str | None, secrets: Sequence[str]) -> None:
    """Raise :class:`WebhookSignatureError` unless ``signature`` is ``body``'s HMAC under one of
    ``secrets`` (several while rotating). The message says which check failed, never a secret."""
    secrets = [secret for secret in secrets or () if isinstance(secret, str) and secret]
    if not secrets:
        raise WebhookSignatureError("no webhook secret is configured (KHAIME['WEBHOOK_SECRETS'] is empty)")
    if not signature:
        raise WebhookSignatureError("the X-Khaime-Signature header is missing")
    received = signature.strip().lower().encode("utf-8", "replace")
    for secret in secrets:
        if hmac.compare_digest(signature_for(body, secret).encode("ascii"), received):
            return
    raise WebhookSignatureError(
        f"X-Khaime-Signature matches none of the {len(secrets)} configured secret(s); "
        "was the body re-serialised, or is the secret from another API key?"
    )


@dataclass(frozen=True)
class KhaimeEvent:
    """A verified webhook event. ``payload`` is the whole parsed envelope."""

    event_id: str
    event_type: str
    api_version: str
    payload: dict[str, Any]

    @classmethod
    def from_payload(cls, payload: Any, *, api_version_header: str = "") -> KhaimeEvent:
        """Check the envelope and build the event; :class:`WebhookPayloadError` when unusable."""
        if not isinstance(payload, dict):
            raise WebhookPayloadError("the event is not a JSON object")
        event_id = payload.get("event_id")
        event_type = payload.get("event_type")
        if not isinstance(event_id, str) or not event_id.strip():
            raise WebhookPayloadError("the event has no event_id")
        if not isinstance(event_type, str) or not event_type.strip():
            raise WebhookPayloadError("the event has no event_type")
        if len(event_id) > _MAX_EVENT_ID or len(event_type) > _MAX_EVENT_TYPE:
            raise WebhookPayloadError("event_id or event_type is too long")
        api_version = payload.get("api_version")
        if not isinstance(api_version, str):
            api_version = api_version_header or ""
        return cls(
            event_id=event_id,
            event_type=event_type,
            api_version=api_version[:_MAX_API_VERSION],
            payload=payload,
        )

    @property
    def data(self) -> Mapping[str, Any]:
        data = self.payload.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def is_live(self) -> bool | None:
        value = self.payload.get("is_live")
        return value if isinstance(value, bool) else None

    @property
    def reference(self) -> uuid.UUID | None:
        """Our own ``PaymentSession.reference``, echoed back in ``data.metadata.reference``."""
        value = _dig(self.data, ("metadata", "reference"))
        if not isinstance(value, str):
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            return None

    @property
    def session_ids(self) -> list[str]:
        """Candidate Khaime session ids (``sess_...``), most likely first."""
        found: list[str] = []
        for path in _SESSION_ID_PATHS:
            value = _dig(self.data, path)
            if isinstance(value, str) and value and value not in found:
                found.append(value)
        # `data.id` is the payment's id in the emulator, but a session id in some accounts.
        payment_id = self.data.get("id")
        if isinstance(payment_id, str) and payment_id.startswith("sess_") and payment_id not in found:
            found.append(payment_id)
        return found

    @property
    def paid(self) -> tuple[int, str] | None:
        """What the buyer paid as (minor units, currency), or None when the event does not say.

        2026-03-27: ``data.amounts.customer_paid`` ({"amount", "currency"}); before: flat
        ``data.amount`` / ``data.currency``. Either shape is read whatever ``api_version`` says.
        """
        for amount, currency in (
            (
                _dig(self.data, ("amounts", "customer_paid", "amount")),
                _dig(self.data, ("amounts", "customer_paid", "currency")),
            ),
            (self.data.get("amount"), self.data.get("currency")),
        ):
            if _is_int(amount) and isinstance(currency, str) and currency:
                return amount, currency.upper()
        return None

    @property
    def paid_at(self) -> datetime | None:
        for value in (self.data.get("paid_at"), self.payload.get("occurred_at")):
            parsed = parse_timestamp(value)
            if parsed is not None:
                return parsed
        return None


#: The deepest nesting of objects and arrays a body may have. Khaime's envelopes are a few levels
#: deep; a bound far above that keeps every later step (storing, the admin's pretty-print) away
#: from a recursion limit, whatever a signed body holds.
MAX_NESTING = 32


def parse_event(body: bytes, *, api_version_header: str = "") -> KhaimeEvent:
    """The verified ``body`` as a :class:`KhaimeEvent`; :class:`WebhookPayloadError` when it is
    not a JSON object with ``event_id`` and ``event_type``, or nests deeper than ``MAX_NESTING``."""
    try:
        payload = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise WebhookPayloadError("the body is not JSON") from None
    # The walk below is needed only when the body could hold a NUL ("\u0000" is the only way JSON
    # can write one) or nest deeper than MAX_NESTING (it cannot with fewer openers than that).
    if b"\\u0000" in body or body.count(b"{") + body.count(b"[") > MAX_NESTING:
        payload = _checked(payload)
    return KhaimeEvent.from_payload(payload, api_version_header=api_version_header)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise WebhookPayloadError(_NOT_FINITE)
    return value


def _no_constant(text: str) -> Any:
    raise WebhookPayloadError(_NOT_FINITE)  # NaN, Infinity, -Infinity


_NOT_FINITE = "the body holds a number that is not finite (NaN, Infinity or too large)"
#: json.loads, refusing numbers that are not finite as it reads them.
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)


def _checked(payload: Any) -> Any:
    """``payload`` with every NUL in its strings replaced (JSON allows "\u0000" in strings;
    PostgreSQL's jsonb does not, so storing it would fail every delivery of a signed, valid event
    with a 500: it is stored as U+FFFD instead). Iterative, and refuses a payload nested deeper
    than ``MAX_NESTING`` with :class:`WebhookPayloadError`."""
    root: list[Any] = [payload]
    # (container, key or index, value, depth of value)
    pending: list[tuple[Any, Any, Any, int]] = [(root, 0, payload, 0)]
    while pending:
        parent, key, value, depth = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                parent[key] = value.replace("\x00", "\ufffd")
        elif isinstance(value, (dict, list)):
            if depth >= MAX_NESTING:
                raise WebhookPayloadError(f"the body nests objects or arrays deeper than {MAX_NESTING} levels")
            if isinstance(value, dict):
                if any("\x00" in name for name in value):
                    value = {name.replace("\x00", "\ufffd"): item for name, item in value.items()}
                    parent[key] = value
                pending.extend((value, name, item, depth + 1) for name, item in value.items())
            else:
                pending.extend((value, index, item, depth + 1) for index, item in enumerate(value))
    return root[0]


def _dig(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)

"""Webhook events: the envelope, the ``data`` of each event family, and the signature.

Every event is serialised to bytes once and signed with those bytes; the same bytes go out on
every attempt, every duplicate and every redelivery, as Khaime's receivers verify the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from .timestamps import iso_seconds

API_VERSION = "2026-03-27"
BUSINESS_ID = "1042"


def khaime_sign(body: bytes, secret: str) -> str:
    """``X-Khaime-Signature`` for ``body``: lowercase hex HMAC-SHA256 keyed with the whole secret."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    body: bytes

    def envelope(self) -> dict:
        return json.loads(self.body)

    def summary(self) -> dict:
        envelope = self.envelope()
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "occurred_at": envelope["occurred_at"],
            "object_id": envelope["data"].get("id"),
        }


def make_event(event_type: str, data: dict, *, is_live: bool, occurred_at: datetime) -> Event:
    """A 2026-03-27 envelope around ``data`` (already JSON-ready and owned by the event)."""
    event_id = f"evt_{uuid.uuid4()}"
    envelope = {
        "api_version": API_VERSION,
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": iso_seconds(occurred_at),
        "is_live": is_live,
        "business_id": BUSINESS_ID,
        "data": data,
    }
    body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Event(event_id, event_type, body)

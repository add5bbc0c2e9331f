"""Khaime's timestamps, read the same way by the client's callers and the webhook parser."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime


def parse_timestamp(value: Any) -> datetime | None:
    """An aware datetime from one of Khaime's ISO-8601 timestamps ("2026-01-16T22:00:00.000Z"),
    or None for a missing or unreadable one (Khaime's schemas are not fully documented)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed

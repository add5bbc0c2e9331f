"""UTC timestamps in the two shapes Khaime's documentation shows."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_millis(moment: datetime | None) -> str | None:
    """Session fields: ``2026-01-16T22:00:00.000Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_seconds(moment: datetime | None) -> str | None:
    """Webhook fields: ``2026-03-27T14:32:00Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

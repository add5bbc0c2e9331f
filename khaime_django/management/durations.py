"""Durations on the command line: ``90`` (in the command's default unit), ``10m``, ``6h``, ``30d``, ``2w``."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PATTERN = re.compile(r"^\s*(\d+)\s*([a-z]?)\s*$")


def duration(default_unit: str, units: str = "smhdw"):
    """An argparse ``type`` reading a non-negative duration; a bare number is in ``default_unit``."""

    def parse(text: str) -> timedelta:
        match = _PATTERN.match(text.lower())
        unit = (match.group(2) or default_unit) if match else ""
        if not match or unit not in units:
            allowed = ", ".join(f"{unit}" for unit in units)
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration: a whole number, optionally followed by one of {allowed}"
            )
        return timedelta(**{_UNITS[unit]: int(match.group(1))})

    return parse


def describe(value: timedelta) -> str:
    """``30 days``, ``36 hours``, ``10 minutes``: a duration as a person would write it."""
    seconds = int(value.total_seconds())
    for name, size in (
        ("week", 604800),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {name}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"

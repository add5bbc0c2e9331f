"""What a webhook event handler is: the interface between the inbox and each event family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models import WebhookEvent
from ..webhooks import KhaimeEvent

#: The longest error or detail text stored on a webhook event.
MAX_ERROR_TEXT = 10_000


@dataclass(frozen=True)
class Applied:
    """What applying one event did: its outcome (a ``WebhookOutcome``), the row it was about
    (a ``PaymentSession`` today; stored on the event as ``session``), and a line for the admin."""

    outcome: str
    session: Any = None
    detail: str = ""


#: ``handler(record, event, source)``: apply ``event`` (stored as ``record``) inside the inbox's
#: transaction, changing state only through ``transitions.transition``.
EventHandler = Callable[[WebhookEvent, KhaimeEvent, str], Applied]

"""What Khaime (the emulator) knows: the truth the local ledger is checked against.

``read_truth`` is the one place that reads it, through the emulator's control API: its one
listing call (``/_emulator/truth``) where the emulator has it, else ``/sessions`` and
``/events``; the delivery attempts from ``/deliveries``.
"""

from __future__ import annotations

import re
import time
import urllib.error
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

#: A Partner API answer in the emulator's log: its time and status.
_PARTNER_ANSWER = re.compile(
    r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ "[A-Z]+ /api/v1/partner[^"]*" (\d{3}) ', re.M
)


@dataclass(frozen=True)
class Truth:
    sessions: list[dict]  # every session Khaime created, as /_emulator/sessions shows it
    events: list[dict]  # every webhook event Khaime emitted (envelopes)
    deliveries: list[dict]  # every delivery attempt: delivery_id, event_id, attempt, status_code, succeeded
    payments: list[dict] = field(default_factory=list)  # where the emulator lists them (its /truth)
    subscriptions: list[dict] = field(default_factory=list)
    refunds: list[dict] = field(default_factory=list)

    def sessions_by_id(self) -> dict[str, dict]:
        return {session["session_id"]: session for session in self.sessions}

    def delivered_event_ids(self) -> set[str]:
        """Events the app acknowledged (a 2xx) at least once."""
        return {attempt["event_id"] for attempt in self.deliveries if attempt.get("succeeded")}

    def finished_deliveries(self, max_attempts: int) -> int:
        """Deliveries that succeeded or used their last attempt."""
        last: dict[int, dict] = {}
        for attempt in self.deliveries:
            last[attempt["delivery_id"]] = attempt
        return sum(1 for a in last.values() if a.get("succeeded") or a.get("attempt", 0) >= max_attempts)

    def delivery_statuses(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for attempt in self.deliveries:
            counts[str(attempt.get("status_code") or attempt.get("error") or "no answer")] += 1
        return dict(counts)


def read_truth(emulator) -> Truth:
    deliveries = list(emulator.control("GET", "/deliveries"))
    try:
        everything = emulator.control("GET", "/truth")
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        return Truth(list(emulator.control("GET", "/sessions")), list(emulator.control("GET", "/events")), deliveries)
    return Truth(
        sessions=everything["sessions"],
        events=everything["events"],
        deliveries=deliveries,
        payments=everything.get("payments", []),
        subscriptions=everything.get("subscriptions", []),
        refunds=everything.get("refunds", []),
    )


def wait_for_webhooks(emulator, *, copies: int, max_attempts: int, timeout: float) -> tuple[bool, float]:
    """Wait until no refund is still ``processing`` at Khaime (its completion, ``refund_delay``
    later, sends events of its own) and every event's deliveries finished (retries included).
    Answers (done, seconds)."""
    started = time.monotonic()
    while True:
        truth = read_truth(emulator)
        expected = len(truth.events) * copies
        processing = sum(1 for refund in truth.refunds if refund.get("status") == "processing")
        if not processing and truth.finished_deliveries(max_attempts) >= expected:
            return True, time.monotonic() - started
        if time.monotonic() - started > timeout:
            return False, time.monotonic() - started
        time.sleep(0.5)


def khaime_error_times(log: str) -> list[float]:
    """When the emulator answered a Partner API call with a 429 or a 5xx (its injected faults),
    as ``time.time()`` values, sorted: from its log, whose times are the machine's local time."""
    return sorted(
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for stamp, status in _PARTNER_ANSWER.findall(log)
        if status == "429" or status.startswith("5")
    )

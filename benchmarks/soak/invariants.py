"""The checks of a settled run. ``INVARIANTS`` is the list: each is a name and a function that
answers the offenders (one line each); the run passes when every list is empty. Add a check
with a function and a line.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from .browser import Hit
from .chaos import Chaos
from .ledger import Ledger
from .scenarios import Trip
from .truth import Truth

#: The last_error of a row khaime_sync abandoned in `created` (khaime_django.services.checkout).
ABANDONED_ERROR = "Abandoned while creating the Khaime session."
#: Local statuses that mean the money was received (khaime_django.models.PAID_STATUSES).
PAID = ("completed", "refunded", "disputed")


@dataclass(frozen=True)
class Facts:
    """Everything a check may look at, read once after the run settled."""

    truth: Truth
    ledger: Ledger
    trips: list[Trip]
    hits: list[Hit]
    chaos: Chaos
    app_log: str = ""  # gunicorn's log: its own lines, the access log and the app's errors
    khaime_errors: tuple[float, ...] = ()  # when the emulator answered 429/5xx (time.time(), sorted)

    @cached_property
    def local_by_session_id(self) -> dict[str, dict]:
        return {row["session_id"]: row for row in self.ledger.sessions if row["session_id"]}

    @cached_property
    def local_by_reference(self) -> dict[str, dict]:
        return {row["reference"]: row for row in self.ledger.sessions}

    def local_for(self, remote: dict) -> dict | None:
        """The local row of a Khaime session: by session id, else by the reference we sent."""
        row = self.local_by_session_id.get(remote["session_id"])
        if row is None:
            row = self.local_by_reference.get(str((remote.get("metadata") or {}).get("reference")))
        return row


def lost(facts: Facts) -> list[str]:
    """Khaime took the money; the ledger does not say so."""
    offenders = []
    for remote in facts.truth.sessions:
        if remote["status"] == "completed":
            row = facts.local_for(remote)
            if row is None or row["status"] not in PAID:
                offenders.append(f"{remote['session_id']}: local {row['status'] if row else 'no row'}")
    return offenders


def phantom(facts: Facts) -> list[str]:
    """The ledger says paid; Khaime took nothing."""
    remote = facts.truth.sessions_by_id()
    return [
        f"{row['reference']} ({row['session_id']}): Khaime {remote.get(row['session_id'], {}).get('status', 'unknown')}"
        for row in facts.ledger.sessions
        if row["status"] in PAID and remote.get(row["session_id"], {}).get("status") != "completed"
    ]


def lost_with_its_worker(facts: Facts, remote: dict) -> bool:
    """Khaime created this session, but the request that asked for it died before it could store
    Khaime's answer (a killed worker): its row, found by the reference we sent, was abandoned to
    `error` by khaime_sync. Khaime has no call to look a session up by reference, so the row
    cannot learn the id; no buyer was shown its payment page, and a payment on it would still
    complete the row by reference (the lost invariant checks that)."""
    row = facts.local_for(remote)
    return (
        row is not None
        and not row["session_id"]
        and row["status"] == "error"
        and row["last_error"] == ABANDONED_ERROR
        and remote["status"] != "completed"
    )


def one_row_per_session(facts: Facts) -> list[str]:
    """Every Khaime session has its local row carrying its id (or, for a create whose worker was
    killed, its row by reference: lost_with_its_worker), and no row names a session Khaime lacks."""
    by_id = facts.local_by_session_id
    offenders = []
    for remote in facts.truth.sessions:
        if remote["session_id"] not in by_id and not lost_with_its_worker(facts, remote):
            row = facts.local_for(remote)
            where = f"its row {row['reference']} is {row['status']} without the id" if row else "no local row"
            offenders.append(f"{remote['session_id']} ({remote['status']}): {where}")
    known = facts.truth.sessions_by_id()
    offenders += [f"local {sid}: unknown to Khaime" for sid in by_id if sid not in known]
    return offenders


def one_payable_session_per_purchase(facts: Facts) -> list[str]:
    """A buyer's purchase never has two Khaime sessions it could pay (or has paid) at once.

    A pending session whose local row is in ``error`` is not payable by anyone: the checkout that
    created it failed after Khaime answered (a dropped connection, a killed worker), so no buyer
    was sent to its page, and an ``error`` row is never reused."""
    payable = defaultdict(list)
    for remote in facts.truth.sessions:
        row = facts.local_for(remote)
        never_shown = remote["status"] == "pending" and row is not None and row["status"] == "error"
        if remote["status"] in ("pending", "completed") and not never_shown:
            purchase = (remote["customer"].get("email"), remote["product_title"], remote["amount"], remote["currency"])
            payable[purchase].append(f"{remote['session_id']}={remote['status']}")
    return [f"{purchase[0]} {purchase[1]}: {', '.join(ids)}" for purchase, ids in payable.items() if len(ids) > 1]


def none_stuck_in_created(facts: Facts) -> list[str]:
    return [
        f"{row['reference']} ({row['customer_email']})" for row in facts.ledger.sessions if row["status"] == "created"
    ]


def status_is_last_history_entry(facts: Facts) -> list[str]:
    return [
        f"{row['reference']}: status {row['status']}, last history {row['last_to']}"
        for row in facts.ledger.sessions
        if (row["last_to"] or "created") != row["status"]
    ]


def delivered_events_in_inbox_once(facts: Facts) -> list[str]:
    inbox = facts.ledger.inbox
    return [
        f"{event_id}: {inbox.get(event_id, 0)} inbox rows"
        for event_id in sorted(facts.truth.delivered_event_ids())
        if inbox.get(event_id, 0) != 1
    ]


def paid_amounts_match(facts: Facts) -> list[str]:
    remote = facts.truth.sessions_by_id()
    offenders = []
    for row in facts.ledger.sessions:
        theirs = remote.get(row["session_id"])
        if row["status"] in PAID and theirs is not None:
            total = theirs["fee_details"]["total_amount"]
            if (row["total_amount"], row["currency"]) != (total, theirs["currency"]):
                offenders.append(f"{row['reference']}: {row['total_amount']} {row['currency']}, Khaime {total}")
    return offenders


def return_pages_never_claim_unpaid(facts: Facts) -> list[str]:
    """A return page that showed "paid" showed a session Khaime completed."""
    by_reference = {str((s.get("metadata") or {}).get("reference")): s for s in facts.truth.sessions}
    offenders = []
    for trip in facts.trips:
        for reference, shown in trip.shown:
            remote = by_reference.get(reference)
            if shown in PAID and (remote is None or remote["status"] != "completed"):
                offenders.append(f"{reference}: page showed {shown}, Khaime {remote['status'] if remote else 'none'}")
    return offenders


def double_submits_share_a_session(facts: Facts) -> list[str]:
    return [
        f"{trip.email}: {len(trip.hosted_urls)} hosted pages"
        for trip in facts.trips
        if trip.scenario.startswith("double submit") and len(trip.hosted_urls) > 1
    ]


#: How far (seconds) an emulator log line may fall outside the buyer's request it answered.
KHAIME_SLACK = 0.5


def khaime_failed_during(facts: Facts, hit: Hit) -> bool:
    """The emulator answered some Partner API call with a 429 or a 5xx while ``hit`` was in flight."""
    times = facts.khaime_errors
    first = bisect.bisect_left(times, hit.wall - KHAIME_SLACK)
    return first < len(times) and times[first] <= hit.wall + hit.seconds + KHAIME_SLACK


def injected_cause(facts: Facts, hit: Hit, before: list[str]) -> str:
    """The injected fault a buyer-visible 5xx answered, or "" when it cannot be tied to one.

    Each retryable page is tied only to the faults that can show it: a Khaime error page to an
    error the emulator answered during the request; the database page to a connection drop the
    request was in flight for; the "still being created" page to a Khaime error during the wait,
    or to an injection that cut off or failed another request of this buyer that ended before
    it (its row was left in ``created`` by the killed worker or the dropped connection; for a
    double click, the other click). ``before`` holds the causes of those. A bare 5xx is never tied."""
    khaime = "Khaime error" if khaime_failed_during(facts, hit) else ""
    drop = "connection drop" if facts.chaos.explains(hit.at, hit.seconds, "drop") else ""
    if hit.page == "khaime":
        return khaime
    if hit.page == "khaime or database":
        return khaime or drop
    if hit.page == "database":
        return drop
    if hit.page == "in progress":
        return khaime or next((f"after {cause}" for cause in before if cause), "")
    return ""


def classify_5xx(facts: Facts) -> list[tuple[Trip, Hit, str]]:
    """Every buyer-visible 5xx or dropped connection, with its injected cause ("" if none)."""
    found = []
    for trip in facts.trips:
        failed = [hit for hit in trip.browser.history if hit.status is None or hit.status >= 500]
        causes: dict[int, str] = {}
        for hit in failed:
            if hit.status is None:
                kill = facts.chaos.explains(hit.at, hit.seconds, "kill")
                drop = facts.chaos.explains(hit.at, hit.seconds, "drop")
                causes[id(hit)] = "worker kill" if kill else "connection drop" if drop else ""
            elif hit.page != "in progress":
                causes[id(hit)] = injected_cause(facts, hit, [])
        for hit in failed:
            if hit.page == "in progress" and hit.status is not None:
                before = [causes.get(id(other), "") for other in failed if other is not hit and other.end <= hit.end]
                causes[id(hit)] = injected_cause(facts, hit, before)
        found += [(trip, hit, causes[id(hit)]) for hit in failed]
    return found


def app_5xx_not_injected(facts: Facts) -> list[str]:
    """Server errors a buyer saw that cannot be tied to an injected fault (see injected_cause)."""
    return [
        f"{hit.status} {hit.page or 'bare'} page on {hit.step} ({trip.email}): {hit.method} {hit.url}"
        for trip, hit, cause in classify_5xx(facts)
        if hit.status is not None and not cause
    ]


def dropped_connections_not_injected(facts: Facts) -> list[str]:
    """No answer at all, away from any worker kill or connection drop."""
    return [
        f"{hit.error} on {hit.step} after {hit.seconds:.1f} s: {hit.method} {hit.url}"
        for hit in facts.hits
        if hit.status is None and not facts.chaos.explains(hit.at, hit.seconds)
    ]


def no_worker_timeouts(facts: Facts) -> list[str]:
    """gunicorn killed no worker for taking too long on a request (only the injected kills)."""
    return [line.split("] ", 1)[-1] for line in facts.app_log.splitlines() if "WORKER TIMEOUT" in line]


def payments_match(facts: Facts) -> list[str]:
    """The payments ledger holds every payment Khaime took (first payments and renewals), once,
    with Khaime's amount and currency, and nothing else."""
    theirs = {payment["transaction_id"]: payment for payment in facts.truth.payments}
    ours = {payment["transaction_id"]: payment for payment in facts.ledger.payments}
    offenders = [
        f"{txn}: Khaime took {p['amount']} {p['currency']}, not in the ledger"
        for txn, p in theirs.items()
        if txn not in ours
    ]
    offenders += [f"{txn}: in the ledger, unknown to Khaime" for txn in ours if txn not in theirs]
    for txn, mine in ours.items():
        khaime = theirs.get(txn)
        if khaime is not None and (mine["amount"], mine["currency"]) != (khaime["amount"], khaime["currency"]):
            offenders.append(
                f"{txn}: ledger {mine['amount']} {mine['currency']}, Khaime {khaime['amount']} {khaime['currency']}"
            )
        if khaime is not None and (mine.get("subscription_id_khaime") or None) != (
            khaime.get("subscription_id") or None
        ):
            local_sub, khaime_sub = mine.get("subscription_id_khaime"), khaime.get("subscription_id")
            offenders.append(f"{txn}: ledger subscription {local_sub}, Khaime {khaime_sub}")
    return offenders


def subscriptions_match(facts: Facts) -> list[str]:
    """Every subscription Khaime has is in the ledger with Khaime's status, and no other."""
    ours = {sub["subscription_id"]: sub for sub in facts.ledger.subscriptions}
    theirs = {sub["id"]: sub for sub in facts.truth.subscriptions}
    offenders = [
        f"{sid}: Khaime {sub['status']}, local {ours[sid]['status'] if sid in ours else 'no row'}"
        for sid, sub in theirs.items()
        if sid not in ours or ours[sid]["status"] != sub["status"]
    ]
    return offenders + [
        f"{sid}: local {sub['status']}, unknown to Khaime" for sid, sub in ours.items() if sid not in theirs
    ]


def refunded_amounts_match(facts: Facts) -> list[str]:
    """What the ledger's completed refunds add up to, per payment, is what Khaime refunded of it."""
    ours: dict[str, int] = defaultdict(int)
    for refund in facts.ledger.refunds:
        if refund["status"] == "completed":
            ours[refund["transaction_id"]] += refund["amount"]
    theirs = {p["transaction_id"]: p.get("refunded_amount") or 0 for p in facts.truth.payments}
    return [
        f"{txn}: ledger refunded {ours.get(txn, 0)}, Khaime {theirs.get(txn, 0)}"
        for txn in sorted(set(ours) | {txn for txn, amount in theirs.items() if amount})
        if ours.get(txn, 0) != theirs.get(txn, 0)
    ]


@dataclass(frozen=True)
class Invariant:
    name: str
    check: Callable[[Facts], list[str]]


INVARIANTS: list[Invariant] = [
    Invariant("lost: Khaime took the money, the ledger does not say paid", lost),
    Invariant("phantom: the ledger says paid, Khaime took nothing", phantom),
    Invariant("one local row per Khaime session", one_row_per_session),
    Invariant("no purchase with two payable sessions", one_payable_session_per_purchase),
    Invariant("no row stuck in created", none_stuck_in_created),
    Invariant("status equals the last entry of its history", status_is_last_history_entry),
    Invariant("every delivered event in the inbox exactly once", delivered_events_in_inbox_once),
    Invariant("paid amounts match Khaime's", paid_amounts_match),
    Invariant("the payments ledger matches Khaime's payments", payments_match),
    Invariant("subscription states and payments match the emulator's truth", subscriptions_match),
    Invariant("refunded amounts match", refunded_amounts_match),
    Invariant("no return page showed paid for a session Khaime did not complete", return_pages_never_claim_unpaid),
    Invariant("a double submit reaches one Khaime session", double_submits_share_a_session),
    Invariant("buyer-visible 5xx that are not an injected Khaime fault", app_5xx_not_injected),
    Invariant("buyer-visible dropped connections not caused by an injection", dropped_connections_not_injected),
    Invariant("no worker killed by gunicorn's timeout", no_worker_timeouts),
]


@dataclass(frozen=True)
class Result:
    invariant: Invariant
    offenders: list[str]

    @property
    def ok(self) -> bool:
        return not self.offenders


def check_all(facts: Facts, invariants: list[Invariant] = INVARIANTS) -> list[Result]:
    return [Result(invariant, invariant.check(facts)) for invariant in invariants]

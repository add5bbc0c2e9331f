"""``benchmarks/SOAK.md``: what ran, on what, under which faults, how fast, and every invariant."""

from __future__ import annotations

import os
import platform
import re
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from .invariants import classify_5xx, lost_with_its_worker

SHOWN_OFFENDERS = 8
SHOWN_TRIPS = 12
_HIDDEN_OPTIONS = ("webhook_url", "webhook_secret")


def _failed(hit) -> bool:
    return hit.status is None or hit.status >= 500


def _path(trip) -> str:
    steps = [
        f"{hit.step} {hit.status or hit.error or 'no answer'}" + (f" ({hit.seconds:.1f} s)" if hit.seconds >= 1 else "")
        for hit in trip.browser.history
    ]
    return " → ".join(steps + [f"*{note}*" for note in trip.notes])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def failure_rows(classified) -> list[list[object]]:
    counts = Counter(
        ("no answer" if hit.status is None else hit.status, hit.page or ("-" if hit.status is None else "bare"), cause)
        for _, hit, cause in classified
    )
    return [
        [answer, page, cause or "**nothing**", n]
        for (answer, page, cause), n in sorted(counts.items(), key=lambda item: [str(x) for x in item[0]])
    ]


def requests_breakdown(outcome, truth, paid: int) -> list[str]:
    """Where the Khaime requests per paid purchase went."""
    load, settle = outcome.khaime_requests_load, outcome.khaime_requests_settle
    creates = sum(n for (call, _), n in load.items() if call == "create session")
    retrieves = sum(n for (call, _), n in load.items() if call == "retrieve session")
    paid_ids = [s["session_id"] for s in truth.sessions if s["status"] == "completed"]
    asked = [outcome.retrieves_load[sid] for sid in paid_ids]
    own = (len(paid_ids) + sum(asked)) / paid
    return [
        f"- creates (every session, paid or not, and their 429/5xx): {creates / paid:.2f} per paid purchase",
        f"- retrieves during the load (return pages): {retrieves / paid:.2f} per paid purchase; "
        f"{sum(1 for n in asked if n == 0)} of {paid} paid sessions were never asked about "
        "(the webhook landed first)",
        f"- the settle phase (`khaime_sync` over every open session, subscriptions): "
        f"{sum(settle.values()) / paid:.2f} per paid purchase",
        f"- a paid purchase's own requests (its create and the retrieves of its session): {own:.2f}",
    ]


def step_rows(hits) -> list[list[object]]:
    by_step = defaultdict(list)
    for hit in hits:
        by_step[hit.step].append(hit)
    rows = []
    for step, step_hits in by_step.items():
        ms = [hit.seconds * 1000 for hit in step_hits]
        statuses = Counter("no answer" if hit.status is None else hit.status for hit in step_hits)
        shown = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items(), key=lambda item: str(item[0])))
        p50, p95 = statistics.median(ms), percentile(ms, 0.95)
        rows.append([step, len(step_hits), f"{p50:.0f}", f"{p95:.0f}", f"{max(ms):.0f}", shown])
    return sorted(rows, key=lambda row: -int(row[1]))


_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)): ")
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d |\[\d{4}-|ACCESS )")


def _final_exceptions(text: str) -> list[str]:
    """The exception each logged traceback ended with (not the ones chained before it)."""
    found, last = [], None
    for line in text.splitlines():
        if _LOG_LINE.match(line):  # a new log line ends the traceback before it
            if last:
                found.append(last)
            last = None
        elif match := _EXCEPTION.match(line):
            last = match.group(1)
    return [*found, last] if last else found


def _log_counts(text: str) -> tuple[Counter, Counter, list[str]]:
    """From gunicorn's log: webhook answers by status, exceptions by type, worker deaths."""
    webhooks = Counter(re.findall(r'ACCESS \S+ "POST /payments/webhook/ HTTP/[\d.]+" (\d{3})', text))
    exceptions = Counter(_final_exceptions(text))
    deaths = [line for line in text.splitlines() if "was sent SIGKILL" in line]
    return webhooks, exceptions, deaths


def render(settings, outcome, stack, started: float) -> str:
    load, truth, facts = outcome.load, outcome.truth, outcome.facts
    paid = sum(1 for session in truth.sessions if session["status"] == "completed")
    hits = facts.hits
    classified = classify_5xx(facts)
    lines = [
        "# Soak: the shop as production runs it",
        "",
        "Written by `python -m benchmarks.soak` (`make soak`; `--short` for the CI run). Every figure below",
        "is from the run that wrote this file; run it again to measure your machine.",
        "",
        f"**Result: {'PASS' if outcome.passed else 'FAIL'}**"
        f" ({sum(1 for r in outcome.results if not r.ok)} of {len(outcome.results)} invariants failed)",
        "",
        "## Run",
        "",
        f"- Date: {datetime.fromtimestamp(started, UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {_cpu()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        f"- Versions: Python {platform.python_version()}, Django {_version('django')}, "
        f"khaime-django {_version('khaime-django')}, gunicorn {_version('gunicorn')}, psycopg {_version('psycopg')}, "
        f"PostgreSQL {stack.database.server_version()}",
        f"- Load: {settings.label}; {len(load.trips)} purchases played in {load.seconds:.1f} s"
        + (f" (stopped early: {load.stopped_early})" if load.stopped_early else ""),
        f"- App: `demo_project` under gunicorn {'gthread' if settings.threads > 1 else 'sync'} workers (timeout "
        f"{settings.worker_timeout} s), DEBUG off, CONN_MAX_AGE 60 with CONN_HEALTH_CHECKS, a fresh database",
        "- Khaime faults during the load: "
        + ", ".join(f"{name}={value}" for name, value in stack.emulator.options.items() if name not in _HIDDEN_OPTIONS)
        + "; lifted for the settle phase (Khaime recovers)",
        "",
        "Scenarios played:",
        "",
        *_table(
            ["scenario", "purchases"],
            [[name, n] for name, n in Counter(trip.scenario for trip in load.trips).most_common()],
        ),
        "",
        "Injected:",
        "",
        *_table(
            ["when (s into the load)", "what", "did"],
            [[f"{fired.at - (load.began):.1f}", fired.name, fired.what] for fired in outcome.chaos.fired],
        ),
        "",
        "## Throughput and latency",
        "",
        f"- {len(load.trips) / load.seconds:.1f} purchases/s, {len(hits) / load.seconds:.1f} buyer requests/s "
        f"({len(hits)} requests)",
        f"- Khaime sessions: {len(truth.sessions)}, paid at Khaime: {paid}; known locally only by reference "
        f"(the create's answer died with a killed worker, its row abandoned): "
        f"{sum(1 for remote in truth.sessions if lost_with_its_worker(facts, remote))}",
        f"- Settle: webhooks finished in {outcome.webhook_wait:.1f} s"
        + ("" if outcome.webhooks_settled else " (NOT all finished: timeout)")
        + f"; waited {outcome.abandon_wait:.1f} s for rows left in `created` to pass the in-flight limit"
        + f"; `khaime_sync --grace 0s` took {outcome.sync_seconds:.1f} s",
        "",
        "Per step, as the buyer's browser timed it (ms):",
        "",
        *_table(["step", "n", "p50", "p95", "max", "answers"], step_rows(hits)),
        "",
        "Khaime API requests (from the emulator's access log):",
        "",
    ]
    calls = sorted(set(outcome.khaime_requests_load) | set(outcome.khaime_requests_settle))
    lines += _table(
        ["call", "status", "during the load", "settle (sync)"],
        [
            [call, status, outcome.khaime_requests_load[(call, status)], outcome.khaime_requests_settle[(call, status)]]
            for call, status in calls
        ],
    )
    total = sum(outcome.khaime_requests_load.values()) + sum(outcome.khaime_requests_settle.values())
    lines += ["", f"Khaime requests per paid purchase: {total / paid:.2f}" if paid else "No purchase was paid.", ""]
    if paid:
        lines += ["", *requests_breakdown(outcome, truth, paid), ""]
    webhook_answers, exceptions, deaths = _log_counts(stack.gunicorn.log_text())
    lines += [
        "Webhook deliveries: "
        + ", ".join(f"{status}: {n}" for status, n in sorted(truth.delivery_statuses().items()))
        + " (attempts, by the app's answer: "
        + ", ".join(f"{status}: {n}" for status, n in sorted(webhook_answers.items()))
        + " in its access log); inbox outcomes: "
        + ", ".join(f"{outcome_}: {n}" for outcome_, n in sorted(facts.ledger.inbox_outcomes.items())),
        "",
        "Refunds (refund_payment during the load): local "
        + (
            ", ".join(f"{st}: {n}" for st, n in sorted(Counter(r["status"] for r in facts.ledger.refunds).items()))
            or "none"
        )
        + f"; Khaime: {len(truth.refunds)} refunds, "
        + f"{sum(p.get('refunded_amount') or 0 for p in truth.payments)} minor units refunded",
        "",
        "App log, unhandled exceptions: "
        + (", ".join(f"{name} x{n}" for name, n in exceptions.most_common()) or "no exception")
        + f"; workers SIGKILLed (injected, or by gunicorn after a timeout): {len(deaths)}",
        "",
        "## Buyer-visible failures and their causes",
        "",
        "Each 5xx page and each request with no answer, by what the page said (`bare`: Django's own",
        "error page) and the injected fault it is tied to: a Khaime error page to a 429/5xx the",
        "emulator answered while the request was in flight; the database page to a connection drop",
        'the request was in flight for; the "still being created" page to a Khaime error during its',
        "wait or to an injection that cut off this buyer's earlier request; no answer to a kill or",
        "drop it was in flight for. An untied one fails the 5xx (or dropped connection) invariant.",
        "",
        *_table(["answer", "page", "tied to", "n"], failure_rows(classified)),
        "",
        "## Invariants",
        "",
        *_table(
            ["invariant", "count", ""],
            [[r.invariant.name, len(r.offenders), "ok" if r.ok else "**FAIL**"] for r in outcome.results],
        ),
        "",
    ]
    for result in outcome.results:
        if not result.ok:
            lines += [f"### {result.invariant.name}: {len(result.offenders)}", ""]
            lines += [f"- `{offender}`" for offender in result.offenders[:SHOWN_OFFENDERS]]
            if len(result.offenders) > SHOWN_OFFENDERS:
                lines.append(f"- ... and {len(result.offenders) - SHOWN_OFFENDERS} more")
            lines.append("")
    troubled = [trip for trip in load.trips if trip.notes or any(_failed(hit) for hit in trip.browser.history)]
    # The app's own failures first (a 5xx or no answer tied to no injection), then the others.
    untied = {id(trip) for trip, _, cause in classified if not cause}
    troubled.sort(key=lambda trip: id(trip) not in untied)
    if troubled:
        lines += [
            "## Buyers who met a failure",
            "",
            f"{len(troubled)} buyers; the first {min(len(troubled), SHOWN_TRIPS)}, "
            "each request as its step and answer (seconds when 1 or more):",
            "",
            *_table(
                ["buyer", "scenario", "what they went through"],
                [[trip.email, trip.scenario, _path(trip)] for trip in troubled[:SHOWN_TRIPS]],
            ),
            "",
        ]
    notes = Counter(note for trip in load.trips for note in trip.notes)
    example = {note: trip.email for trip in reversed(load.trips) for note in trip.notes}
    if notes:
        lines += [
            "## What buyers ran into",
            "",
            *_table(["note", "buyers", "one of them"], [[n, c, example[n]] for n, c in notes.most_common(12)]),
            "",
        ]
    lines += ["## `khaime_sync`", "", "```", outcome.sync_output or "(no output)", "```", ""]
    return "\n".join(lines)


def write(path: Path, settings, outcome, stack, started: float) -> None:
    path.write_text(render(settings, outcome, stack, started))

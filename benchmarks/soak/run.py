"""One soak run on a started stack: load with chaos, settle, read both sides, check."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass

from .chaos import Chaos, Injection
from .invariants import Facts, Result, check_all
from .ledger import events_waiting, read_ledger, seconds_until_created_rows_are_abandonable
from .load import Load
from .truth import Truth, khaime_error_times, read_truth, wait_for_webhooks

_PARTNER_REQUEST = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) (/api/v1/partner[^" ]*)" (\d{3})')


@dataclass
class Outcome:
    load: Load
    chaos: Chaos
    truth: Truth
    results: list[Result]
    facts: Facts
    webhooks_settled: bool
    webhook_wait: float
    abandon_wait: float
    sync_seconds: float
    sync_output: str
    khaime_requests_load: Counter
    khaime_requests_settle: Counter
    retrieves_load: Counter  # session id -> retrieve requests during the load

    @property
    def passed(self) -> bool:
        return all(result.ok for result in self.results)

    def summary(self) -> str:
        lines = [
            f"soak: {'PASS' if self.passed else 'FAIL'}: {len(self.load.trips)} purchases in {self.load.seconds:.0f} s"
        ]
        lines += [f"  {len(r.offenders):5d}  {r.invariant.name}" for r in self.results]
        return "\n".join(lines)


_RETRIEVE = re.compile(r'"GET /api/v1/partner/payments/sessions/([^"/? ]+)[^"]*" (\d{3})')


def retrieves_by_session(log: str) -> Counter:
    """Retrieve-session requests in the emulator's access log, by session id."""
    return Counter(session_id for session_id, _ in _RETRIEVE.findall(log))


def partner_requests(log: str) -> Counter:
    """Khaime API requests in the emulator's access log: (call, status) -> count."""
    counts: Counter = Counter()
    for method, path, status in _PARTNER_REQUEST.findall(log):
        call = "create session" if method == "POST" and path.rstrip("/").endswith("/sessions") else f"{method} {path}"
        if method == "GET" and "/sessions/" in path:
            call = "retrieve session"
        counts[(call, int(status))] += 1
    return counts


def run(settings, stack, shop_url: str, injections: list[Injection]) -> Outcome:
    emulator = stack.emulator
    load = Load(
        shop_url=shop_url,
        emulator_origin=emulator.base_url,
        purchases=settings.purchases,
        buyers=settings.buyers,
        time_limit=settings.time_limit,
        seed=settings.seed,
    )
    chaos = Chaos(stack, injections, load.started, settings.purchases).start()
    try:
        load.run()
    finally:
        chaos.stop()
    load_log_end = len(emulator.log_text())

    # Khaime recovers: the settle phase measures what the app does once it can be reached.
    emulator.configure(fail_rate=0.0, rate_limit_per_second=None)
    copies = 2 if settings.faults.get("duplicate_webhooks") else 1
    attempts = int(settings.faults.get("webhook_attempts", 3))
    settled, waited = wait_for_webhooks(emulator, copies=copies, max_attempts=attempts, timeout=settings.settle_timeout)
    if settings.task_workers:  # acknowledged is not applied: let the task workers drain the queue
        drain_started = time.monotonic()
        while events_waiting() and time.monotonic() - drain_started < max(5.0, settings.settle_timeout - waited):
            time.sleep(0.5)
        waited += time.monotonic() - drain_started
    # A row a killed worker left in `created` is abandoned by khaime_sync only once it is older
    # than any create call can take (production's next periodic run would): wait for that.
    abandon_wait = min(seconds_until_created_rows_are_abandonable(), max(0.0, settings.settle_timeout - waited))
    time.sleep(abandon_wait)
    sessions = len(read_truth(emulator).sessions)
    began = time.monotonic()
    sync = stack.manage("khaime_sync", "--grace", "0s", "--budget", str(max(100, sessions)))
    sync_seconds = time.monotonic() - began

    truth = read_truth(emulator)
    log = emulator.log_text()
    facts = Facts(
        truth,
        read_ledger(),
        load.trips,
        load.recorder.snapshot(),
        chaos,
        stack.gunicorn.log_text(),
        tuple(khaime_error_times(log[:load_log_end])),
    )
    return Outcome(
        load=load,
        chaos=chaos,
        truth=truth,
        results=check_all(facts),
        facts=facts,
        webhooks_settled=settled,
        webhook_wait=waited,
        abandon_wait=abandon_wait,
        sync_seconds=sync_seconds,
        sync_output=(sync.stdout + sync.stderr).strip()
        + ("" if sync.returncode == 0 else f"\n(exit {sync.returncode})"),
        khaime_requests_load=partner_requests(log[:load_log_end]),
        khaime_requests_settle=partner_requests(log[load_log_end:]),
        retrieves_load=retrieves_by_session(log[:load_log_end]),
    )

"""The soak harness (benchmarks/soak): its checks catch what they name, and a tiny soak runs
end to end, balances, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection

from benchmarks.soak import invariants as soak_invariants
from benchmarks.soak.browser import Hit
from benchmarks.soak.chaos import Chaos, Fired
from benchmarks.soak.invariants import INVARIANTS, Facts, check_all
from benchmarks.soak.ledger import Ledger
from benchmarks.soak.scenarios import SCENARIOS, Trip
from benchmarks.soak.truth import Truth

ROOT = Path(__file__).resolve().parent.parent


def remote(session_id: str, status: str, reference: str = "", email: str = "a@soak.example", total: int = 5320) -> dict:
    return {
        "session_id": session_id,
        "status": status,
        "metadata": {"reference": reference or f"ref-{session_id}"},
        "customer": {"email": email},
        "product_title": "Premium Plan",
        "amount": total,
        "currency": "USD",
        "fee_details": {"total_amount": total},
    }


def local(session_id: str | None, status: str, reference: str = "", last_to: str | None = None, error="") -> dict:
    return {
        "last_error": error,
        "reference": reference or f"ref-{session_id}",
        "session_id": session_id,
        "status": status,
        "total_amount": 5320,
        "currency": "USD",
        "customer_email": "a@soak.example",
        "last_to": status if last_to is None and status != "created" else last_to,
    }


def buyer(*hits: Hit, email: str = "a@soak.example") -> Trip:
    trip = Trip(
        "pay", email, browser=SimpleNamespace(history=list(hits)), shop_url="", rng=None, reload_pause=0, reloads=0
    )  # type: ignore[arg-type]
    return trip


def facts(
    sessions=(), rows=(), *, events=(), deliveries=(), inbox=None, hits=(), trips=(), fired=(), log="", errors=()
):
    chaos = Chaos(stack=None, injections=[], started=lambda: 0, total=1)
    chaos.fired.extend(fired)
    ledger = Ledger(list(rows), Counter(inbox or {}), Counter())
    trips = list(trips) or ([buyer(*hits)] if hits else [])
    truth = Truth(list(sessions), list(events), list(deliveries))
    return Facts(truth, ledger, trips, list(hits), chaos, log, tuple(sorted(errors)))


def offenders(facts: Facts) -> dict[str, int]:
    return {result.invariant.check.__name__: len(result.offenders) for result in check_all(facts) if not result.ok}


def test_a_balanced_ledger_passes_every_invariant():
    balanced = facts(
        [remote("s1", "completed"), remote("s2", "pending", email="b@soak.example"), remote("s3", "failed")],
        [local("s1", "completed"), local("s2", "cancelled"), local("s3", "failed")],
        deliveries=[{"delivery_id": 1, "event_id": "e1", "attempt": 1, "succeeded": True}],
        inbox={"e1": 1},
    )

    assert offenders(balanced) == {}


def test_a_payment_khaime_took_but_the_ledger_does_not_show_is_lost():
    assert offenders(facts([remote("s1", "completed")], [local("s1", "pending")])) == {"lost": 1}


def test_a_paid_row_khaime_did_not_complete_is_a_phantom():
    assert offenders(facts([remote("s1", "failed")], [local("s1", "completed")])) == {"phantom": 1}


def test_a_checkout_that_died_after_its_insert_shows_as_stuck_and_orphaned():
    died = facts([remote("s1", "pending", reference="r1")], [local(None, "created", reference="r1")])

    assert offenders(died) == {"none_stuck_in_created": 1, "one_row_per_session": 1}


def test_a_session_whose_create_died_with_its_worker_is_known_by_reference_once_its_row_is_abandoned():
    from khaime_django.services.checkout import ABANDONED_ERROR

    assert ABANDONED_ERROR == soak_invariants.ABANDONED_ERROR
    abandoned = local(None, "error", reference="r1", last_to="error", error=ABANDONED_ERROR)
    assert offenders(facts([remote("s1", "pending", reference="r1")], [abandoned])) == {}
    # Any other row without the id, or a payment on it that the row does not know, is still caught.
    other_error = local(None, "error", reference="r1", last_to="error", error="KhaimeServerError: boom")
    assert offenders(facts([remote("s1", "pending", reference="r1")], [other_error])) == {"one_row_per_session": 1}
    assert offenders(facts([remote("s1", "completed", reference="r1")], [abandoned])) == {
        "lost": 1,
        "one_row_per_session": 1,
    }


def test_the_payments_ledger_and_subscriptions_are_checked_against_khaimes():
    def ledger_facts(payments, subscriptions, truth_payments, truth_subscriptions):
        found = facts()
        found.truth.payments.extend(truth_payments)
        found.truth.subscriptions.extend(truth_subscriptions)
        found.ledger.payments.extend(payments)
        found.ledger.subscriptions.extend(subscriptions)
        return found

    theirs = [
        {"transaction_id": "t1", "amount": 900, "currency": "USD", "subscription_id": "sub_1"},
        {"transaction_id": "t2", "amount": 900, "currency": "USD", "subscription_id": "sub_1"},
    ]
    ours = [
        {"transaction_id": t["transaction_id"], "amount": 900, "currency": "USD", "subscription_id_khaime": "sub_1"}
        for t in theirs
    ]
    balanced = ledger_facts(
        ours, [{"subscription_id": "sub_1", "status": "cancelled"}], theirs, [{"id": "sub_1", "status": "cancelled"}]
    )
    assert offenders(balanced) == {}

    renewal_lost = ledger_facts(
        ours[:1], [{"subscription_id": "sub_1", "status": "active"}], theirs, [{"id": "sub_1", "status": "cancelled"}]
    )
    assert offenders(renewal_lost) == {"payments_match": 1, "subscriptions_match": 1}
    wrong_amount = [{**ours[0], "amount": 800}, ours[1]]
    assert offenders(ledger_facts(wrong_amount, [], theirs, [])) == {"payments_match": 1}


def test_refunded_amounts_are_checked_against_khaimes_per_payment():
    def refund_facts(refunds, truth_payments):
        found = facts()
        found.truth.payments.extend(truth_payments)
        found.ledger.payments.extend({**p, "subscription_id_khaime": None} for p in truth_payments)
        found.ledger.refunds.extend(refunds)
        return found

    paid = {"amount": 900, "currency": "USD", "subscription_id": None}
    khaime = [
        {"transaction_id": "t1", "refunded_amount": 900, **paid},
        {"transaction_id": "t2", "refunded_amount": 0, **paid},
    ]
    ours = [
        {"refund_id": "r1", "transaction_id": "t1", "amount": 300, "status": "completed"},
        {"refund_id": "r2", "transaction_id": "t1", "amount": 600, "status": "completed"},
        {"refund_id": None, "transaction_id": "t2", "amount": 500, "status": "failed"},
    ]
    assert offenders(refund_facts(ours, khaime)) == {}
    assert offenders(refund_facts(ours[:1] + ours[2:], khaime)) == {"refunded_amounts_match": 1}
    moved_twice = [*ours, {"refund_id": "r3", "transaction_id": "t2", "amount": 500, "status": "completed"}]
    assert offenders(refund_facts(moved_twice, khaime)) == {"refunded_amounts_match": 1}


def test_two_payable_sessions_for_one_purchase_are_caught():
    twice = facts(
        [remote("s1", "pending"), remote("s2", "pending")],
        [local("s1", "cancelled"), local("s2", "pending")],
    )

    assert offenders(twice) == {"one_payable_session_per_purchase": 1}


def test_a_pending_session_whose_checkout_failed_after_khaimes_answer_is_not_payable():
    retried = facts(
        [remote("s1", "pending"), remote("s2", "completed")],
        [local("s1", "error"), local("s2", "completed")],
    )

    assert offenders(retried) == {}


def test_a_status_that_is_not_the_last_history_entry_is_caught():
    assert offenders(facts([remote("s1", "failed")], [local("s1", "failed", last_to="pending")])) == {
        "status_is_last_history_entry": 1
    }


def test_a_delivered_event_missing_from_the_inbox_is_caught():
    delivered = [{"delivery_id": 1, "event_id": "e1", "attempt": 1, "succeeded": True}]
    failed_only = [{"delivery_id": 2, "event_id": "e2", "attempt": 5, "succeeded": False}]

    assert offenders(facts(deliveries=delivered + failed_only, inbox={})) == {"delivered_events_in_inbox_once": 1}


def test_a_khaime_error_page_counts_as_injected_only_when_khaime_failed_during_it():
    hits = [
        Hit("buy", "POST", "/payments/checkout/", 502, 0.1, 0.0, page="khaime", wall=1000.0),
        Hit("buy", "POST", "/payments/checkout/", 502, 0.1, 5.0, page="khaime", wall=1005.0),  # Khaime was fine
        Hit("buy", "POST", "/payments/checkout/", 500, 0.1, 9.0, wall=1009.0),  # a bare 500: never injected
    ]

    assert offenders(facts(hits=hits, errors=[1000.05])) == {"app_5xx_not_injected": 2}


def test_a_database_page_counts_as_injected_only_during_a_connection_drop():
    fired = [Fired("drop the app's database connections", 100.0, "terminated 4")]
    hits = [
        Hit("success return", "GET", "/s/", 503, 1.5, 99.0, page="database", wall=1.0),
        Hit("success return", "GET", "/s/", 503, 0.2, 120.0, page="database", wall=2.0),  # no drop then
        Hit("buy", "POST", "/payments/checkout/", 503, 0.5, 99.8, page="khaime or database", wall=3.0),
    ]

    assert offenders(facts(hits=hits, fired=fired)) == {"app_5xx_not_injected": 1}


def test_a_still_being_created_page_counts_as_injected_only_after_this_buyers_request_was_cut_off():
    fired = [Fired("kill -9 a gunicorn worker mid-checkout", 100.0, "SIGKILL")]
    cut = Hit("buy", "POST", "/payments/checkout/", None, 0.5, 99.8, error="ConnectionError")
    waited = Hit("buy (again)", "POST", "/payments/checkout/", 503, 3.0, 101.0, page="in progress", wall=1.0)
    after_kill = buyer(cut, waited)
    double_click = buyer(
        Hit("buy", "POST", "/payments/checkout/", 303, 3.5, 200.0, wall=2.0),
        Hit("buy", "POST", "/payments/checkout/", 503, 3.0, 200.0, page="in progress", wall=2.0),
        email="b@soak.example",
    )

    # A double click whose other click (started a moment later) was the one killed mid-checkout.
    other_click_killed = buyer(
        Hit("buy", "POST", "/payments/checkout/", 503, 4.9, 99.0, page="in progress", wall=3.0),
        Hit("buy", "POST", "/payments/checkout/", None, 1.0, 99.1, error="ConnectionError"),
        email="c@soak.example",
    )

    found = facts(trips=[after_kill, double_click, other_click_killed], fired=fired)
    assert offenders(found) == {"app_5xx_not_injected": 1}
    assert offenders(facts(trips=[double_click], errors=[3.0])) == {}  # a 429 held up the first click


def test_a_dropped_connection_counts_only_away_from_an_injection():
    fired = [Fired("kill -9 a gunicorn worker", 100.0, "SIGKILL")]
    hits = [
        Hit("buy", "POST", "/payments/checkout/", None, 0.5, 99.8, error="ConnectionError"),
        Hit("buy", "POST", "/payments/checkout/", None, 0.5, 150.0, error="ConnectionError"),
        # In flight at the kill, but cut off half a minute later: gunicorn's timeout, not the kill.
        Hit("buy", "POST", "/payments/checkout/", None, 30.8, 99.5, error="ConnectionError"),
    ]

    assert offenders(facts(hits=hits, fired=fired)) == {"dropped_connections_not_injected": 2}


def test_a_return_page_showing_paid_for_an_unpaid_session_is_caught():
    trip = buyer()
    trip.shown.append(("r1", "completed"))

    lied = facts([remote("s1", "pending", reference="r1")], [local("s1", "pending", reference="r1")], trips=[trip])

    assert offenders(lied) == {"return_pages_never_claim_unpaid": 1}


def test_a_gunicorn_worker_timeout_is_caught():
    log = "[2026-01-01 00:00:00 +0000] [1] [CRITICAL] WORKER TIMEOUT (pid:2)\n"

    assert offenders(facts(log=log)) == {"no_worker_timeouts": 1}


def test_scenarios_and_invariants_are_plain_lists_to_extend():
    assert {scenario.name for scenario in SCENARIOS} >= {"pay", "decline", "cancel", "abandon", "cancel then pay"}
    assert len({invariant.name for invariant in INVARIANTS}) == len(INVARIANTS)


def _soak_databases() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'soak\\_%%'")
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the soak needs a PostgreSQL server (set DATABASE_URL=postgres://...)",
)
@pytest.mark.django_db
def test_a_tiny_soak_balances_its_ledger_and_cleans_up(tmp_path):
    report = tmp_path / "SOAK.md"
    env = {**os.environ, "SOAK_POSTGRES_URL": os.environ["DATABASE_URL"]}
    before = _soak_databases()

    tiny = ["--purchases", "20", "--buyers", "4", "--workers", "2", "--kills", "0", "--drops", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", *tiny, "--report", str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    text = report.read_text()
    assert "**Result: PASS**" in text
    assert "| buy |" in text and "| pay |" in text
    for invariant in INVARIANTS:
        assert f"| {invariant.name} | 0 | ok |" in text
    assert _soak_databases() == before


def test_the_settle_waits_for_refunds_still_processing_at_khaime(monkeypatch):
    """CI's tiny soak failed "refunded amounts match": the last refund batch was still
    ``processing`` when the settle found every delivery finished, so Khaime completed it (and
    sent its events) while the ledger was being read."""
    from benchmarks.soak import truth as soak_truth

    monkeypatch.setattr(soak_truth.time, "sleep", lambda seconds: None)
    reads = iter(["processing", "processing", "completed"])

    class Emulator:
        def control(self, method, path):
            if path == "/deliveries":
                return [{"delivery_id": 1, "event_id": "evt_1", "attempt": 1, "succeeded": True}]
            return {"sessions": [], "events": [{"event_id": "evt_1"}], "refunds": [{"status": next(reads)}]}

    done, _ = soak_truth.wait_for_webhooks(Emulator(), copies=1, max_attempts=3, timeout=60)
    assert done
    assert next(reads, None) is None  # it read until the refund had completed

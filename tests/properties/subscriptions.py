"""The Subscription World and machine: one subscription bought at checkout and what Khaime does
with it afterwards (renewals, a failing payment, trial, pause and resume, cancellation, expiry),
its ``subscription.*`` and ``payment.*`` webhooks delivered in any order and any number of
times, interleaved with ``khaime_sync`` and the admin's "Refresh from Khaime", which see
Khaime's state at that moment (``GET /subscriptions``, ``GET /subscriptions/{id}``).

Khaime's clock is the test's: it is pinned, and every step Khaime takes happens one minute after
the previous one, so every run of a scenario stores the same times and a sync is dated after the
news it reads (as it would be in production; ties within one second are the app's documented
limitation, see docs/subscriptions.md, "Ordering").
"""

from __future__ import annotations

import io
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management import call_command
from django.urls import reverse
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from khaime_django.models import Payment, PaymentSession, Subscription, SubscriptionStatusChange
from khaime_django.purchases import Purchase

from .scaffolding import Event, Outcome, ScenarioMachine, World, iso, with_commit_hooks

PENDING, TRIALING, ACTIVE, DUE = "pending", "trialing", "active", "due"
PAUSED, CANCELLED, EXPIRED = "paused", "cancelled", "expired"

#: When every run's story starts (the clock is pinned there; Khaime's steps follow a minute apart).
T0 = datetime(2026, 11, 30, 3, 0, 0, tzinfo=UTC)
STEP = timedelta(minutes=1)
PERIOD = timedelta(days=30)
TRIAL = timedelta(days=7)
PRICE = 1290
TOTAL = PRICE + 320  # the Khaime model adds its fee

#: What Khaime itself can do to a subscription (docs/emulator.md's control API, plus trials):
#: from -> to.
KHAIME_MOVES = {
    PENDING: {ACTIVE, TRIALING},
    TRIALING: {ACTIVE},
    ACTIVE: {DUE, PAUSED, CANCELLED, EXPIRED},
    DUE: {ACTIVE, PAUSED, CANCELLED, EXPIRED},
    PAUSED: {ACTIVE, CANCELLED, EXPIRED},
    CANCELLED: {EXPIRED},
    EXPIRED: set(),
}


def _reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in KHAIME_MOVES[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


#: A stored subscription may skip Khaime's intermediate statuses (their news lost or late, a
#: row created by any report), but may only move to a status Khaime could reach from the one it
#: is in: never out of ``expired``, never from ``cancelled`` back to a paying status, never back
#: to ``pending`` or ``trialing``. Written from Khaime's moves, independently of the app's table.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    to: frozenset(origin for origin in KHAIME_MOVES if origin != to and (origin == PENDING or to in _reachable(origin)))
    for to in (TRIALING, ACTIVE, DUE, PAUSED, CANCELLED, EXPIRED)
}


class SubscriptionWorld(World):
    SCENARIOS = {
        "renewed twice, failing once, renewed, cancelled, expired": (
            "pay",
            "renew",
            "renew",
            "fail",
            "renew",
            "cancel",
            "expire",
        ),
        "trial started, ending, ended, renewed": ("start trial", "trial ending", "end trial", "renew"),
        "paused, resumed, renewed, cancelled": ("pay", "pause", "resume", "renew", "cancel"),
        "failing twice, then paid": ("pay", "fail", "fail", "renew"),
    }
    ALLOWED = ALLOWED_FROM
    INITIAL = PENDING
    ACYCLIC = False
    SIGNAL = {
        TRIALING: "subscription_trial_started",
        ACTIVE: "subscription_activated",
        DUE: "subscription_payment_failed",
        PAUSED: "subscription_paused",
        CANCELLED: "subscription_cancelled",
        EXPIRED: "subscription_expired",
    }
    ANY_CHANGE_SIGNAL = "subscription_status_changed"

    def __init__(self, env, scenario: str) -> None:
        super().__init__(env, scenario)
        env.clock.pin(T0)
        self.uid = uuid.uuid4().hex[:10]
        self.subscription_id = f"sub_{self.uid}"
        self.email = f"member-{self.uid}@example.com"
        self.session: PaymentSession | None = None
        self.khaime_sub: dict[str, Any] | None = None
        self.payments_made = 0
        #: Khaime's (status, next_payment_date) after each step it took: [0] before any.
        self.versions: list[tuple[str, str | None]] = [(PENDING, None)]
        self.event_version: dict[str, int] = {}  # event_id -> the version it reports
        self.applied_version = 0  # the newest version a report brought so far
        self._seen_payments: dict[str, int] = {}
        self._seen_next_payment: datetime | None = None

    # The scenario. ----------------------------------------------------------------------------

    def start(self) -> None:
        """The member presses Subscribe: a real POST to the checkout view."""
        token = Purchase(
            amount=PRICE, currency="USD", product_name="Monthly Membership", subscription_frequency_key="monthly"
        ).sign()
        response = with_commit_hooks(
            lambda: self.env.client.post(reverse("khaime:checkout"), {"token": token, "email": self.email})
        )
        assert response.status_code == 303, response.content[:300]
        self.session = PaymentSession.objects.get(customer_email=self.email)

    def khaime_takes(self, step: str) -> list[tuple[str, dict]]:
        self.env.clock.advance(STEP)
        now = self.env.clock.now()
        assert self.session is not None
        events: list[tuple[str, dict]] = []
        sub = self.khaime_sub
        if step in ("pay", "start trial"):
            assert sub is None
            sub = self.khaime_sub = self.env.khaime.subscriptions[self.subscription_id] = {
                "object": "subscription",
                "id": self.subscription_id,
                "product_id": 7,
                "product_title": "Monthly Membership",
                "customer_email": self.email,
                "amount": TOTAL,
                "currency": "USD",
                "frequency": "monthly",
                "status": ACTIVE,
                "next_payment_date": None,
                "created_at": iso(now),
                "cancelled_at": None,
                "ended_at": None,
                "session_id": self.session.session_id,
                "metadata": {"reference": str(self.session.reference)},
                "payment_history": [],
            }
            khaime_session = self.env.khaime.sessions[self.session.session_id]
            if step == "pay":
                khaime_session.status, khaime_session.completed_at = "completed", now
                sub["next_payment_date"] = iso(now + PERIOD)
                txn = self.pay(now)
                events += [
                    self.sub_event("subscription.created", now),
                    self.payment_event("payment.succeeded", txn, now),
                ]
            else:
                sub.update(status=TRIALING, next_payment_date=iso(now + TRIAL), trial_ends_at=iso(now + TRIAL))
                events += [
                    self.sub_event("subscription.created", now),
                    self.sub_event("subscription.trial_started", now),
                ]
        else:
            assert sub is not None
            if step == "trial ending":
                events.append(self.sub_event("subscription.trial_ending", now))
            elif step == "end trial":
                sub.update(status=ACTIVE, next_payment_date=iso(now + PERIOD))
                txn = self.pay(now)
                events += [
                    self.sub_event("subscription.trial_ended", now),
                    self.payment_event("payment.succeeded", txn, now),
                ]
            elif step == "renew":
                next_payment = datetime.fromisoformat(sub["next_payment_date"])
                sub.update(status=ACTIVE, next_payment_date=iso(next_payment + PERIOD))
                txn = self.pay(now)
                events += [
                    self.sub_event("subscription.renewed", now),
                    self.payment_event("payment.succeeded", txn, now),
                ]
            elif step == "fail":
                sub["status"] = DUE
                declined = f"txn_{self.uid}_declined_{len(self.versions)}"
                events += [
                    self.sub_event("subscription.payment_failed", now),
                    self.payment_event("payment.failed", declined, now),
                ]
            elif step in ("pause", "resume", "cancel", "expire"):
                sub["status"] = {"pause": PAUSED, "resume": ACTIVE, "cancel": CANCELLED, "expire": EXPIRED}[step]
                if step == "cancel":
                    sub["cancelled_at"] = iso(now)
                if step == "expire":
                    sub["ended_at"] = iso(now)
                event_type = {"pause": "paused", "resume": "resumed", "cancel": "cancelled", "expire": "expired"}[step]
                events.append(self.sub_event(f"subscription.{event_type}", now))
            else:
                raise AssertionError(f"unknown step {step!r}")
        self.versions.append((sub["status"], sub["next_payment_date"]))
        for _type, payload in events:
            self.event_version[payload["event_id"]] = len(self.versions) - 1
        return events

    def pay(self, now: datetime) -> str:
        """Khaime takes a period's money: a new entry of ``payment_history``."""
        assert self.khaime_sub is not None
        self.payments_made += 1
        txn = f"txn_{self.uid}_{self.payments_made}"
        self.khaime_sub["payment_history"].append(
            {
                "id": txn,
                "transaction_id": txn,
                "amount": TOTAL,
                "currency": "USD",
                "status": "succeeded",
                "refunded_amount": 0,
                "paid_at": iso(now),
            }
        )
        return txn

    def envelope(self, event_type: str, now: datetime, data: dict) -> tuple[str, dict]:
        return event_type, {
            "api_version": "2026-03-27",
            "event_id": f"evt_{uuid.uuid4()}",
            "event_type": event_type,
            "occurred_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "is_live": False,
            "business_id": "1042",
            "data": data,
        }

    def sub_event(self, event_type: str, now: datetime) -> tuple[str, dict]:
        """``data`` is the subscription object as GET /subscriptions/{id} answers, after the change."""
        assert self.khaime_sub is not None
        return self.envelope(
            event_type, now, {**self.khaime_sub, "payment_history": list(self.khaime_sub["payment_history"])}
        )

    def payment_event(self, event_type: str, txn: str, now: datetime) -> tuple[str, dict]:
        assert self.session is not None
        money = {"amount": TOTAL, "currency": "USD"}
        failed = event_type == "payment.failed"
        return self.envelope(
            event_type,
            now,
            {
                "object": "payment",
                "id": txn,
                "transaction_id": txn,
                "session_id": self.session.session_id,
                "subscription_id": self.subscription_id,
                "status": "failed" if failed else "succeeded",
                "payment_type": "subscription",
                "gateway": "stripe",
                "amounts": {"customer_paid": money, "merchant_gross": money},
                "refunded_amount": 0,
                "customer": {"email": self.email},
                "metadata": {"reference": str(self.session.reference)},
                "paid_at": None if failed else now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    def reconcile(self) -> None:
        self.sync()

    # What the app offers, through its public seams. ---------------------------------------------

    def sync(self) -> str:
        out = io.StringIO()
        with_commit_hooks(lambda: call_command("khaime_sync", "--grace", "0s", stdout=out))
        self.check_state_report(len(self.versions) - 1, "khaime_sync")
        return out.getvalue()

    def admin_refresh(self):
        row = self.stored()
        assert row is not None
        response = with_commit_hooks(
            lambda: self.env.admin_client.post(
                reverse("admin:khaime_django_subscription_changelist"),
                {"action": "refresh_from_khaime", "_selected_action": [row.pk]},
            )
        )
        assert response.status_code == 302, response.content[:300]
        self.check_state_report(len(self.versions) - 1, "admin refresh")
        return response

    # What is stored. --------------------------------------------------------------------------

    def stored(self) -> Subscription | None:
        return Subscription.objects.filter(subscription_id=self.subscription_id).first()

    def status(self) -> str:
        row = self.stored()
        return row.status if row is not None else PENDING

    def payments(self) -> dict[str, tuple]:
        """Our payments in the ledger: the transaction's place in Khaime's order -> its facts."""
        rows = Payment.objects.filter(transaction_id__startswith=f"txn_{self.uid}_").order_by("transaction_id")
        prefix = f"txn_{self.uid}_"
        return {
            row.transaction_id.removeprefix(prefix): (
                row.amount,
                row.currency,
                row.is_renewal,
                row.paid_at,
                row.subscription is not None and row.subscription.subscription_id == self.subscription_id,
                row.session_id == (self.session.pk if self.session else None),
            )
            for row in rows.select_related("subscription")
        }

    def snapshot(self) -> dict[str, Any]:
        row = self.stored()
        assert row is not None, "the subscription was never recorded"
        return {
            "status": row.status,
            "next_payment_date": row.next_payment_date,
            "cancelled_at": row.cancelled_at,
            "ended_at": row.ended_at,
            "trial_ends_at": row.trial_ends_at,
            "started_at": row.started_at,
            "amount": row.amount,
            "currency": row.currency,
            "frequency": row.frequency,
            "first_payment": row.first_transaction_id.removeprefix(f"txn_{self.uid}_"),
            "session_linked": row.session_id == (self.session.pk if self.session else None),
            "needs_review": row.needs_review,
            "payments": self.payments(),
        }

    def history(self) -> list[tuple[str, str]]:
        return list(
            SubscriptionStatusChange.objects.filter(subscription__subscription_id=self.subscription_id)
            .order_by("pk")
            .values_list("from_status", "to_status")
        )

    @property
    def signal_key(self) -> str:
        row = self.stored()
        return f"subscription:{row.pk}" if row is not None else "subscription:?"

    # The checks. ------------------------------------------------------------------------------

    def khaime_state(self, version: int) -> tuple[str, datetime | None]:
        status, next_payment = self.versions[version]
        return status, datetime.fromisoformat(next_payment) if next_payment else None

    def stored_state(self) -> tuple[str, datetime | None]:
        row = self.stored()
        return (row.status, row.next_payment_date) if row is not None else (PENDING, None)

    def check_state_report(self, version: int, what: str, before: tuple[str, datetime | None] | None = None) -> None:
        """Older news never overwrites newer: a report of Khaime's state at ``version`` that is
        the newest so far leaves exactly that state stored; an older one changes nothing."""
        if version >= self.applied_version:
            self.applied_version = version
            assert self.stored_state() == self.khaime_state(version), (
                f"{what} reported Khaime's state {self.khaime_state(version)} (step {version}),"
                f" the newest so far, but {self.stored_state()} is stored"
            )
        elif before is not None:
            assert self.stored_state() == before, (
                f"{what}, older (step {version}) than the news applied (step {self.applied_version}),"
                f" changed the stored state {before} to {self.stored_state()}"
            )

    def deliver(self, event: Event):
        before = self.stored_state()
        response = super().deliver(event)
        version = self.event_version[event.event_id]
        if event.event_type.startswith("subscription."):
            self.check_state_report(version, repr(event), before)
        elif self.stored_state() != before:
            # A payment event newer than the state applied changes the status (a payment failed:
            # due; received: active): it is then the newest news, and older reports must yield to it.
            assert version > self.applied_version, f"{event!r}, not newer than the state applied, changed {before}"
            self.applied_version = version
        return response

    def check_monotonic(self, before: str) -> None:
        """Money received is never undone (a recorded payment is never removed or changed), the
        next payment date never moves back, and every renewal's signal went out exactly once."""
        payments = self.payments()
        for txn, facts in self._seen_payments.items():
            assert txn in payments, f"payment {txn} was recorded and then removed"
            assert payments[txn][:2] == facts, f"payment {txn} changed from {facts} to {payments[txn][:2]}"
        self._seen_payments = {txn: facts[:2] for txn, facts in payments.items()}
        next_payment = self.stored_state()[1]
        if self._seen_next_payment is not None:
            assert next_payment is not None and next_payment >= self._seen_next_payment, (
                f"next_payment_date moved back from {self._seen_next_payment} to {next_payment}"
            )
        self._seen_next_payment = next_payment
        self.check_renewals_signalled_once()

    def check_renewals_signalled_once(self) -> None:
        renewed = Counter(txn for name, txn in self.env.signals.payments if name == "subscription_renewed")
        assert all(n == 1 for n in renewed.values()), f"subscription_renewed sent twice for a payment: {renewed}"
        renewals = {
            row.transaction_id
            for row in Payment.objects.filter(transaction_id__startswith=f"txn_{self.uid}_", is_renewal=True)
        }
        assert set(renewed) == renewals, (
            f"subscription_renewed went out for {set(renewed)}, the renewals are {renewals}"
        )
        if self.stored() is not None:
            created = self.env.signals.counts(self.signal_key)["subscription_created"]
            assert created == 1, f"subscription_created sent {created} times"

    def check_converged(self, canonical: Outcome) -> None:
        """The stored state equals the canonical run's; so do the counts of the signals that are
        about news rather than about the path (created, renewed, trial ending); the final
        status's signal went out as often as in the canonical run when that entered it once (a
        status Khaime enters twice, active, may be entered once when the news between is late)."""
        super().check_converged(canonical)
        mine = self.outcome()
        for name in ("subscription_created", "subscription_renewed", "subscription_trial_ending"):
            assert mine.signals[name] == canonical.signals[name], (
                f"{name} sent {mine.signals[name]} times; the canonical run sent it {canonical.signals[name]} times"
            )

    def implied_statuses(self, final: str) -> set[str]:
        canonical_entries = Counter(to for _, to in self._canonical_history)
        return {final} if canonical_entries[final] == 1 else set()

    _canonical_history: list[tuple[str, str]] = []


class SubscriptionMachine(ScenarioMachine):
    """Any order, any number of times, for one subscription."""

    world_class = SubscriptionWorld

    @initialize(scenario=st.sampled_from(sorted(SubscriptionWorld.SCENARIOS)))
    def subscribe(self, scenario: str) -> None:
        self.begin(scenario)
        self.w._canonical_history = self.canonical.history

    @property
    def w(self) -> SubscriptionWorld:
        assert isinstance(self.world, SubscriptionWorld)
        return self.world

    @rule()
    def khaime_sync(self) -> None:
        """khaime_sync lists Khaime's subscriptions and fetches the ones it cannot settle."""
        self._mark_step()
        self.w.sync()

    @precondition(lambda self: self.world is not None and self.w.stored() is not None)
    @rule()
    def admin_refresh(self) -> None:
        """The admin's "Refresh from Khaime" on the subscription."""
        self._mark_step()
        self.w.admin_refresh()

"""What every "any order, any number of times" state machine shares.

A **World** is one run of one scenario: Khaime's side (modelled here, answering the app's HTTP
calls through ``responses``) plus our app on the test database, driven only through public
seams (the views over the Django test client, signed webhooks, ``call_command``, the admin).
A **ScenarioMachine** is a Hypothesis rule-based machine that drives a World in any order:

- ``khaime_moves_on``: Khaime takes the scenario's next step (a payment, a refund...); the
  webhook event it sends, if any, goes into the ``events`` bundle;
- ``deliver``: any event Khaime has sent so far, delivered (again) through the real endpoint
  with a real signature;
- whatever the subclass adds (return pages, sync, admin...).

After every step the machine checks the World's **step invariants** (monotonicity, history,
exactly-once signals so far); at the end it **settles** the World (Khaime finishes its
scenario, every event not yet delivered is delivered once, reconciliation runs) and compares
it with the **canonical run** of the same scenario (each event delivered once, in order), which
it plays first, in a savepoint it rolls back.

Each example runs inside a savepoint rolled back in ``teardown``, so examples never see each
other's rows and the database is left as the test found it.

A new machine (subscriptions, refunds) writes a World subclass (its scenarios, Khaime's model,
``snapshot``, ``history``, its status spec) and a ScenarioMachine subclass with its own
``@initialize`` and extra rules; the delivery, isolation, canonical run and checks are these.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from unittest import mock
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from django.db import transaction
from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule

from ..conftest import API_BASE
from ..webhook_helpers import khaime_signature

# -- the pieces of an Env ---------------------------------------------------------------------


class Clock:
    """Moves ``django.utils.timezone.now`` forward (the app reads time only through it), so a
    machine can let a session's ``expires_at`` pass without sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self.pinned: datetime | None = None
        self._real_now = timezone.now
        self._patch = mock.patch("django.utils.timezone.now", self.now)

    def now(self) -> datetime:
        return (self.pinned or self._real_now()) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta

    def pin(self, moment: datetime) -> None:
        """Stop the clock at ``moment``: from now on only :meth:`advance` moves it, so every run
        of a scenario stores the same times (the subscription machine dates Khaime's news by it)."""
        self.pinned = moment

    def reset(self) -> None:
        self.offset = timedelta()
        self.pinned = None

    def __enter__(self) -> Clock:
        self._patch.start()
        return self

    def __exit__(self, *exc) -> None:
        self._patch.stop()


class SignalCounter:
    """Counts every khaime_django merchant signal, per object it was about."""

    def __init__(self) -> None:
        from khaime_django import signals

        self.sent: list[tuple[str, str]] = []  # (signal name, key of the object)
        #: (signal name, transaction id) of every signal sent with a ``payment`` (a renewal's).
        self.payments: list[tuple[str, str]] = []
        self._connected = []
        for name in dir(signals):
            signal = getattr(signals, name)
            if isinstance(signal, signals.Signal):

                def receiver(sender, _name=name, **kwargs):
                    self.sent.append((_name, self.key_of(kwargs)))
                    payment = kwargs.get("payment")
                    if payment is not None:
                        self.payments.append((_name, payment.transaction_id))

                self._connected.append((signal, receiver))

    @staticmethod
    def key_of(kwargs: Mapping[str, Any]) -> str:
        """The object a signal is about; a subscription or refund machine adds its keyword here."""
        for name in ("session", "subscription", "refund", "payment"):
            obj = kwargs.get(name)
            if obj is not None:
                return f"{name}:{getattr(obj, 'reference', None) or obj.pk}"
        return "?"

    def clear(self) -> None:
        self.sent.clear()
        self.payments.clear()

    def counts(self, key: str) -> Counter[str]:
        return Counter(name for name, sent_for in self.sent if sent_for == key)

    def __enter__(self) -> SignalCounter:
        for signal, receiver in self._connected:
            signal.connect(receiver, weak=False)
        return self

    def __exit__(self, *exc) -> None:
        for signal, receiver in self._connected:
            signal.disconnect(receiver)


@dataclass
class KhaimeSession:
    """Khaime's own record of a payment session: what GET /payments/sessions/{id} answers."""

    session_id: str
    amount: int
    currency: str
    expires_at: datetime
    status: str = "pending"
    completed_at: datetime | None = None


class KhaimeModel:
    """Khaime's side of the world, answering the app's HTTP calls (through ``responses``) from
    this in-process model instead of canned replies. Reset at the start of every World."""

    SESSION_URL = re.compile(re.escape(f"{API_BASE}/payments/sessions/") + r"(?P<id>[^/?]+)")
    SUBSCRIPTION_URL = re.compile(re.escape(f"{API_BASE}/subscriptions/") + r"(?P<id>[^/?]+)")
    SUBSCRIPTIONS_URL = re.compile(re.escape(f"{API_BASE}/subscriptions") + r"(\?.*)?$")

    def __init__(self) -> None:
        self.sessions: dict[str, KhaimeSession] = {}
        #: sub_... id -> the subscription object as GET /subscriptions/{id} answers it (with
        #: ``payment_history``), in the order Khaime created them.
        self.subscriptions: dict[str, dict[str, Any]] = {}
        #: txn_... -> {"amount", "currency"}: the payments Khaime took (what POST /refunds refunds).
        self.payments: dict[str, dict[str, Any]] = {}
        #: Every refund Khaime made, oldest first: {"refund_id", "transaction_id", "amount",
        #: "status" ("processing" or "completed"), "source" ("api" or "dashboard")}.
        self.refunds: list[dict[str, Any]] = []
        #: The answer to the next POST /refunds is lost (the refund is made; the client times out).
        self.lose_next_refund_answer = False
        self._ids = itertools.count(1)

    def reset(self) -> None:
        self.sessions.clear()
        self.subscriptions.clear()
        self.payments.clear()
        self.refunds.clear()
        self.lose_next_refund_answer = False

    def refundable(self, transaction_id: str) -> int:
        """What Khaime still lets be refunded: the amount less every refund processing or completed."""
        taken = sum(r["amount"] for r in self.refunds if r["transaction_id"] == transaction_id)
        return self.payments[transaction_id]["amount"] - taken

    def make_refund(self, transaction_id: str, amount: int, *, source: str) -> dict[str, Any]:
        refund = {
            "refund_id": f"ref_{transaction_id}_{len(self.refunds) + 1}",
            "transaction_id": transaction_id,
            "amount": amount,
            "currency": self.payments[transaction_id]["currency"],
            "status": "completed" if source == "dashboard" else "processing",
            "source": source,
        }
        self.refunds.append(refund)
        return refund

    def _create_refund(self, request):
        """``POST /refunds``: 404 for an unknown payment, 422 for more than remains refundable,
        else a ``processing`` refund; its answer lost if ``lose_next_refund_answer``."""
        body = json.loads(request.body)
        transaction_id = body.get("transaction_id")
        if transaction_id not in self.payments:
            return 404, {}, json.dumps({"success": False, "error": "Transaction not found"})
        remaining = self.refundable(transaction_id)
        amount = body.get("amount", remaining)
        if not isinstance(amount, int) or amount <= 0 or amount > remaining:
            return 422, {}, json.dumps({"success": False, "error": "Invalid amount", "details": {"amount": "invalid"}})
        refund = self.make_refund(transaction_id, amount, source="api")
        if self.lose_next_refund_answer:
            self.lose_next_refund_answer = False
            return requests.ReadTimeout("the answer to POST /refunds was lost")
        data = {key: refund[key] for key in ("refund_id", "status", "amount", "currency")}
        return 200, {"Content-Type": "application/json"}, json.dumps({"success": True, "data": data})

    def install(self, responses_mock) -> None:
        responses_mock.add_callback("POST", f"{API_BASE}/payments/sessions", callback=self._create)
        responses_mock.add_callback("GET", self.SESSION_URL, callback=self._get)
        responses_mock.add_callback("POST", f"{API_BASE}/refunds", callback=self._create_refund)
        responses_mock.add_callback("GET", self.SUBSCRIPTIONS_URL, callback=self._list_subscriptions)
        responses_mock.add_callback("GET", self.SUBSCRIPTION_URL, callback=self._get_subscription)

    def _list_subscriptions(self, request):
        """``GET /subscriptions``: a page of summaries, oldest first. Like Khaime's list, an item
        carries no ``payment_history``: a renewal is found by fetching the subscription."""
        query = parse_qs(urlsplit(request.url).query)
        limit, offset = int(query.get("limit", ["10"])[0]), int(query.get("offset", ["0"])[0])
        items = [
            {key: value for key, value in sub.items() if key != "payment_history"}
            for sub in self.subscriptions.values()
        ]
        page = {"subscriptions": items[offset : offset + limit], "total": len(items), "limit": limit, "offset": offset}
        return 200, {"Content-Type": "application/json"}, json.dumps({"success": True, "data": page})

    def _get_subscription(self, request):
        match = self.SUBSCRIPTION_URL.match(request.url)
        sub = self.subscriptions.get(unquote(match.group("id"))) if match else None
        if sub is None:
            return 404, {}, json.dumps({"success": False, "error": "Subscription not found"})
        return 200, {"Content-Type": "application/json"}, json.dumps({"success": True, "data": sub})

    def _create(self, request):
        body = json.loads(request.body)
        session_id = f"sess_prop_{next(self._ids)}_{uuid.uuid4().hex[:8]}"
        total = body["amount"] + 320
        self.sessions[session_id] = session = KhaimeSession(
            session_id=session_id,
            amount=total,
            currency=body["currency"],
            expires_at=timezone.now() + timedelta(hours=1),
        )
        data = {
            "session_id": session_id,
            "stripe_session_id": f"cs_test_{session_id}",
            "payment_url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "expires_at": iso(session.expires_at),
            "amount": total,
            "currency": body["currency"],
            "status": "pending",
            "mode": "sandbox",
            "payment_type": "one_time",
            "fee_details": {
                "base_product_price": body["amount"],
                "transaction_fee": 320,
                "total_amount": total,
                "customer_pays_fees": True,
            },
        }
        return 201, {"Content-Type": "application/json"}, json.dumps({"success": True, "data": data})

    def _get(self, request):
        match = self.SESSION_URL.match(request.url)
        session = self.sessions.get(match.group("id")) if match else None
        if session is None:
            return 404, {}, json.dumps({"success": False, "error": "Session not found"})
        data = {
            "session_id": session.session_id,
            "status": session.status,
            "amount": session.amount,
            "currency": session.currency,
            "payment_type": "one_time",
        }
        if session.completed_at is not None:
            data["completed_at"] = iso(session.completed_at)
        return 200, {"Content-Type": "application/json"}, json.dumps({"success": True, "data": data})


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Env:
    """Everything a World needs from pytest (tests/properties/conftest.py, ``world_env``)."""

    client: Client
    admin_client: Client
    khaime: KhaimeModel
    signals: SignalCounter
    clock: Clock


# -- delivery ---------------------------------------------------------------------------------


def with_commit_hooks(action: Callable[[], Any]) -> Any:
    """Run ``action`` and then the on-commit hooks it registered (merchant signals), as the real
    commit would: the test database never commits, it rolls back."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return action()


def post_signed(client: Client, body: bytes, **headers: str):
    """POST ``body`` to the webhook endpoint exactly as Khaime does, signed with the test secret."""
    return with_commit_hooks(
        lambda: client.post(
            reverse("khaime:webhook"),
            data=body,
            content_type="application/json",
            HTTP_X_KHAIME_SIGNATURE=khaime_signature(body),
            **headers,
        )
    )


def body_of(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Event:
    """One webhook event Khaime sent: its position in the scenario and its exact body."""

    index: int
    event_type: str
    event_id: str
    body: bytes

    def __repr__(self) -> str:  # how the minimal failing sequence prints it
        return f"<{self.index}:{self.event_type}>"


# -- isolation --------------------------------------------------------------------------------


class Savepoint:
    """A savepoint entered now and always rolled back by :meth:`rollback`."""

    def __init__(self) -> None:
        self._atomic = transaction.atomic()
        self._atomic.__enter__()

    def rollback(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)


# -- worlds -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What convergence compares: the stored state and the merchant signals."""

    snapshot: dict[str, Any]
    signals: Counter[str]
    history: list[tuple[str, str]] = field(default_factory=list)


class World:
    """One run of one scenario. Subclasses fill in the abstract parts."""

    #: scenario name -> the steps Khaime takes, in the canonical order.
    SCENARIOS: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: to_status -> the statuses the spec allows it from (written from DESIGN.md, independently
    #: of the app's own table, so a wrong entry there shows up here).
    ALLOWED: ClassVar[Mapping[str, frozenset[str]]] = {}
    #: The status a new object's history starts from.
    INITIAL: ClassVar[str] = ""
    #: Statuses that mean money was received (never left once reached).
    PAID: ClassVar[frozenset[str]] = frozenset()
    #: status -> its place in the order news arrives; a step never lowers it.
    RANK: ClassVar[Mapping[str, int]] = {}
    #: status -> the merchant signal sent when it is entered.
    SIGNAL: ClassVar[Mapping[str, str]] = {}
    #: The signal sent for every change, whatever the status.
    ANY_CHANGE_SIGNAL: ClassVar[str] = ""
    #: The status machine has no cycle, so a status entered twice is news applied twice. A
    #: machine with cycles (a subscription: active, due, active) sets it False.
    ACYCLIC: ClassVar[bool] = True

    def __init__(self, env: Env, scenario: str) -> None:
        self.env = env
        self.scenario = scenario
        self.steps = self.SCENARIOS[scenario]
        self.taken = 0  # how many of the scenario's steps Khaime has taken
        self.sent: list[Event] = []  # every event Khaime sent, in its order
        self.delivered: Counter[str] = Counter()  # event_id -> deliveries
        env.khaime.reset()
        env.clock.reset()

    # Abstract: the subclass's scenario. ------------------------------------------------------

    def start(self) -> None:
        """Create the object the scenario is about (e.g. a checkout)."""
        raise NotImplementedError

    def khaime_takes(self, step: str) -> list[tuple[str, dict]]:
        """Apply ``step`` to Khaime's model; return the events it sends as (type, payload)."""
        raise NotImplementedError

    def reconcile(self) -> None:
        """What the app runs to catch news no webhook brought (settling's last move)."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """The stored state convergence compares."""
        raise NotImplementedError

    def status(self) -> str:
        raise NotImplementedError

    def history(self) -> list[tuple[str, str]]:
        """The object's status history as (from, to), oldest first."""
        raise NotImplementedError

    @property
    def signal_key(self) -> str:
        raise NotImplementedError

    def check_after_delivery(self, event: Event, before: str) -> None:
        """Extra checks a World makes after each delivery (``before``: the status before it)."""

    # Shared. ----------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.taken >= len(self.steps)

    def khaime_moves_on(self) -> list[Event]:
        step = self.steps[self.taken]
        self.taken += 1
        events = []
        for event_type, payload in self.khaime_takes(step):
            event = Event(len(self.sent), event_type, payload["event_id"], body_of(payload))
            self.sent.append(event)
            events.append(event)
        return events

    def deliver(self, event: Event):
        before = self.status()
        response = post_signed(
            self.env.client, event.body, HTTP_X_KHAIME_EVENT=event.event_type, HTTP_X_KHAIME_EVENT_ID=event.event_id
        )
        self.delivered[event.event_id] += 1
        assert response.status_code == 200, (
            f"delivery of {event!r} answered {response.status_code}: {response.content[:300]!r}"
        )
        self.check_after_delivery(event, before)
        return response

    def settle(self) -> None:
        """Khaime finishes the scenario, every event never delivered is delivered once (in
        Khaime's order), and the app reconciles: all news has then arrived at least once."""
        while not self.finished:
            self.khaime_moves_on()
        for event in self.sent:
            if not self.delivered[event.event_id]:
                self.deliver(event)
        self.reconcile()

    def outcome(self) -> Outcome:
        return Outcome(self.snapshot(), self.env.signals.counts(self.signal_key), self.history())

    def play_canonically(self) -> Outcome:
        """The canonical run: each event delivered once, as soon as Khaime sends it; then settle."""
        self.start()
        while not self.finished:
            for event in self.khaime_moves_on():
                self.deliver(event)
        self.settle()
        return self.outcome()

    # Checks. ----------------------------------------------------------------------------------

    def check_history(self) -> None:
        """Status equals the last history entry; the history is a chain of allowed moves, and no
        status is entered twice (the machine has no cycle, so a repeat is news applied twice)."""
        history = self.history()
        previous = self.INITIAL
        for from_status, to_status in history:
            assert from_status == previous, f"history {history} is not a chain"
            assert from_status in self.ALLOWED.get(to_status, ()), (
                f"history {history} has {from_status} -> {to_status}, which the status machine forbids"
            )
            previous = to_status
        assert self.status() == previous, f"status is {self.status()}, but the history {history} ends in {previous}"
        entered = Counter(to_status for _, to_status in history)
        assert not self.ACYCLIC or all(n == 1 for n in entered.values()), f"history {history} enters a status twice"

    def check_signals_match_history(self) -> None:
        """Every merchant signal fired once per real change: never for no change, never twice."""
        history = self.history()
        counts = self.env.signals.counts(self.signal_key)
        expected = Counter(self.SIGNAL[to_status] for _, to_status in history if to_status in self.SIGNAL)
        expected[self.ANY_CHANGE_SIGNAL] = len(history)
        relevant = set(self.SIGNAL.values()) | {self.ANY_CHANGE_SIGNAL}
        got = Counter({name: n for name, n in counts.items() if name in relevant})
        assert +got == +expected, f"signals {dict(got)} do not match the history {history} (expected {dict(expected)})"

    def check_monotonic(self, before: str) -> None:
        after = self.status()
        if before in self.PAID:
            assert after in self.PAID, f"money received was undone: {before} -> {after}"
        assert self.RANK[after] >= self.RANK[before], f"older news overwrote newer: {before} -> {after}"

    def implied_statuses(self, final: str) -> set[str]:
        """The statuses whose signals every run ending in ``final`` must have sent exactly as the
        canonical run did (a skipped intermediate status, e.g. ``failed`` superseded by a payment,
        may legitimately send nothing)."""
        return {final}

    def check_converged(self, canonical: Outcome) -> None:
        mine = self.outcome()
        assert mine.snapshot == canonical.snapshot, (
            f"did not converge:\n  this run  {mine.snapshot}\n  canonical {canonical.snapshot}\n"
            f"  history   {mine.history}\n  canonical history {canonical.history}"
        )
        for status in self.implied_statuses(mine.snapshot["status"]):
            name = self.SIGNAL[status]
            assert mine.signals[name] == canonical.signals[name], (
                f"{name} sent {mine.signals[name]} times; the canonical run sent it {canonical.signals[name]} times"
            )


class ScenarioMachine(RuleBasedStateMachine):
    """The rules every World shares. A subclass sets ``world_class`` and defines an
    ``@initialize`` rule that calls :meth:`begin` with a drawn scenario."""

    world_class: ClassVar[type[World]]
    env: ClassVar[Env]
    #: scenario -> its canonical Outcome, computed once per test (the canonical run is
    #: deterministic, and replaying it for every example would double the cost).
    canonical_cache: ClassVar[dict[str, Outcome]]

    events = Bundle("events")

    @classmethod
    def bound(cls, env: Env) -> type[ScenarioMachine]:
        """This machine with ``env`` (from the test's fixtures) for run_state_machine_as_test."""
        return type(cls.__name__, (cls,), {"env": env, "canonical_cache": {}, "__module__": cls.__module__})

    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None
        self._savepoint = Savepoint()
        self._steps = self._checked = 0
        self._before = ""

    def begin(self, scenario: str) -> None:
        self.canonical = self._canonical(scenario)
        self.world = self.world_class(self.env, scenario)
        self.world.start()
        self._mark_step()

    def _canonical(self, scenario: str) -> Outcome:
        if scenario not in self.canonical_cache:
            savepoint = Savepoint()
            try:
                canonical = self.world_class(self.env, scenario)
                outcome = canonical.play_canonically()
                canonical.check_history()
                canonical.check_signals_match_history()
            finally:
                savepoint.rollback()
            # Sent signals belong to the rolled-back run; a later run of the scenario must start
            # from none (signal keys are unique per object, but keep the log short).
            self.env.signals.clear()
            self.canonical_cache[scenario] = outcome
        return self.canonical_cache[scenario]

    def _mark_step(self) -> None:
        self._steps += 1
        assert self.world is not None
        self._before = self.world.status()

    # The shared rules. ------------------------------------------------------------------------

    @precondition(lambda self: self.world is not None and not self.world.finished)
    @rule(target=events)
    def khaime_moves_on(self):
        """Khaime takes the scenario's next step; what it sends may be delivered later, or never."""
        assert self.world is not None
        self._mark_step()
        return multiple(*self.world.khaime_moves_on())

    @rule(event=events)
    def deliver(self, event: Event):
        """Deliver an event Khaime sent (first time or again), in whatever order."""
        assert self.world is not None
        self._mark_step()
        self.world.deliver(event)

    # The checks. ------------------------------------------------------------------------------

    @invariant()
    def every_step_keeps_the_promises(self) -> None:
        if self.world is None or self._checked == self._steps:
            return
        self.world.check_monotonic(self._before)
        self.world.check_history()
        self.world.check_signals_match_history()
        self._checked = self._steps

    def teardown(self) -> None:
        try:
            # Only after a run whose every step passed: a failing step is the failure to report.
            if self.world is not None and self._checked == self._steps:
                before = self.world.status()
                self.world.settle()
                self.world.check_monotonic(before)
                self.world.check_history()
                self.world.check_signals_match_history()
                self.world.check_converged(self.canonical)
        finally:
            self._savepoint.rollback()
            self.env.signals.clear()


class replaying:
    """Replays a sequence as Hypothesis prints it, with the same checks after every step and at
    the end; for the named examples of sequences the machines found::

        with replaying(PaymentSessionMachine, world_env) as state:
            state.checkout(scenario="paid")
            (paid,) = state.khaime_moves_on()
            state.deliver(event=paid)
    """

    def __init__(self, machine_class: type[ScenarioMachine], env: Env) -> None:
        self.machine = machine_class.bound(env)()

    def __enter__(self) -> _Steps:
        return _Steps(self.machine)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.machine._checked = -1  # teardown then only rolls back
        self.machine.teardown()


class _Steps:
    def __init__(self, machine: ScenarioMachine) -> None:
        self._machine = machine

    def __getattr__(self, name: str):
        method = getattr(self._machine, name)

        def step(**kwargs):
            result = method(**kwargs)
            self._machine.every_step_keeps_the_promises()
            return tuple(result.values) if hasattr(result, "values") else result

        return step

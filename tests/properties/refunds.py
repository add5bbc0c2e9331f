"""The Refund World and machine: a paid checkout refunded in parts, by the merchant's
``refund_payment`` calls (one whose answer is lost, so it is ``unknown`` until Khaime's
``refund.completed``) and in Khaime's dashboard; ``refund.completed`` and ``payment.refunded``
delivered in any order and any number of times, interleaved with ``khaime_sync`` and with refund
calls asking for more than remains (answered from Khaime's state at that moment).

The merchant refunds a payment they can see: a scenario's refund step delivers the payment's
own ``payment.succeeded`` first if it has not arrived yet (nothing else is delivered for it).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from khaime_django.models import Payment, Refund, RefundStatusChange
from khaime_django.services.refunds import RefundNotAllowed, refund_payment

from .payment_sessions import COMPLETED, PAID_AT, REFUNDED, PaymentSessionWorld
from .scaffolding import ScenarioMachine, iso, with_commit_hooks

REQUESTED, PROCESSING, UNKNOWN, FAILED = "requested", "processing", "unknown", "failed"
REFUND_COMPLETED = "completed"

#: A refund's statuses, from docs/refunds.md (written independently of the app's table).
REFUND_ALLOWED = {
    PROCESSING: frozenset({REQUESTED, UNKNOWN}),
    UNKNOWN: frozenset({REQUESTED}),
    REFUND_COMPLETED: frozenset({REQUESTED, PROCESSING, UNKNOWN}),
    FAILED: frozenset({REQUESTED, PROCESSING, UNKNOWN}),
}
REFUND_SIGNAL = {
    PROCESSING: "refund_processing",
    UNKNOWN: "refund_unknown",
    REFUND_COMPLETED: "refund_completed",
    FAILED: "refund_failed",
}


class RefundWorld(PaymentSessionWorld):
    SCENARIOS = {
        "paid, refunded in two parts, then the rest": (
            "pay",
            "ask 1000",
            "complete",
            "ask 1500",
            "complete",
            "ask rest",
            "complete",
        ),
        "a refund whose answer was lost, settled by refund.completed": (
            "pay",
            "ask 2000, answer lost",
            "complete",
            "ask rest",
            "complete",
        ),
        "a dashboard refund, then the rest asked": ("pay", "dashboard 1000", "ask rest", "complete"),
        "refunded in full in the dashboard": ("pay", "dashboard rest"),
    }

    def __init__(self, env, scenario: str) -> None:
        super().__init__(env, scenario)
        self.too_much: set[int] = set()  # pks of the refunds asked for more than remained
        self._seen_refunded = 0

    # The scenario. ----------------------------------------------------------------------------

    def khaime_takes(self, step: str) -> list[tuple[str, dict]]:
        if step == "pay":
            events = super().khaime_takes(step)
            self.env.khaime.payments[self.payment_id] = {"amount": self.paid_amount, "currency": "USD"}
            return events
        khaime = self.env.khaime
        if step.startswith("ask"):
            self.merchant_sees_the_payment()
            amount = khaime.refundable(self.payment_id) if step == "ask rest" else int(step.split()[1].rstrip(","))
            khaime.lose_next_refund_answer = step.endswith("answer lost")
            refund = self.ask(amount)
            expected = UNKNOWN if step.endswith("answer lost") else PROCESSING
            assert refund.status == expected, f"{step}: the refund is {refund.status}, expected {expected}"
            return []
        if step == "complete":
            refund = next(r for r in khaime.refunds if r["status"] == "processing")
            refund["status"] = "completed"
            return self.refund_events(refund)
        if step.startswith("dashboard"):
            amount = khaime.refundable(self.payment_id) if step == "dashboard rest" else int(step.split()[1])
            return self.refund_events(khaime.make_refund(self.payment_id, amount, source="dashboard"))
        raise AssertionError(f"unknown step {step!r}")

    def merchant_sees_the_payment(self) -> None:
        if not Payment.objects.filter(transaction_id=self.payment_id).exists():
            (paid,) = (event for event in self.sent if event.event_type == "payment.succeeded")
            self.deliver(paid)

    def ask(self, amount: int) -> Refund:
        payment = Payment.objects.get(transaction_id=self.payment_id)
        return with_commit_hooks(lambda: refund_payment(payment, amount=amount, reason="property test"))

    def refund_events(self, refund: dict[str, Any]) -> list[tuple[str, dict]]:
        """``refund.completed``; and ``payment.refunded`` after it when completed refunds reach
        the payment's amount."""
        assert self.session is not None
        when = iso(PAID_AT + timedelta(minutes=len(self.sent) + 1)).replace(".000Z", "Z")
        data = {
            "object": "refund",
            "id": refund["refund_id"],
            "refund_id": refund["refund_id"],
            "transaction_id": self.payment_id,
            "amount": refund["amount"],
            "currency": refund["currency"],
            "status": "completed",
            "reason": None,
            "session_id": self.session.session_id,
            "subscription_id": None,
            "metadata": {"reference": str(self.session.reference)},
            "created_at": when,
            "completed_at": when,
        }
        _type, completed = self.event("refund.completed")
        completed["data"] = data
        events = [("refund.completed", completed)]
        done = sum(r["amount"] for r in self.env.khaime.refunds if r["status"] == "completed")
        if done == self.paid_amount:
            event_type, refunded = self.event("payment.refunded")
            refunded["data"]["refunded_amount"] = done
            events.append((event_type, refunded))
        return events

    # What is stored. --------------------------------------------------------------------------

    def payment(self) -> Payment | None:
        return Payment.objects.filter(transaction_id=self.payment_id).first()

    def refunds(self):
        return Refund.objects.filter(payment__transaction_id=self.payment_id).order_by("created_at", "pk")

    def snapshot(self) -> dict[str, Any]:
        snapshot = super().snapshot()
        payment = self.payment()
        assert payment is not None, "the payment was never recorded"
        prefix = f"ref_{self.payment_id}_"
        snapshot.update(
            paid_at=payment.paid_at,
            refunded_amount=payment.refunded_amount,
            refundable_amount=payment.refundable_amount,
            session_refunded_amount=self.stored().refunded_amount,
            refunds=sorted(
                (
                    (refund.refund_id or "").removeprefix(prefix),
                    refund.origin,
                    refund.amount,
                    refund.status,
                    refund.completed_at,
                )
                for refund in self.refunds()
                if refund.pk not in self.too_much
            ),
        )
        return snapshot

    # The checks. ------------------------------------------------------------------------------

    def check_monotonic(self, before: str) -> None:
        """A refunded amount never decreases and never exceeds the payment; the session is
        ``refunded`` only once Khaime refunded all of it; every refund's history is a chain of
        allowed moves ending in its status; ``refund_completed`` went out once per completed
        refund; a refund asked for more than remained moved nothing."""
        super().check_monotonic(before)
        payment = self.payment()
        if payment is None:
            assert not self.refunds().exists()
            return
        refunded = payment.refunded_amount
        assert self._seen_refunded <= refunded <= payment.amount, (
            f"refunded {refunded} of {payment.amount} after {self._seen_refunded}"
        )
        self._seen_refunded = refunded
        assert payment.refundable_amount >= 0
        if self.status() == REFUNDED:
            done = sum(r["amount"] for r in self.env.khaime.refunds if r["status"] == "completed")
            assert done == payment.amount, f"the session is refunded, but Khaime refunded {done} of {payment.amount}"
        for refund in self.refunds():
            self.check_refund_history(refund)
            if refund.pk in self.too_much:
                assert refund.status == FAILED, f"a refund of more than remained is {refund.status}"

    def check_refund_history(self, refund: Refund) -> None:
        history = list(
            RefundStatusChange.objects.filter(refund=refund).order_by("pk").values_list("from_status", "to_status")
        )
        previous = REQUESTED
        for from_status, to_status in history:
            assert from_status == previous, f"refund history {history} is not a chain"
            assert from_status in REFUND_ALLOWED[to_status], (
                f"refund history {history} has {from_status} -> {to_status}"
            )
            previous = to_status
        assert refund.status == previous, f"refund is {refund.status}, its history {history} ends in {previous}"
        counts = self.env.signals.counts(f"refund:{refund.pk}")
        expected = Counter(REFUND_SIGNAL[to] for _, to in history)
        got = Counter({name: n for name, n in counts.items() if name in REFUND_SIGNAL.values()})
        assert got == expected, f"refund signals {dict(got)} do not match its history {history}"
        assert counts["refund_status_changed"] == len(history)

    def check_converged(self, canonical) -> None:
        super().check_converged(canonical)
        payment = self.payment()
        assert payment is not None
        fully = payment.refunded_amount == payment.amount
        assert (self.status() == REFUNDED) == fully, (
            f"the session is {self.status()} with {payment.refunded_amount} of {payment.amount} refunded"
        )
        if not fully:
            assert self.status() == COMPLETED


class RefundMachine(ScenarioMachine):
    """Any order, any number of times, for a checkout refunded in parts."""

    world_class = RefundWorld

    @initialize(scenario=st.sampled_from(sorted(RefundWorld.SCENARIOS)))
    def checkout(self, scenario: str) -> None:
        self.begin(scenario)

    @property
    def w(self) -> RefundWorld:
        assert isinstance(self.world, RefundWorld)
        return self.world

    @rule()
    def khaime_sync(self) -> None:
        self._mark_step()
        self.w.sync()

    @precondition(lambda self: self.world is not None and self.w.payment() is not None)
    @rule(extra=st.integers(min_value=1, max_value=6000))
    def merchant_asks_too_much(self, extra: int) -> None:
        """A refund of more than Khaime lets remain (a stale view: a dashboard refund not yet
        delivered): refused before anything is stored, or stored and then refused by Khaime
        (``failed``); either way no money moves."""
        self._mark_step()
        amount = self.w.env.khaime.refundable(self.w.payment_id) + extra
        refunds_before = set(self.w.refunds().values_list("pk", flat=True))
        try:
            refund = self.w.ask(amount)
        except RefundNotAllowed:
            assert set(self.w.refunds().values_list("pk", flat=True)) == refunds_before
            return
        self.w.too_much.add(refund.pk)
        assert refund.status == FAILED, f"a refund of {amount}, more than Khaime lets remain, is {refund.status}"

"""Minimal failing sequences the machines found, replayed step by step as Hypothesis printed
them. A new one starts as a strict xfail naming its defect and becomes a plain test with its fix
(then the marker and its KNOWN_DEFECTS entry in payment_sessions.py are removed)."""

from __future__ import annotations

import pytest

from . import payment_sessions
from .payment_sessions import PaymentSessionMachine
from .refunds import RefundMachine
from .scaffolding import replaying
from .subscriptions import SubscriptionMachine


@pytest.fixture
def strict(monkeypatch):
    """Check these sequences without the machine's tolerance for known defects."""
    monkeypatch.setattr(payment_sessions, "TOLERATE_KNOWN_DEFECTS", False)


def test_a_refund_before_the_payment_flags_a_wrong_amount_for_review(world_env, strict):
    with replaying(PaymentSessionMachine, world_env) as state:
        state.checkout(scenario="paid the wrong amount then refunded")
        state.khaime_moves_on()
        (refunded,) = state.khaime_moves_on()
        state.deliver(event=refunded)


def test_khaime_failed_after_an_offline_expiry_converges_to_failed(world_env, strict):
    with replaying(PaymentSessionMachine, world_env) as state:
        state.checkout(scenario="failed")
        state.khaime_moves_on()
        state.time_passes_expiry()
        state.merchant_reconciles(how="khaime_sync --offline")


# -- the same replay tool on sequences that hold (so a broken replay cannot hide a defect) -----


def test_a_refund_delivered_before_the_payment_still_converges(world_env):
    with replaying(PaymentSessionMachine, world_env) as state:
        state.checkout(scenario="paid then refunded")
        (paid,) = state.khaime_moves_on()
        (refunded,) = state.khaime_moves_on()
        state.deliver(event=refunded)
        state.deliver(event=paid)
        state.deliver(event=refunded)


def test_a_cancelled_session_paid_late_then_expired_offline_stays_paid(world_env):
    with replaying(PaymentSessionMachine, world_env) as state:
        state.checkout(scenario="paid")
        state.buyer_returns(page="cancel")
        state.khaime_moves_on()
        state.time_passes_expiry()
        state.merchant_reconciles(how="khaime_sync --offline")
        state.merchant_reconciles(how="admin refresh")
        state.buyer_returns(page="success")


def test_a_subscription_created_delivered_after_its_renewal_changes_nothing(world_env):
    with replaying(SubscriptionMachine, world_env) as state:
        state.subscribe(scenario="renewed twice, failing once, renewed, cancelled, expired")
        created, first_payment = state.khaime_moves_on()
        renewed, renewal_payment = state.khaime_moves_on()
        state.deliver(event=renewal_payment)
        state.deliver(event=renewed)
        state.deliver(event=created)
        state.khaime_sync()
        state.deliver(event=first_payment)
        state.deliver(event=renewal_payment)


def test_a_refund_completed_before_its_payment_keeps_khaimes_payment_time(world_env):
    """Found by the refund machine: a dashboard refund's refund.completed delivered before the
    payment.succeeded recorded the payment, and completed the session, at the time it arrived;
    the late payment.succeeded did not correct them, so completed_at depended on the order."""
    with replaying(RefundMachine, world_env) as state:
        state.checkout(scenario="refunded in full in the dashboard")
        (paid,) = state.khaime_moves_on()
        refund_completed, _payment_refunded = state.khaime_moves_on()
        state.deliver(event=refund_completed)
        state.deliver(event=paid)


def test_a_subscription_created_older_than_a_failed_payment_changes_nothing(world_env):
    """Found wrong in the machine itself (PostgreSQL, dev profile): a payment.failed delivered
    first makes the subscription due, and the older subscription.created must then change nothing."""
    with replaying(SubscriptionMachine, world_env) as state:
        state.subscribe(scenario="failing twice, then paid")
        state.khaime_moves_on()
        _payment_failed_sub, payment_failed = state.khaime_moves_on()
        state.deliver(event=payment_failed)

"""Any order, any number of times: a checkout's stored truth does not depend on the order or
the number of times news arrives (tests/properties/scaffolding.py says what is checked)."""

from __future__ import annotations

from hypothesis.stateful import run_state_machine_as_test

from .payment_sessions import PaymentSessionMachine


def test_payment_session_converges_whatever_the_order_of_news(world_env, hypothesis_settings):
    run_state_machine_as_test(PaymentSessionMachine.bound(world_env), settings=hypothesis_settings)

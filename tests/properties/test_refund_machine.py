"""Any order, any number of times: a refunded checkout's stored truth does not depend on the
order or the number of times news arrives (tests/properties/refunds.py says what is checked)."""

from __future__ import annotations

from hypothesis.stateful import run_state_machine_as_test

from .refunds import RefundMachine


def test_refunds_converge_whatever_the_order_of_news(world_env, hypothesis_settings):
    run_state_machine_as_test(RefundMachine.bound(world_env), settings=hypothesis_settings)

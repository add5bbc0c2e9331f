"""Any order, any number of times: a subscription's stored truth does not depend on the order or
the number of times news arrives (tests/properties/subscriptions.py says what is checked)."""

from __future__ import annotations

from hypothesis.stateful import run_state_machine_as_test

from .subscriptions import SubscriptionMachine


def test_subscription_converges_whatever_the_order_of_news(world_env, hypothesis_settings):
    run_state_machine_as_test(SubscriptionMachine.bound(world_env), settings=hypothesis_settings)

"""Subscriptions under real concurrency, on PostgreSQL (see test_webhook_races.py)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from khaime_django.models import Payment, Subscription, WebhookEvent

from .concurrency import run_together
from .subscription_helpers import subscription_event, subscription_object
from .test_webhook_races import ROUNDS
from .webhook_helpers import payment_event, post_webhook

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL=postgres://...)"),
    pytest.mark.django_db(transaction=True),
]


def test_renewed_and_payment_succeeded_together_are_one_payment_and_one_signal(make_session, signal_log):
    for round_ in range(ROUNDS):
        session = make_session(subscription_frequency_key="monthly")
        sub_id, txn = f"sub_race_{round_}", f"txn_renewal_{round_}"
        created = subscription_event("subscription.created", subscription_object(sub_id, session, payments=("txn_f",)))
        assert post_webhook(Client(), created).status_code == 200
        signal_log.clear()
        renewed = subscription_event(
            "subscription.renewed",
            subscription_object(sub_id, session, payments=("txn_f", txn)),
            occurred_at="2026-04-27T14:32:00Z",
        )
        paid = payment_event("payment.succeeded", session, id=txn, subscription_id=sub_id)
        answers = run_together(*(lambda p=p: post_webhook(Client(), p) for p in (renewed, paid, renewed, paid)))
        assert [answer.status_code for answer in answers] == [200] * 4
        assert Payment.objects.filter(transaction_id=txn).count() == 1
        assert Payment.objects.get(transaction_id=txn).subscription == Subscription.objects.get(subscription_id=sub_id)
        assert [kwargs["payment"].transaction_id for name, kwargs in signal_log if name == "subscription_renewed"] == [
            txn
        ]
    assert not WebhookEvent.objects.exclude(error="").exists()


def test_two_first_reports_of_a_subscription_make_one_row_and_one_created_signal(make_session, signal_log):
    for round_ in range(ROUNDS):
        session = make_session(subscription_frequency_key="monthly")
        sub_id = f"sub_new_{round_}"
        created = subscription_event("subscription.created", subscription_object(sub_id, session, payments=("txn_a",)))
        renewed = subscription_event(
            "subscription.renewed",
            subscription_object(sub_id, session, payments=("txn_a", f"txn_b{round_}")),
            occurred_at="2026-04-27T14:32:00Z",
        )
        signal_log.clear()
        run_together(*(lambda p=p: post_webhook(Client(), p) for p in (created, renewed, created, renewed)))
        assert Subscription.objects.filter(subscription_id=sub_id).count() == 1
        assert [name for name, _ in signal_log if name == "subscription_created"] == ["subscription_created"]
        assert [name for name, _ in signal_log if name == "subscription_renewed"] == ["subscription_renewed"]
        assert Subscription.objects.get(subscription_id=sub_id).next_payment_date is not None
    assert not WebhookEvent.objects.exclude(error="").exists()

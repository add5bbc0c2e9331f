"""The ledger under real concurrency, on PostgreSQL (see test_webhook_races.py)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from khaime_django.models import Payment, WebhookEvent

from .concurrency import run_together
from .test_webhook_races import ROUNDS
from .webhook_helpers import payment_event, post_webhook

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL=postgres://...)"),
    pytest.mark.django_db(transaction=True),
]


def test_concurrent_reports_of_one_transaction_record_one_payment(make_session):
    for round_ in range(ROUNDS):
        session = make_session()
        events = [payment_event("payment.succeeded", session, id=f"txn_race_{round_}") for _ in range(4)]
        answers = run_together(*(lambda payload=payload: post_webhook(Client(), payload) for payload in events))
        assert [answer.status_code for answer in answers] == [200] * 4
        assert Payment.objects.filter(transaction_id=f"txn_race_{round_}").count() == 1
        assert WebhookEvent.objects.filter(error="").count() == 4 * (round_ + 1)

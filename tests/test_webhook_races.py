"""Exactly-once under real concurrency, on PostgreSQL: real threads, each with its own database
connection, released together by a barrier (no sleeps). SQLite serialises every writer, so
these would prove nothing there and are skipped.

Every test runs inline and in task mode. In task mode the ImmediateBackend runs each delivery's
apply task in its own thread right after its commit, so tasks race each other, redeliveries,
return pages and expiry exactly as workers would (tests/integration/test_task_workers.py runs
real workers).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/h3 .venv/bin/python -m pytest tests/test_webhook_races.py
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from khaime_django import services
from khaime_django.models import (
    PaymentSession,
    Source,
    Status,
    StatusChange,
    WebhookEvent,
    WebhookOutcome,
)
from khaime_django.transitions import transition_many

from .concurrency import run_together
from .tasks_support import IMMEDIATE, task_mode
from .webhook_helpers import payment_event, post_webhook

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: SQLite serialises writers, so races cannot happen (set DATABASE_URL=postgres://...)",
    ),
    pytest.mark.django_db(transaction=True),
]

DELIVERIES = 8
ROUNDS = 10


@pytest.fixture(autouse=True, params=["inline", "task"])
def processing(request, settings):
    """Each race inline (the default) and in task mode."""
    if request.param == "task":
        task_mode(settings, IMMEDIATE)
    return request.param


def assert_acknowledged_once(responses, processing):
    """Inline: one delivery applies, the others are duplicates. Task mode: each is acknowledged
    at once (received, or duplicate once the event is applied); the state shows it applied once."""
    outcomes = Counter(r.json()["outcome"] for r in responses)
    if processing == "inline":
        assert [r.status_code for r in responses] == [200] * len(responses)
        assert outcomes == {"applied": 1, "duplicate": len(responses) - 1}
    else:
        assert set(outcomes) <= {"received", "duplicate"} and outcomes["received"] >= 1, outcomes
        assert all(r.status_code == (202 if r.json()["outcome"] == "received" else 200) for r in responses)


def deliver_from_thread(payload):
    return lambda: post_webhook(Client(), payload)


def history(session):
    return list(
        StatusChange.objects.filter(session=session)
        .order_by("created_at", "pk")
        .values_list("from_status", "to_status")
    )


def assert_consistent_history(session):
    """Each change starts where the previous one ended, and completed is never left for an unpaid state."""
    status = Status.PENDING
    for from_status, to_status in history(session):
        assert from_status == status, history(session)
        assert not (from_status == Status.COMPLETED and to_status not in (Status.REFUNDED, Status.DISPUTED))
        status = to_status
    assert status == PaymentSession.objects.get(pk=session.pk).status


def completed_signals(signal_log, session):
    return [k for name, k in signal_log if name == "payment_completed" and k["session"].pk == session.pk]


def test_the_same_event_delivered_concurrently_applies_once_and_signals_once(make_session, signal_log, processing):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    responses = run_together(*[deliver_from_thread(payload) for _ in range(DELIVERIES)])
    assert_acknowledged_once(responses, processing)
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.deliveries) == (WebhookOutcome.APPLIED, DELIVERIES)
    assert history(session) == [(Status.PENDING, Status.COMPLETED)]
    assert len(completed_signals(signal_log, session)) == 1


def test_concurrent_redeliveries_of_a_failed_event_apply_it_once(make_session, signal_log, processing):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    WebhookEvent.objects.create(
        event_id=payload["event_id"],
        event_type=payload["event_type"],
        payload=payload,
        outcome=WebhookOutcome.ERROR,
        error="our database was down",
    )
    responses = run_together(*[deliver_from_thread(payload) for _ in range(DELIVERIES)])
    assert_acknowledged_once(responses, processing)
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.error, event.deliveries) == (
        WebhookOutcome.APPLIED,
        "",
        1 + DELIVERIES,
    )
    assert len(completed_signals(signal_log, session)) == 1


def test_webhook_and_success_return_racing_complete_once_and_signal_once(make_session, khaime_says, signal_log):
    sessions = [make_session() for _ in range(ROUNDS)]
    for session in sessions:
        khaime_says(session, "completed")
        success_page = reverse("khaime:success", kwargs={"reference": session.reference})
        webhook, page = run_together(
            deliver_from_thread(payment_event("payment.succeeded", session)),
            lambda url=success_page: Client().get(url),
        )
        assert (webhook.status_code in (200, 202), page.status_code) == (True, 200)
        assert webhook.json()["outcome"] in ("applied", "duplicate", "received")
    for session in sessions:
        assert [to for _, to in history(session)] == [Status.COMPLETED]
        assert len(completed_signals(signal_log, session)) == 1
    sources = Counter(StatusChange.objects.values_list("source", flat=True))
    assert sum(sources.values()) == ROUNDS and set(sources) <= {
        Source.WEBHOOK,
        Source.RETURN,
    }


def test_completed_never_regresses_under_concurrent_failed_expired_cancel_and_succeeded(make_session, signal_log):
    sessions = [make_session() for _ in range(ROUNDS)]
    for session in sessions:
        cancel_page = reverse("khaime:cancel", kwargs={"reference": session.reference})
        run_together(
            deliver_from_thread(payment_event("payment.failed", session)),
            deliver_from_thread(payment_event("payment.succeeded", session)),
            lambda url=cancel_page: Client().get(url),
            lambda pk=session.pk: transition_many(
                PaymentSession.objects.filter(pk=pk), Status.EXPIRED, source=Source.SYNC
            ),
            lambda s=session: services.apply_khaime_status(
                PaymentSession.objects.get(pk=s.pk),
                {"status": "expired"},
                source=Source.SYNC,
            ),
        )
    for session in sessions:
        session.refresh_from_db()
        assert session.status == Status.COMPLETED
        assert_consistent_history(session)
        assert [to for _, to in history(session)].count(Status.COMPLETED) == 1
        assert len(completed_signals(signal_log, session)) == 1


def test_offline_expiry_racing_webhooks_never_overwrites_a_payment(make_session, signal_log):
    long_ago = timezone.now() - timedelta(hours=2)
    sessions = [make_session(expires_at=long_ago, created_at=long_ago) for _ in range(200)]
    paid = sessions[::10]
    run_together(
        lambda: services.expire_stale(grace=timedelta(0), batch_size=25),
        *[deliver_from_thread(payment_event("payment.succeeded", session)) for session in paid],
    )
    for session in sessions:
        session.refresh_from_db()
        assert session.status == (Status.COMPLETED if session in paid else Status.EXPIRED)
        assert_consistent_history(session)
    expired_signals = [k for name, k in signal_log if name == "payment_expired"]
    assert len(expired_signals) == StatusChange.objects.filter(to_status=Status.EXPIRED).count()
    assert all(len(completed_signals(signal_log, session)) == 1 for session in paid)

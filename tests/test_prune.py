"""manage.py khaime_prune_events: delete old processed webhook events in batches."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from khaime_django import services
from khaime_django.models import WebhookEvent, WebhookOutcome

from .webhook_helpers import new_event_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored_event():
    def store(outcome=WebhookOutcome.APPLIED, *, days_ago=40):
        return WebhookEvent.objects.create(
            event_id=new_event_id(),
            event_type="payment.succeeded",
            payload={},
            outcome=outcome,
            received_at=timezone.now() - timedelta(days=days_ago),
        )

    return store


def prune(*args) -> str:
    out = StringIO()
    call_command("khaime_prune_events", *args, stdout=out)
    return out.getvalue()


def remaining():
    return sorted(WebhookEvent.objects.values_list("outcome", flat=True))


def test_old_applied_ignored_and_duplicate_events_are_deleted(stored_event):
    for outcome in (
        WebhookOutcome.APPLIED,
        WebhookOutcome.IGNORED,
        WebhookOutcome.DUPLICATE,
    ):
        stored_event(outcome)
    output = prune("--older-than", "30d")
    assert remaining() == []
    assert output.splitlines()[0] == (
        "khaime_prune_events: deleted 3 webhook events older than 30 days; error and unmatched events kept"
    )


def test_recent_events_are_kept(stored_event):
    stored_event(days_ago=29)
    prune("--older-than", "30d")
    assert remaining() == [WebhookOutcome.APPLIED]


def test_error_unmatched_and_unfinished_events_are_kept(stored_event):
    for outcome in (
        WebhookOutcome.ERROR,
        WebhookOutcome.UNMATCHED,
        WebhookOutcome.RECEIVED,
    ):
        stored_event(outcome)
    prune("--older-than", "30d")
    assert remaining() == sorted([WebhookOutcome.ERROR, WebhookOutcome.UNMATCHED, WebhookOutcome.RECEIVED])


def test_include_failed_deletes_them_too(stored_event):
    for outcome in (
        WebhookOutcome.ERROR,
        WebhookOutcome.UNMATCHED,
        WebhookOutcome.APPLIED,
    ):
        stored_event(outcome)
    prune("--older-than", "30d", "--include-failed")
    assert remaining() == []


@pytest.mark.parametrize(("text", "remaining_count"), [("2w", 1), ("300h", 0), ("14", 1)])
def test_older_than_accepts_hours_days_and_weeks_and_a_bare_number_is_days(stored_event, text, remaining_count):
    stored_event(days_ago=15)
    stored_event(days_ago=13)
    prune("--older-than", text)
    assert WebhookEvent.objects.count() == remaining_count


def test_older_than_is_checked():
    with pytest.raises(CommandError, match="not a duration"):
        prune("--older-than", "30 days ago")


def test_dry_run_counts_and_deletes_nothing(stored_event):
    stored_event()
    assert "would delete 1 webhook events" in prune("--older-than", "30d", "--dry-run")
    assert WebhookEvent.objects.count() == 1


def test_deletes_in_batches(stored_event, django_assert_max_num_queries):
    for _ in range(5):
        stored_event()
    with django_assert_max_num_queries(20):
        deleted = services.prune_webhook_events(older_than=timedelta(days=30), batch_size=2)
    assert deleted == 5
    assert WebhookEvent.objects.count() == 0


# -- payload retention: the customer's personal data is redacted after N days (issue 10) -----------


def payment_payload(email="ada@example.com"):
    return {
        "event_id": "evt_1",
        "event_type": "payment.succeeded",
        "is_live": False,
        "data": {
            "id": "txn_1",
            "session_id": "sess_1",
            "amounts": {"customer_paid": {"amount": 5320, "currency": "USD"}},
            "customer": {"email": email, "first_name": "Ada", "phone": "+44 20 7946 0000"},
            "metadata": {"reference": "4f1c2a9e-0000-0000-0000-000000000000"},
            "items": [{"billing_details": {"name": "Ada Lovelace", "address": "1 St James's Sq"}}],
        },
    }


@pytest.fixture
def event_with_personal_data():
    def store(*, days_ago, outcome=WebhookOutcome.APPLIED):
        return WebhookEvent.objects.create(
            event_id=new_event_id(),
            event_type="payment.succeeded",
            payload=payment_payload(),
            outcome=outcome,
            received_at=timezone.now() - timedelta(days=days_ago),
        )

    return store


def test_payloads_past_the_retention_lose_the_customers_personal_data(event_with_personal_data, settings):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_PAYLOAD_RETENTION": 30}
    old = event_with_personal_data(days_ago=31, outcome=WebhookOutcome.ERROR)
    recent = event_with_personal_data(days_ago=29)
    output = prune()
    assert output.strip() == "khaime_prune_events: redacted personal data in 1 webhook payloads older than 30 days"
    old.refresh_from_db()
    recent.refresh_from_db()
    text = str(old.payload)
    for personal in ("ada@example.com", "Ada", "+44", "St James"):
        assert personal not in text
    data = old.payload["data"]
    assert data["customer"] == "[redacted]"
    assert data["amounts"] == payment_payload()["data"]["amounts"]  # what a re-apply needs stays
    assert data["metadata"] == payment_payload()["data"]["metadata"]
    assert (old.event_id, old.outcome) == (old.event_id, WebhookOutcome.ERROR)
    assert old.redacted_at is not None
    assert recent.payload == payment_payload() and recent.redacted_at is None


def test_the_default_retention_is_ninety_days(event_with_personal_data):
    kept = event_with_personal_data(days_ago=89)
    gone = event_with_personal_data(days_ago=91)
    prune("--older-than", "365d")
    kept.refresh_from_db()
    gone.refresh_from_db()
    assert kept.redacted_at is None and gone.redacted_at is not None


def test_a_redacted_event_is_still_a_duplicate_of_its_redelivery(event_with_personal_data, deliver, make_session):
    from .webhook_helpers import payment_event

    session = make_session()
    payload = payment_event("payment.succeeded", session)
    deliver(payload)
    WebhookEvent.objects.update(received_at=timezone.now() - timedelta(days=100))
    prune()
    assert deliver(payload).json()["outcome"] == "duplicate"


def test_no_retention_keeps_payloads_whole(event_with_personal_data, settings):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_PAYLOAD_RETENTION": None}
    event = event_with_personal_data(days_ago=400)
    assert "nothing to do" in prune()
    event.refresh_from_db()
    assert event.payload == payment_payload()


def test_a_bad_retention_is_a_clear_error(settings):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_PAYLOAD_RETENTION": "90 days"}
    with pytest.raises(CommandError, match="WEBHOOK_PAYLOAD_RETENTION"):
        prune()


def test_dry_run_counts_payloads_and_redacts_nothing(event_with_personal_data):
    event = event_with_personal_data(days_ago=91)
    assert "would redact personal data in 1 webhook payloads" in prune("--dry-run")
    event.refresh_from_db()
    assert event.payload == payment_payload()


def test_redacts_in_batches_each_once(event_with_personal_data, django_assert_max_num_queries):
    for _ in range(5):
        event_with_personal_data(days_ago=100)
    with django_assert_max_num_queries(30):
        assert services.redact_webhook_payloads(older_than=timedelta(days=90), batch_size=2) == 5
    assert services.redact_webhook_payloads(older_than=timedelta(days=90), batch_size=2) == 0
    assert not WebhookEvent.objects.filter(redacted_at=None).exists()

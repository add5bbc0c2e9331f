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
    assert output.strip() == (
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


def test_older_than_is_required_and_checked():
    with pytest.raises(CommandError):
        prune()
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

"""insert_unless_conflict: one statement where the database has ON CONFLICT ... RETURNING, a
savepoint elsewhere, and the same answers either way."""

import pytest
from django.db import IntegrityError, connection, transaction

from khaime_django.inserts import insert_unless_conflict
from khaime_django.models import WebhookEvent

pytestmark = pytest.mark.django_db


def event(event_id="evt_1", **fields):
    values = {"event_id": event_id, "event_type": "payment.succeeded", "api_version": "2026-03-27", "payload": {}}
    return WebhookEvent(**(values | fields))


@pytest.fixture(params=["one statement", "savepoint"])
def path(request, monkeypatch):
    if request.param == "savepoint":
        monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    return request.param


def test_a_new_row_is_saved_with_its_pk_and_defaults(path, django_assert_num_queries):
    row = event()
    with django_assert_num_queries(1 if path == "one statement" else 3):  # SAVEPOINT, INSERT, RELEASE
        assert insert_unless_conflict(row) is True
    stored = WebhookEvent.objects.get(pk=row.pk)
    assert (stored.event_id, stored.deliveries, stored.outcome, stored.received_at) == (
        "evt_1",
        1,
        "received",
        row.received_at,
    )
    assert row._state.adding is False


def test_a_twin_is_refused_and_the_callers_transaction_goes_on(path):
    insert_unless_conflict(event())
    with transaction.atomic():
        twin = event(event_type="payment.failed")
        assert insert_unless_conflict(twin) is False
        assert twin.pk is None
        # The transaction is not poisoned: it can still write and read.
        WebhookEvent.objects.filter(event_id="evt_1").update(deliveries=2)
    stored = WebhookEvent.objects.get(event_id="evt_1")
    assert (stored.event_type, stored.deliveries) == ("payment.succeeded", 2)


def test_a_violation_that_is_not_a_unique_one(path):
    """One statement: raised, as any error would be. The savepoint way cannot tell it from a
    unique conflict: False, and the caller's lookup of the twin then finds nothing."""
    if path == "one statement":
        with pytest.raises(IntegrityError), transaction.atomic():
            insert_unless_conflict(event(event_type=None))
    else:
        assert insert_unless_conflict(event(event_type=None)) is False
    assert not WebhookEvent.objects.exists()

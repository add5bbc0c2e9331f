"""The seams later work plugs into: the inbox's dispatch table, the reusable state machine, the
receiver-error collector, the one status home. Each is used here the way a new module would."""

from __future__ import annotations

import pytest
from django.db import transaction

from khaime_django import services, signals, statuses, transitions
from khaime_django.models import PaymentSession, Source, Status, WebhookEvent, WebhookOutcome

from .webhook_helpers import new_event_id


def subscription_event(event_type="subscription.renewed"):
    return {
        "api_version": "2026-03-27",
        "event_id": new_event_id(),
        "event_type": event_type,
        "occurred_at": "2026-03-27T14:32:00Z",
        "is_live": False,
        "business_id": "1042",
        "data": {"object": "subscription", "id": "sub_1"},
    }


def test_a_new_event_family_plugs_into_the_dispatch_table(deliver, monkeypatch, db):
    seen = []

    def apply_subscription_event(record, event, source):
        seen.append((record.event_id, event.event_type, source))
        return services.Applied(WebhookOutcome.APPLIED, detail="subscription renewed")

    monkeypatch.setitem(services.EVENT_HANDLERS, "subscription", apply_subscription_event)
    payload = subscription_event()
    response = deliver(payload)
    assert response.status_code == 200
    assert response.json()["outcome"] == WebhookOutcome.APPLIED
    stored = WebhookEvent.objects.get(event_id=payload["event_id"])
    assert (stored.outcome, stored.detail) == (WebhookOutcome.APPLIED, "subscription renewed")
    assert seen == [(payload["event_id"], "subscription.renewed", Source.WEBHOOK)]
    # A redelivery is a duplicate: the handler is not called again.
    assert deliver(payload).json()["outcome"] == WebhookOutcome.DUPLICATE
    assert len(seen) == 1


def test_a_family_without_a_handler_is_stored_as_ignored(deliver, db):
    assert "payout" not in services.EVENT_HANDLERS
    payload = subscription_event("payout.sent")
    assert deliver(payload).json()["outcome"] == WebhookOutcome.IGNORED
    assert "not an event khaime-django applies" in WebhookEvent.objects.get().detail


def test_a_handler_that_raises_is_stored_as_error_and_answered_500(deliver, monkeypatch, db):
    def broken(record, event, source):
        raise RuntimeError("handler bug")

    monkeypatch.setitem(services.EVENT_HANDLERS, "subscription", broken)
    assert deliver(subscription_event()).status_code == 500
    assert "handler bug" in WebhookEvent.objects.get().error


def test_handle_webhook_event_is_what_the_view_calls(deliver, monkeypatch, make_session):
    calls = []
    real = services.inbox.handle_webhook_event

    def spy(event):
        calls.append(event.event_id)
        return real(event)

    monkeypatch.setattr(services, "handle_webhook_event", spy)
    payload = subscription_event()
    deliver(payload)
    assert calls == [payload["event_id"]]


# -- the state machine ----------------------------------------------------------------------------


def test_the_payment_session_machine_is_registered():
    assert transitions.machine_for(PaymentSession) is transitions.PAYMENT_SESSIONS
    assert transitions.PAYMENT_SESSIONS.allowed_from is statuses.ALLOWED_FROM


def test_a_model_without_a_machine_is_refused(db):
    with pytest.raises(TypeError, match="WebhookEvent has no registered StateMachine"):
        transitions.transition(WebhookEvent(pk=1, event_id="e"), "applied", source=Source.ADMIN)
    with pytest.raises(TypeError):
        transitions.transition_many(WebhookEvent.objects.all(), "applied", source=Source.ADMIN)


def test_a_target_no_edge_leads_to_is_a_value_error(make_session):
    with pytest.raises(ValueError, match="No transition leads to"):
        transitions.transition(make_session(), Status.CREATED, source=Source.ADMIN)


# -- receiver errors ------------------------------------------------------------------------------


@pytest.fixture
def failing_receiver():
    def receiver(sender, **kwargs):
        raise ValueError("merchant bug")

    signals.payment_completed.connect(receiver, weak=False)
    yield
    signals.payment_completed.disconnect(receiver)


def test_receiver_errors_go_to_the_collector_of_the_block_the_transition_ran_in(
    make_session, failing_receiver, django_capture_on_commit_callbacks
):
    collected = []
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic(), transitions.collect_receiver_errors(collected.extend):
            assert transitions.transition(make_session(), Status.COMPLETED, source=Source.ADMIN)
        # The commit (and the receivers) come after the block: the hook was bound at transition time.
    assert [str(error) for error in collected] == ["merchant bug"]


def test_receiver_errors_outside_a_collector_are_only_logged(
    make_session, failing_receiver, django_capture_on_commit_callbacks, caplog
):
    with django_capture_on_commit_callbacks(execute=True):
        assert transitions.transition(make_session(), Status.COMPLETED, source=Source.ADMIN)
    assert "merchant bug" in caplog.text


def test_collectors_nest_and_restore():
    outer, inner = [], []
    with transitions.collect_receiver_errors(outer.extend):
        with transitions.collect_receiver_errors(inner.extend):
            assert transitions.current_receiver_error_hook() == inner.extend
        assert transitions.current_receiver_error_hook() == outer.extend
    assert transitions.current_receiver_error_hook() is None


# -- one status home ------------------------------------------------------------------------------


def test_every_status_set_and_map_uses_the_status_machine_s_statuses():
    known = set(Status.values)
    for group in (
        statuses.OPEN_STATUSES,
        statuses.AWAITING_STATUSES,
        statuses.PAID_STATUSES,
        statuses.FINAL_STATUSES,
    ):
        assert set(group) <= known
    assert set(statuses.REMOTE_STATUS.values()) <= set(statuses.ALLOWED_FROM)
    assert set(statuses.WEBHOOK_STATUS.values()) <= set(statuses.ALLOWED_FROM)
    # Open and final are disjoint, and together with nothing else cover every status.
    assert set(statuses.OPEN_STATUSES).isdisjoint(statuses.FINAL_STATUSES)
    assert set(statuses.OPEN_STATUSES) | set(statuses.FINAL_STATUSES) == known


@pytest.mark.parametrize("remote", ["completed", "failed", "expired", "pending", "mystery"])
def test_dry_run_and_real_sync_agree_on_what_khaime_s_answer_means(make_session, remote):
    session = make_session(Status.PENDING)
    planned = services.remote_target({"status": remote})
    changed = services.apply_khaime_status(session, {"status": remote}, source=Source.SYNC)
    assert changed == (planned is not None)
    assert session.status == (planned or Status.PENDING)

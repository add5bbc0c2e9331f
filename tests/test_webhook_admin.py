"""Django admin for the webhook inbox: browsable, read-only, and a wired "Apply again"."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from khaime_django.models import Source, Status, WebhookEvent, WebhookOutcome

from .webhook_helpers import payment_event

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:khaime_django_webhookevent_changelist"


def listed(admin_client, **params) -> list[WebhookEvent]:
    response = admin_client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def apply_again(admin_client, *events):
    return admin_client.post(
        reverse(CHANGELIST),
        {"action": "apply_again", "_selected_action": [event.pk for event in events]},
        follow=True,
    )


@pytest.fixture
def unmatched_event(deliver):
    """A payment.succeeded for Khaime session sess_late, which we do not know (yet)."""
    deliver(
        payment_event(
            "payment.succeeded",
            None,
            reference=None,
            session_id="sess_late",
            amount=5320,
        )
    )
    return WebhookEvent.objects.get(outcome=WebhookOutcome.UNMATCHED)


def test_inbox_lists_events_with_a_link_to_their_session(admin_client, deliver, make_session):
    session = make_session()
    deliver(payment_event("payment.succeeded", session))
    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    link = reverse("admin:khaime_django_paymentsession_change", args=[session.pk])
    assert f'href="{link}"' in response.content.decode()


def test_inbox_filters_by_type_outcome_and_live(admin_client, deliver, make_session, unmatched_event):
    deliver(payment_event("payment.failed", make_session(), is_live=True))
    assert listed(admin_client, outcome="unmatched") == [unmatched_event]
    assert [e.event_type for e in listed(admin_client, event_type="payment.failed")] == ["payment.failed"]
    assert [e.event_type for e in listed(admin_client, is_live__exact="1")] == ["payment.failed"]


def test_inbox_searches_by_event_id_session_id_and_reference(admin_client, deliver, make_session):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    deliver(payload)
    deliver(payment_event("payment.succeeded", make_session()))
    for term in (payload["event_id"], session.session_id, str(session.reference)):
        assert [e.event_id for e in listed(admin_client, q=term)] == [payload["event_id"]]


def test_event_page_shows_the_payload_read_only(admin_client, unmatched_event):
    response = admin_client.get(reverse("admin:khaime_django_webhookevent_change", args=[unmatched_event.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "<pre" in page and "&quot;session_id&quot;: &quot;sess_late&quot;" in page
    assert 'name="payload"' not in page and 'name="outcome"' not in page


def test_events_cannot_be_added_by_hand(admin_client):
    assert admin_client.get(reverse("admin:khaime_django_webhookevent_add")).status_code == 403


def test_apply_again_is_offered_on_the_list(admin_client, unmatched_event):
    response = admin_client.get(reverse(CHANGELIST))
    assert '<option value="apply_again">Apply again</option>' in response.content.decode()


def test_apply_again_applies_an_unmatched_event_once_its_session_exists(admin_client, unmatched_event, make_session):
    session = make_session(session_id="sess_late")
    response = apply_again(admin_client, unmatched_event)
    assert "Applied again: applied 1." in [str(m) for m in get_messages(response.wsgi_request)]
    unmatched_event.refresh_from_db()
    session.refresh_from_db()
    assert (unmatched_event.outcome, unmatched_event.session) == (
        WebhookOutcome.APPLIED,
        session,
    )
    assert session.status == Status.COMPLETED
    assert session.status_changes.get().source == Source.ADMIN


def test_apply_again_retries_an_event_that_failed_on_our_side(admin_client, make_session, deliver, monkeypatch):
    from khaime_django import services

    monkeypatch.setitem(services.EVENT_HANDLERS, "payment", lambda record, event, source: 1 / 0)
    session = make_session()
    deliver(payment_event("payment.succeeded", session))
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookOutcome.ERROR
    monkeypatch.undo()
    apply_again(admin_client, event)
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_apply_again_leaves_processed_events_alone(admin_client, deliver, make_session):
    session = make_session()
    deliver(payment_event("payment.failed", session))
    event = WebhookEvent.objects.get()
    response = apply_again(admin_client, event)
    assert "Applied again: 1 skipped (already processed)." in [str(m) for m in get_messages(response.wsgi_request)]
    assert session.status_changes.count() == 1


def test_still_unmatched_is_reported_as_a_warning(admin_client, unmatched_event):
    response = apply_again(admin_client, unmatched_event)
    [message] = get_messages(response.wsgi_request)
    assert (str(message), message.level_tag) == (
        "Applied again: unmatched 1.",
        "warning",
    )


def test_events_cannot_be_deleted_in_admin_so_a_replay_stays_a_duplicate(admin_client, deliver, make_session):
    """A deleted event would forget its event_id, and a replay of it would be applied as new."""
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    deliver(payload)
    event = WebhookEvent.objects.get()
    assert admin_client.get(reverse("admin:khaime_django_webhookevent_delete", args=[event.pk])).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:khaime_django_webhookevent_delete", args=[event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert "delete_selected" not in admin_client.get(reverse(CHANGELIST)).content.decode()
    admin_client.post(reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    assert WebhookEvent.objects.filter(pk=event.pk).exists()
    deliver(payload)
    event.refresh_from_db()
    assert event.deliveries == 2
    assert WebhookEvent.objects.count() == 1


# -- deliveries that ended in error are visible (issue 10, item 15) ---------------------------------


@pytest.fixture
def failed_refund(make_session, deliver, monkeypatch):
    """A refund whose delivery failed on our side: Khaime's session still says completed, so
    reconciliation cannot recover it; only an operator can."""
    from khaime_django import services

    session = make_session(Status.COMPLETED)
    monkeypatch.setitem(services.EVENT_HANDLERS, "payment", lambda record, event, source: 1 / 0)
    deliver(payment_event("payment.refunded", session))
    monkeypatch.undo()
    return session, WebhookEvent.objects.get(outcome=WebhookOutcome.ERROR)


def warnings_on(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]


@pytest.mark.parametrize(
    "changelist", ["admin:khaime_django_webhookevent_changelist", "admin:khaime_django_paymentsession_changelist"]
)
def test_changelists_warn_about_deliveries_that_ended_in_error(admin_client, failed_refund, changelist):
    response = admin_client.get(reverse(changelist))
    [warning] = warnings_on(response)
    assert "1 webhook delivery ended in error" in warning
    assert reverse(CHANGELIST) + "?outcome__exact=error" in warning
    assert "1 webhook delivery ended in error" in response.content.decode()


def test_the_error_filter_lists_exactly_the_failed_deliveries(admin_client, failed_refund, deliver, make_session):
    deliver(payment_event("payment.succeeded", make_session()))
    assert listed(admin_client, outcome__exact="error") == [failed_refund[1]]


def test_session_page_names_the_failed_delivery_about_it(admin_client, failed_refund, make_session):
    session, event = failed_refund
    response = admin_client.get(reverse("admin:khaime_django_paymentsession_change", args=[session.pk]))
    page = response.content.decode()
    assert "ended in error and was not applied" in page
    assert reverse("admin:khaime_django_webhookevent_change", args=[event.pk]) in page
    other = make_session(Status.COMPLETED)
    response = admin_client.get(reverse("admin:khaime_django_paymentsession_change", args=[other.pk]))
    assert "ended in error and was not applied" not in response.content.decode()


def test_no_warning_without_failed_deliveries(admin_client, deliver, make_session):
    deliver(payment_event("payment.succeeded", make_session()))
    response = admin_client.get(reverse(CHANGELIST))
    assert warnings_on(response) == []

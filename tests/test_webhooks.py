"""The webhook endpoint, one rule per test, with real signed bodies through the view."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from khaime_django import services
from khaime_django.checks import check_khaime_settings
from khaime_django.models import (
    Source,
    Status,
    StatusChange,
    WebhookEvent,
    WebhookOutcome,
)
from khaime_django.statuses import WEBHOOK_STATUS
from khaime_django.webhook_views import WebhookBodyTooLarge, read_body

from .webhook_helpers import (
    SECRET,
    khaime_signature,
    legacy_payment_event,
    payment_event,
    post_webhook,
    to_body,
)

pytestmark = pytest.mark.django_db


def signals_named(log, name):
    return [kwargs for signal, kwargs in log if signal == name]


# -- verification ---------------------------------------------------------------------------------


def test_wrong_secret_is_refused_with_401_and_nothing_stored(deliver, make_session):
    session = make_session()
    response = deliver(payment_event("payment.succeeded", session), secret="whsec_someone_else")
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()
    session.refresh_from_db()
    assert session.status == Status.PENDING


def test_missing_signature_header_is_refused_with_401_and_nothing_stored(deliver, make_session):
    response = deliver(payment_event("payment.succeeded", make_session()), secret=None)
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()


def test_reserialised_json_fails_verification(deliver, make_session):
    payload = payment_event("payment.succeeded", make_session())
    signed = to_body(payload)
    reserialised = json.dumps(json.loads(signed), indent=2).encode()
    response = deliver(body=reserialised, signature=khaime_signature(signed))
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()


def test_second_secret_verifies_while_rotating(deliver, make_session, settings):
    settings.KHAIME = {
        **settings.KHAIME,
        "WEBHOOK_SECRETS": ["whsec_new_secret", SECRET],
    }
    old = deliver(payment_event("payment.succeeded", make_session()), secret=SECRET)
    new = deliver(payment_event("payment.succeeded", make_session()), secret="whsec_new_secret")
    assert (old.status_code, new.status_code) == (200, 200)
    assert WebhookEvent.objects.filter(outcome=WebhookOutcome.APPLIED).count() == 2


def test_without_a_configured_secret_every_event_is_refused(deliver, make_session, settings):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_SECRETS": []}
    response = deliver(payment_event("payment.succeeded", make_session()), secret=SECRET)
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()
    assert "khaime.W002" in [message.id for message in check_khaime_settings()]


def test_refusal_logs_which_check_failed_but_never_the_secret(deliver, make_session, caplog):
    payload = payment_event("payment.succeeded", make_session())
    with caplog.at_level(logging.WARNING, logger="khaime_django"):
        deliver(payload, secret="whsec_someone_else")
        deliver(payload, secret=None)
    text = caplog.text
    assert "matches none of the 1 configured secret(s)" in text
    assert "X-Khaime-Signature header is missing" in text
    assert payload["event_id"] in text
    assert SECRET not in text and "whsec_someone_else" not in text


def test_signed_body_that_is_not_json_is_400(deliver):
    response = deliver(body=b"event_id=evt_1&event_type=payment.succeeded")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_signed_json_that_is_not_an_object_is_400(deliver):
    response = deliver(body=b'[{"event_id": "evt_1", "event_type": "payment.succeeded"}]')
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("missing", ["event_id", "event_type"])
def test_event_without_id_or_type_is_400_and_nothing_stored(deliver, make_session, missing):
    payload = payment_event("payment.succeeded", make_session())
    del payload[missing]
    response = deliver(payload)
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_event_id_longer_than_the_inbox_column_is_400(deliver, make_session):
    response = deliver(payment_event("payment.succeeded", make_session(), event_id="evt_" + "x" * 300))
    assert response.status_code == 400


# -- HTTP ---------------------------------------------------------------------------------------


def test_get_is_405(client):
    assert client.get(reverse("khaime:webhook")).status_code == 405


def test_post_needs_no_csrf_token(make_session, django_capture_on_commit_callbacks):
    strict = Client(enforce_csrf_checks=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_webhook(strict, payment_event("payment.succeeded", make_session()))
    assert response.status_code == 200


def test_body_over_the_limit_is_413_and_nothing_stored(deliver, make_session, settings):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_MAX_BODY": 2048}
    payload = payment_event("payment.succeeded", make_session(), padding="x" * 4096)
    response = deliver(payload)
    assert response.status_code == 413
    assert not WebhookEvent.objects.exists()


def test_default_limit_is_one_mebibyte(deliver, make_session):
    payload = payment_event("payment.succeeded", make_session(), padding="x" * (1024 * 1024))
    assert deliver(payload).status_code == 413


def test_declared_length_over_the_limit_is_refused_before_reading():
    request = RequestFactory().post("/", data=b"{}", content_type="application/json", CONTENT_LENGTH="5000000")
    request._stream = ExplodingStream()
    with pytest.raises(WebhookBodyTooLarge):
        read_body(request, limit=1024)


def test_body_longer_than_a_missing_content_length_says_is_refused():
    request = RequestFactory().post("/", data=b"{}", content_type="application/json")
    del request.META["CONTENT_LENGTH"]
    request._stream = io.BytesIO(b"x" * 5000)  # as behind ASGI or a chunked upload
    with pytest.raises(WebhookBodyTooLarge):
        read_body(request, limit=1024)


def test_a_lying_short_content_length_truncates_the_body_and_fails_verification(deliver, make_session):
    payload = payment_event("payment.succeeded", make_session())
    response = deliver(payload, CONTENT_LENGTH="40")
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()


class ExplodingStream:
    def read(self, *args):
        raise AssertionError("the body was read")


# -- the inbox ------------------------------------------------------------------------------------


def test_verified_event_is_stored_with_its_envelope(deliver, make_session):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    response = deliver(payload)
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "applied"}
    event = WebhookEvent.objects.get()
    assert event.event_id == payload["event_id"]
    assert event.event_type == "payment.succeeded"
    assert event.api_version == "2026-03-27"
    assert event.is_live is False
    assert event.payload == payload
    assert event.outcome == WebhookOutcome.APPLIED
    assert event.session == session
    assert event.received_at <= event.processed_at
    assert event.deliveries == 1
    assert event.error == ""


def test_duplicate_delivery_is_acknowledged_and_changes_nothing(deliver, make_session, signal_log):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    first = deliver(payload)
    second = deliver(payload)
    assert first.status_code == second.status_code == 200
    assert second.json()["outcome"] == "duplicate"
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookOutcome.APPLIED
    assert event.deliveries == 2
    assert StatusChange.objects.filter(session=session, to_status=Status.COMPLETED).count() == 1
    assert len(signals_named(signal_log, "payment_completed")) == 1


def test_unknown_event_type_is_acknowledged_and_stored_as_ignored(deliver, make_session):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    payload["event_type"] = "subscription.trial_ending"
    response = deliver(payload)
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookOutcome.IGNORED
    session.refresh_from_db()
    assert session.status == Status.PENDING


def test_event_for_no_known_session_is_acknowledged_and_stored_as_unmatched(deliver):
    response = deliver(
        payment_event(
            "payment.succeeded",
            None,
            reference="9b2e4c54-1f43-4e0a-9d8e-3c9f1f6b2a77",
            session_id="sess_nobody_knows",
        )
    )
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookOutcome.UNMATCHED
    assert "sess_nobody_knows" in event.detail


def test_redelivered_unmatched_event_counts_as_processed(deliver):
    payload = payment_event("payment.succeeded", None, session_id="sess_nobody_knows")
    deliver(payload)
    assert deliver(payload).json()["outcome"] == "duplicate"


@pytest.fixture
def failing_apply(monkeypatch):
    """Our own bug: the status change is made, then something after it in the apply raises."""
    real_handler = services.EVENT_HANDLERS["payment"]

    def apply_then_fail(*args, **kwargs):
        real_handler(*args, **kwargs)
        raise RuntimeError("simulated failure after the status change")

    monkeypatch.setitem(services.EVENT_HANDLERS, "payment", apply_then_fail)
    return monkeypatch


def test_our_failure_answers_500_keeps_the_error_and_rolls_back_the_partial_apply(
    deliver, make_session, failing_apply, signal_log
):
    session = make_session()
    response = deliver(payment_event("payment.succeeded", session))
    assert response.status_code == 500
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookOutcome.ERROR
    assert "simulated failure after the status change" in event.error
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert not StatusChange.objects.filter(session=session).exists()
    assert signal_log == []


def test_retried_delivery_after_our_failure_is_applied(deliver, make_session, failing_apply, signal_log):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    assert deliver(payload).status_code == 500
    failing_apply.undo()
    retry = deliver(payload)
    assert retry.status_code == 200
    assert retry.json()["outcome"] == "applied"
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.error, event.deliveries) == (
        WebhookOutcome.APPLIED,
        "",
        2,
    )
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert len(signals_named(signal_log, "payment_completed")) == 1


def test_a_failure_on_the_first_try_only_is_applied_on_the_second(
    deliver, make_session, signal_log, monkeypatch, caplog
):
    """The apply runs without a savepoint; when it fails, the delivery is recorded and applied
    once more (with one): a passing failure (a deadlock, a dropped lock) costs nothing."""
    real_handler = services.EVENT_HANDLERS["payment"]
    calls = []

    def fail_once(*args, **kwargs):
        calls.append(1)
        result = real_handler(*args, **kwargs)
        if len(calls) == 1:
            raise RuntimeError("a passing failure")
        return result

    monkeypatch.setitem(services.EVENT_HANDLERS, "payment", fail_once)
    session = make_session()
    response = deliver(payment_event("payment.succeeded", session))
    assert (response.status_code, response.json()["outcome"]) == (200, "applied")
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.error, event.deliveries) == (WebhookOutcome.APPLIED, "", 1)
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert StatusChange.objects.filter(session=session).count() == 1
    assert len(signals_named(signal_log, "payment_completed")) == 1
    assert "trying once more" in caplog.text


def test_a_redelivery_that_fails_twice_is_counted_once(deliver, make_session, failing_apply):
    payload = payment_event("payment.succeeded", make_session())
    assert deliver(payload).status_code == 500
    assert deliver(payload).status_code == 500
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.deliveries) == (WebhookOutcome.ERROR, 2)


@pytest.mark.django_db(transaction=True)
def test_a_new_event_is_applied_without_a_savepoint(make_session, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    session = make_session()
    with CaptureQueriesContext(connection) as queries:
        assert post_webhook(client, payment_event("payment.succeeded", session)).json()["outcome"] == "applied"
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert "SAVEPOINT" not in statements, statements
    assert statements.count("BEGIN") <= 1 and statements.count("COMMIT") <= 1


@pytest.mark.django_db(transaction=True)
def test_failed_apply_keeps_its_error_under_atomic_requests(make_session, failing_apply, monkeypatch, client):
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    assert post_webhook(client, payload).status_code == 500
    assert WebhookEvent.objects.get().outcome == WebhookOutcome.ERROR
    failing_apply.undo()
    assert post_webhook(client, payload).status_code == 200
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


# -- applying payment events ----------------------------------------------------------------------


def test_payment_succeeded_completes_the_session(deliver, make_session, signal_log):
    session = make_session()
    deliver(payment_event("payment.succeeded", session))
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert session.completed_at.isoformat() == "2026-03-27T14:31:58+00:00"
    assert not session.needs_review
    change = session.status_changes.get()
    assert (change.from_status, change.to_status, change.source) == (
        Status.PENDING,
        Status.COMPLETED,
        Source.WEBHOOK,
    )
    [completed] = signals_named(signal_log, "payment_completed")
    assert completed["session"] == session and completed["source"] == Source.WEBHOOK


def test_payment_failed_fails_a_pending_session(deliver, make_session, signal_log):
    session = make_session()
    deliver(payment_event("payment.failed", session))
    session.refresh_from_db()
    assert session.status == Status.FAILED
    assert len(signals_named(signal_log, "payment_failed")) == 1


def test_payment_refunded_refunds_a_completed_session(deliver, make_session, signal_log):
    session = make_session(Status.COMPLETED)
    deliver(payment_event("payment.refunded", session))
    session.refresh_from_db()
    assert session.status == Status.REFUNDED
    assert len(signals_named(signal_log, "payment_refunded")) == 1


def test_payment_disputed_disputes_a_completed_session(deliver, make_session, signal_log):
    session = make_session(Status.COMPLETED)
    deliver(payment_event("payment.disputed", session))
    session.refresh_from_db()
    assert session.status == Status.DISPUTED
    assert len(signals_named(signal_log, "payment_disputed")) == 1


def test_refund_arriving_before_success_records_the_payment_then_the_refund(deliver, make_session, signal_log):
    session = make_session()
    deliver(payment_event("payment.refunded", session))
    late_success = deliver(payment_event("payment.succeeded", session))
    session.refresh_from_db()
    assert session.status == Status.REFUNDED
    assert [c.to_status for c in session.status_changes.all()] == [
        Status.COMPLETED,
        Status.REFUNDED,
    ]
    assert late_success.json()["outcome"] == "duplicate"
    assert [name for name, _ in signal_log if name != "payment_status_changed"] == [
        "payment_completed",
        "payment_refunded",
    ]


def test_session_is_matched_by_reference_without_a_session_id(deliver, make_session):
    session = make_session()
    deliver(payment_event("payment.succeeded", session, session_id=None))
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_session_is_matched_by_khaime_session_id_without_a_reference(deliver, make_session):
    session = make_session()
    deliver(payment_event("payment.succeeded", session, reference=None))
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_reference_wins_over_session_id(deliver, make_session):
    ours, other = make_session(), make_session()
    deliver(payment_event("payment.succeeded", ours, session_id=other.session_id))
    ours.refresh_from_db()
    other.refresh_from_db()
    assert (ours.status, other.status) == (Status.COMPLETED, Status.PENDING)


def test_session_id_under_another_key_is_matched(deliver, make_session):
    session = make_session()
    payload = payment_event("payment.succeeded", session, reference=None, session_id=None)
    payload["data"]["session"] = {"id": session.session_id}
    deliver(payload)
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_a_session_whose_khaime_call_never_answered_is_completed_by_reference(deliver, make_session):
    session = make_session(Status.ERROR, session_id=None)
    deliver(payment_event("payment.succeeded", session))
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_legacy_payload_completes_the_session(deliver, make_session):
    session = make_session()
    response = deliver(legacy_payment_event("payment.succeeded", session))
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert not session.needs_review
    event = WebhookEvent.objects.get()
    assert event.api_version == ""


def test_legacy_payload_takes_its_version_from_the_header(deliver, make_session):
    deliver(
        legacy_payment_event("payment.succeeded", make_session()),
        HTTP_X_KHAIME_API_VERSION="2025-11-01",
    )
    assert WebhookEvent.objects.get().api_version == "2025-11-01"


# -- payments that do not match the session --------------------------------------------------------


def test_wrong_amount_still_completes_but_flags_for_review(deliver, make_session, signal_log):
    session = make_session()
    deliver(payment_event("payment.succeeded", session, amount=5000))
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert session.needs_review
    assert "paid 5000 USD, but the session expects 5320 USD" in session.review_reason
    [review] = signals_named(signal_log, "payment_needs_review")
    event = WebhookEvent.objects.get()
    assert review["session"] == session
    assert review["event"] == event
    assert review["reason"] == session.review_reason
    assert event.outcome == WebhookOutcome.APPLIED and "needs review" in event.detail


def test_wrong_currency_flags_for_review(deliver, make_session):
    session = make_session()
    deliver(payment_event("payment.succeeded", session, currency="EUR"))
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.COMPLETED, True)
    assert "paid in EUR, but the session is in USD" in session.review_reason


@pytest.mark.parametrize("event_type", ["payment.succeeded", "payment.refunded", "payment.disputed", "payment.failed"])
def test_live_event_for_a_sandbox_session_is_never_applied_and_flags_for_review(
    deliver, make_session, signal_log, event_type
):
    """Issue 10, item 3: stored as ignored, the session flagged, payment_needs_review sent."""
    session = make_session()
    response = deliver(payment_event(event_type, session, is_live=True))
    assert response.status_code == 200
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.PENDING, True)
    assert "a live event for a sandbox session" in session.review_reason
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.session) == (WebhookOutcome.IGNORED, session)
    assert "not applied" in event.detail
    [review] = signals_named(signal_log, "payment_needs_review")
    assert (review["session"], review["event"]) == (session, event)
    assert not session.status_changes.exists()


def test_sandbox_event_for_a_live_session_is_never_applied(deliver, make_session):
    session = make_session(Status.COMPLETED, mode="live")
    deliver(payment_event("payment.refunded", session, is_live=False))
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.COMPLETED, True)


@pytest.mark.parametrize("event_type", ["payment.refunded", "payment.disputed"])
def test_a_refund_or_dispute_arriving_first_is_reviewed_like_the_payment(deliver, make_session, signal_log, event_type):
    """Issue 10, item 3 (the fuzz branch's "refund-first skips review"): a short payment that is
    then refunded or disputed, delivered before payment.succeeded, completes the session flagged."""
    session = make_session()
    deliver(payment_event(event_type, session, amount=4320))
    session.refresh_from_db()
    assert session.status == WEBHOOK_STATUS[event_type]
    assert session.needs_review
    assert "paid 4320 USD, less than the 5000 USD asked for" in session.review_reason
    [review] = signals_named(signal_log, "payment_needs_review")
    assert review["event"] == WebhookEvent.objects.get()
    assert [c.to_status for c in session.status_changes.all()] == [Status.COMPLETED, WEBHOOK_STATUS[event_type]]


def test_the_review_compares_with_the_requested_amount_not_only_with_khaimes_total(deliver, make_session):
    """Issue 10, item 2: a total Khaime quoted below the price (stored by 0.1.0) does not make a
    payment of that total pass the review."""
    session = make_session(total_amount=1)
    deliver(payment_event("payment.succeeded", session, amount=1))
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.COMPLETED, True)
    assert "less than the 5000 USD asked for" in session.review_reason


def test_legacy_flat_amount_that_differs_flags_for_review(deliver, make_session):
    session = make_session()
    deliver(legacy_payment_event("payment.succeeded", session, amount=1))
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.COMPLETED, True)


def test_amount_is_compared_with_the_requested_amount_when_no_total_is_known(deliver, make_session):
    session = make_session(total_amount=None)
    deliver(payment_event("payment.succeeded", session, amount=5000))
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.COMPLETED, False)


def test_event_without_amounts_is_not_flagged(deliver, make_session):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    del payload["data"]["amounts"]
    deliver(payload)
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.COMPLETED, False)


def test_a_second_mismatched_event_does_not_signal_review_again(deliver, make_session, signal_log):
    session = make_session()
    deliver(payment_event("payment.succeeded", session, amount=1))
    deliver(payment_event("payment.succeeded", session, amount=2))
    assert len(signals_named(signal_log, "payment_needs_review")) == 1


def test_completed_receivers_already_see_the_review_flag(deliver, make_session, signal_log):
    session = make_session()
    deliver(payment_event("payment.succeeded", session, amount=1))
    names = [name for name, _ in signal_log if name != "payment_status_changed"]
    assert names == ["payment_completed", "payment_needs_review"]
    [completed] = signals_named(signal_log, "payment_completed")
    assert completed["session"].needs_review


# -- completed never regresses --------------------------------------------------------------------


def test_payment_failed_after_succeeded_changes_nothing(deliver, make_session, signal_log):
    session = make_session()
    deliver(payment_event("payment.succeeded", session))
    late = deliver(payment_event("payment.failed", session))
    assert late.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    event = WebhookEvent.objects.get(event_type="payment.failed")
    assert event.outcome == WebhookOutcome.IGNORED
    assert "completed -> failed" in event.detail
    assert signals_named(signal_log, "payment_failed") == []


def test_cancel_return_after_succeeded_changes_nothing(deliver, make_session, client):
    session = make_session()
    deliver(payment_event("payment.succeeded", session))
    client.get(reverse("khaime:cancel", kwargs={"reference": session.reference}))
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_expiry_after_succeeded_changes_nothing(deliver, make_session):
    session = make_session(
        expires_at=timezone.now() - timedelta(days=1),
        created_at=timezone.now() - timedelta(days=1),
    )
    deliver(payment_event("payment.succeeded", session))
    assert services.expire_stale(grace=timedelta(0)) == 0
    services.apply_khaime_status(session, {"status": "expired"}, source=Source.SYNC)
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


@pytest.mark.parametrize("earlier", [Status.CANCELLED, Status.FAILED, Status.EXPIRED])
def test_succeeded_after_an_unpaid_ending_still_completes(deliver, make_session, earlier):
    session = make_session(earlier)
    deliver(payment_event("payment.succeeded", session))
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_webhook_after_the_success_return_is_a_duplicate_with_no_second_signal(
    deliver,
    make_session,
    khaime_says,
    client,
    signal_log,
    django_capture_on_commit_callbacks,
):
    session = make_session()
    khaime_says(session, "completed")
    with django_capture_on_commit_callbacks(execute=True):
        client.get(reverse("khaime:success", kwargs={"reference": session.reference}))
    response = deliver(payment_event("payment.succeeded", session))
    assert response.json()["outcome"] == "duplicate"
    assert WebhookEvent.objects.get().outcome == WebhookOutcome.DUPLICATE
    assert len(signals_named(signal_log, "payment_completed")) == 1


# -- merchant receivers -----------------------------------------------------------------------------


@pytest.fixture
def broken_receiver():
    from khaime_django.signals import payment_completed, payment_needs_review

    def explode(sender, **kwargs):
        raise ValueError("fulfilment service is down")

    payment_completed.connect(explode)
    payment_needs_review.connect(explode)
    yield explode
    payment_completed.disconnect(explode)
    payment_needs_review.disconnect(explode)


def test_receiver_that_raises_does_not_fail_the_ack_and_is_recorded(deliver, make_session, broken_receiver, caplog):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    with caplog.at_level(logging.ERROR, logger="khaime_django"):
        response = deliver(payload)
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookOutcome.APPLIED
    assert "ValueError: fulfilment service is down" in event.error
    assert payload["event_id"] in caplog.text
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_review_receiver_that_raises_is_recorded_too(deliver, make_session, broken_receiver):
    deliver(payment_event("payment.succeeded", make_session(), amount=1))
    assert WebhookEvent.objects.get().error.count("fulfilment service is down") == 2


@pytest.mark.django_db(transaction=True)
def test_receiver_error_is_recorded_when_the_commit_runs_the_hooks(make_session, broken_receiver, client):
    """Outside a test transaction the commit at the end of the apply runs receivers at once."""
    response = post_webhook(client, payment_event("payment.succeeded", make_session()))
    assert response.status_code == 200
    assert "fulfilment service is down" in WebhookEvent.objects.get().error


@pytest.mark.django_db(transaction=True)
def test_receivers_see_the_session_in_its_new_status(make_session, client):
    from khaime_django.signals import payment_completed

    seen = []

    def look(sender, session, **kwargs):
        seen.append((session.status, session.needs_review))

    payment_completed.connect(look)
    try:
        post_webhook(client, payment_event("payment.succeeded", make_session(), amount=1))
    finally:
        payment_completed.disconnect(look)
    assert seen == [(Status.COMPLETED, True)]


# -- the service without the view -----------------------------------------------------------------


def test_handle_webhook_event_records_and_applies_an_event_from_elsewhere(make_session):
    from khaime_django.webhooks import parse_event

    session = make_session()
    event = parse_event(to_body(payment_event("payment.succeeded", session)))
    assert services.handle_webhook_event(event) == WebhookOutcome.APPLIED
    assert services.handle_webhook_event(event) == WebhookOutcome.DUPLICATE
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert WebhookEvent.objects.get().deliveries == 2


@pytest.mark.django_db(transaction=True)
def test_apply_refuses_to_run_outside_the_transaction_that_locked_the_event(
    make_session,
):
    from django.db.transaction import TransactionManagementError

    record = WebhookEvent.objects.create(
        event_id="evt_1",
        event_type="payment.succeeded",
        payload=payment_event("payment.succeeded", make_session()),
    )
    with pytest.raises(TransactionManagementError):
        services.apply_webhook_event(record)


def test_event_with_a_nul_character_is_stored_and_applied(deliver, make_session):
    # JSON allows \u0000; PostgreSQL's jsonb refuses it, which would 500 every delivery.
    session = make_session(Status.PENDING)
    payload = payment_event("payment.succeeded", session, customer={"email": "a@b.co", "name": "Ada\u0000"})
    response = deliver(payload)
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.payload["data"]["customer"]["name"] == "Ada\ufffd"
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def _nested(depth: int):
    value: object = {"leaf": "\u0000"}
    for level in range(depth):
        value = {"level": level, "inner": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize("depth", [33, 600, 100_000])
def test_deeply_nested_signed_json_is_400_and_nothing_stored(deliver, make_session, depth):
    """Issue 10, item 5: a signed body nested a few hundred levels deep answered 500 (the NUL
    scrubbing recursed outside the RecursionError guard), so Khaime retried it three times."""
    payload = payment_event("payment.succeeded", make_session(Status.PENDING), nested="NESTED")
    body = json.dumps(payload).replace('"NESTED"', "[" * depth + '"\\u0000"' + "]" * depth)
    response = deliver(body=body.encode())
    assert response.status_code == 400
    assert "deeper than" in response.content.decode() or "not JSON" in response.content.decode()
    assert not WebhookEvent.objects.exists()


def test_nesting_within_the_bound_is_stored_with_every_nul_replaced(deliver, make_session):
    session = make_session(Status.PENDING)
    response = deliver(payment_event("payment.succeeded", session, nested=_nested(25), **{"k\u0000": ["a\u0000"]}))
    assert response.status_code == 200
    stored = json.dumps(WebhookEvent.objects.get().payload)
    assert "\\u0000" not in stored
    assert stored.count("\\ufffd") == 3


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_signed_body_with_a_number_that_is_not_json_is_400(deliver, constant):
    body = b'{"event_id":"evt_nan","event_type":"payment.succeeded","data":{"amount":' + constant.encode() + b"}}"
    assert deliver(body=body).status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("depth", [33, 600])
def test_deep_nesting_without_a_nul_is_400_too(deliver, make_session, depth):
    """The walk is skipped for bodies with few openers and no NUL; a deep body has many openers."""
    payload = payment_event("payment.succeeded", make_session(Status.PENDING), nested="NESTED")
    body = json.dumps(payload).replace('"NESTED"', "[" * depth + "1" + "]" * depth)
    response = deliver(body=body.encode())
    assert response.status_code == 400
    assert "deeper than" in response.content.decode()
    assert not WebhookEvent.objects.exists()


def test_nesting_at_the_bound_without_a_nul_is_applied(deliver, make_session):
    session = make_session(Status.PENDING)
    payload = payment_event("payment.succeeded", session, nested="NESTED")
    body = json.dumps(payload).replace('"NESTED"', "[" * 20 + "1" + "]" * 20)
    assert deliver(body=body.encode()).status_code == 200
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul(deliver, make_session):
    """``\\\\u0000`` in the body is a backslash and the letters u0000: the slow walk runs and
    changes nothing."""
    session = make_session(Status.PENDING)
    payload = payment_event("payment.succeeded", session, customer={"email": "a@b.co", "name": "Ada\\u0000"})
    assert deliver(payload).status_code == 200
    assert WebhookEvent.objects.get().payload["data"]["customer"]["name"] == "Ada\\u0000"


def test_a_plain_event_skips_the_walk(monkeypatch):
    from khaime_django import webhooks

    def walked(payload):
        raise AssertionError("walked a body with no NUL and few openers")

    monkeypatch.setattr(webhooks, "_checked", walked)
    body = json.dumps({"event_id": "evt_1", "event_type": "payment.succeeded", "data": {"amount": 1.5}}).encode()
    assert webhooks.parse_event(body).event_id == "evt_1"

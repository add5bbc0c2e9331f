"""The buyer's return from Khaime: the redirect proves nothing, Khaime's answer decides."""

from __future__ import annotations

import logging
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from khaime_django import services, signals
from khaime_django.models import PaymentSession, Source, Status, StatusChange

from .conftest import API_BASE, sql_statements

pytestmark = pytest.mark.django_db

API_KEY = "pk_sandbox_test_0123456789"


def success(client, session):
    return client.get(reverse("khaime:success", kwargs={"reference": session.reference}))


def started_in(client, session):
    """Make ``client`` the browser that started ``session``, as its checkout would have."""
    from khaime_django.services import buyers

    store = client.session
    token = store.setdefault(buyers.SESSION_KEY, f"browser-{uuid.uuid4()}")
    store.save()
    PaymentSession.objects.filter(pk=session.pk).update(buyer_key=buyers.buyer_key(token))


def cancel(client, session):
    """The buyer's own browser comes back through the cancel URL."""
    started_in(client, session)
    return client.get(reverse("khaime:cancel", kwargs={"reference": session.reference}))


def status(client, session):
    return client.get(reverse("khaime:status", kwargs={"reference": session.reference}))


def reloaded(session):
    return PaymentSession.objects.get(pk=session.pk)


@pytest.fixture
def completed_receiver():
    calls = []

    def receive(sender, session, **kwargs):
        calls.append(session.reference)

    signals.payment_completed.connect(receive)
    yield calls
    signals.payment_completed.disconnect(receive)


def test_return_urls_carry_the_reference():
    reference = uuid.uuid4()
    assert reverse("khaime:success", kwargs={"reference": reference}) == f"/payments/sessions/{reference}/success/"
    assert reverse("khaime:cancel", kwargs={"reference": reference}) == f"/payments/sessions/{reference}/cancel/"


# -- success --------------------------------------------------------------------------------------


def test_forged_success_redirect_does_not_mark_paid(client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    response = success(client, session)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Processing your payment" in page
    assert "Payment received" not in page
    assert reloaded(session).status == Status.PENDING
    assert not StatusChange.objects.exists()


def test_success_return_asks_khaime_with_the_short_timeout(client, make_session, khaime_says, khaime_api):
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    success(client, session)
    [call] = khaime_api.calls
    assert call.request.url == f"{API_BASE}/payments/sessions/{session.session_id}"
    connect, read = call.request.req_kwargs["timeout"]
    # RETURN_TIMEOUT in the test settings, each wait capped by what is left of it as a total
    assert 0.5 < connect <= 1 and 0.5 < read <= 1


def test_reloading_the_processing_page_asks_khaime_at_most_once_per_interval(
    client, make_session, khaime_says, khaime_api
):
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    success(client, session)
    success(client, session)  # a reload, or the <noscript> refresh, moments later
    assert len(khaime_api.calls) == 1


def test_success_return_asks_again_once_the_interval_has_passed(client, make_session, khaime_says, khaime_api):
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    success(client, session)
    PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=timezone.now() - timedelta(minutes=1))
    success(client, session)
    assert len(khaime_api.calls) == 2


def test_khaime_says_completed_shows_the_paid_page(
    client, make_session, khaime_says, completed_receiver, django_capture_on_commit_callbacks
):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed", completed_at="2026-01-16T21:05:00.000Z")
    with django_capture_on_commit_callbacks(execute=True):
        page = success(client, session).content.decode()
    assert "Payment received" in page
    assert "$53.20" in page
    session = reloaded(session)
    assert session.status == Status.COMPLETED
    assert session.completed_at == datetime(2026, 1, 16, 21, 5, tzinfo=UTC)
    change = StatusChange.objects.get()
    assert (change.from_status, change.to_status, change.source) == (Status.PENDING, Status.COMPLETED, Source.RETURN)
    assert completed_receiver == [session.reference]


def test_completed_without_completed_at_is_stamped_now(client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed")
    before = timezone.now()
    success(client, session)
    assert reloaded(session).completed_at >= before


def test_reloading_the_paid_page_changes_and_signals_nothing(
    client, make_session, khaime_says, khaime_api, completed_receiver, django_capture_on_commit_callbacks
):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed")
    with django_capture_on_commit_callbacks(execute=True):
        success(client, session)
        page = success(client, session).content.decode()
    assert "Payment received" in page
    assert len(khaime_api.calls) == 1  # a completed session is final: no second question
    assert StatusChange.objects.count() == 1
    assert len(completed_receiver) == 1


@pytest.mark.usefixtures("transactional_db")
def test_payment_completed_signal_fires_once_after_commit(client, make_session, khaime_says, completed_receiver):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed")
    success(client, session)
    success(client, session)
    assert completed_receiver == [session.reference]


@pytest.mark.usefixtures("transactional_db")
def test_raising_signal_receiver_does_not_break_the_success_page(client, make_session, khaime_says, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("merchant fulfilment bug")

    signals.payment_completed.connect(broken)
    try:
        session = make_session(Status.PENDING)
        khaime_says(session, "completed")
        response = success(client, session)
    finally:
        signals.payment_completed.disconnect(broken)
    assert response.status_code == 200
    assert "Payment received" in response.content.decode()
    assert reloaded(session).status == Status.COMPLETED
    assert any(r.name == "khaime_django.transitions" and r.levelno == logging.ERROR for r in caplog.records)


def test_khaime_says_failed_shows_the_failed_page(client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "failed")
    page = success(client, session).content.decode()
    assert "Payment failed" in page
    assert "not charged" in page
    assert reloaded(session).status == Status.FAILED


def test_khaime_says_expired_shows_the_expired_page(client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "expired")
    page = success(client, session).content.decode()
    assert "Payment expired" in page
    assert reloaded(session).status == Status.EXPIRED


def test_khaime_says_something_unknown_keeps_the_session_pending(client, make_session, khaime_says, caplog):
    session = make_session(Status.PENDING)
    khaime_says(session, "paid")
    assert "Processing your payment" in success(client, session).content.decode()
    assert reloaded(session).status == Status.PENDING
    assert any("unknown status" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "failure",
    [
        {"body": requests.ConnectionError("unreachable")},
        {"body": requests.ReadTimeout("slow")},
        {"json": {"success": False, "error": "boom"}, "status": 500},
        {"json": {"success": False, "error": "gone"}, "status": 404},
        {"body": "<html>", "status": 200},
    ],
    ids=["unreachable", "timeout", "500", "404", "not-json"],
)
def test_khaime_unreachable_on_return_shows_processing_with_a_note(client, make_session, khaime_api, failure):
    session = make_session(Status.PENDING)
    khaime_api.get(f"{API_BASE}/payments/sessions/{session.session_id}", **failure)
    response = success(client, session)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Processing your payment" in page
    assert "could not be reached just now" in page
    assert API_KEY not in page
    assert reloaded(session).status == Status.PENDING


def test_return_timeout_given_as_a_list_still_reaches_khaime(client, make_session, settings):
    """requests refuses a list as (connect, read); the setting is normalised to a tuple."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.KHAIME = {
        **settings.KHAIME,
        "API_BASE_URL": f"http://127.0.0.1:{port}/api",
        "MAX_RETRIES": 0,
        "RETURN_TIMEOUT": [1, 1],
    }
    response = success(client, make_session(Status.PENDING))
    assert response.status_code == 200
    assert "could not be reached just now" in response.content.decode()


def test_cancelled_buyer_who_paid_after_all_is_shown_paid(client, make_session, khaime_says):
    session = make_session(Status.CANCELLED, cancelled_at=timezone.now())
    khaime_says(session, "completed")
    assert "Payment received" in success(client, session).content.decode()
    assert reloaded(session).status == Status.COMPLETED


def test_session_never_created_at_khaime_is_not_asked_about(client, make_session, khaime_api):
    session = make_session(Status.CREATED)
    assert "Processing your payment" in success(client, session).content.decode()
    assert len(khaime_api.calls) == 0


def test_session_in_error_shows_could_not_be_started_without_asking_khaime(client, make_session, khaime_api):
    session = make_session(Status.ERROR)
    assert "could not be started" in success(client, session).content.decode()
    assert len(khaime_api.calls) == 0


@pytest.mark.parametrize(
    ("final", "heading"), [(Status.REFUNDED, "Payment refunded"), (Status.DISPUTED, "Payment under dispute")]
)
def test_refunded_and_disputed_sessions_say_so(client, make_session, khaime_api, final, heading):
    session = make_session(final)
    assert heading in success(client, session).content.decode()
    assert len(khaime_api.calls) == 0


def test_processing_page_polls_the_status_endpoint(client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    page = success(client, session).content.decode()
    assert f'data-khaime-status-url="{reverse("khaime:status", kwargs={"reference": session.reference})}"' in page
    assert 'http-equiv="refresh"' in page


def test_paid_page_stops_polling(client, make_session, khaime_api):
    page = success(client, make_session(Status.COMPLETED)).content.decode()
    assert "data-khaime-status-url" in page
    assert "<script>" not in page
    assert 'http-equiv="refresh"' not in page


def test_return_pages_are_never_cached(client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    assert "no-cache" in success(client, session)["Cache-Control"]
    assert "no-cache" in cancel(client, session)["Cache-Control"]
    assert "no-cache" in status(client, session)["Cache-Control"]


@pytest.mark.parametrize("page", ["khaime:success", "khaime:cancel", "khaime:status"])
def test_unknown_reference_is_404(client, khaime_api, page):
    assert client.get(reverse(page, kwargs={"reference": uuid.uuid4()})).status_code == 404
    assert len(khaime_api.calls) == 0


def test_malformed_reference_is_404(client, khaime_api):
    assert client.get("/payments/sessions/not-a-uuid/success/").status_code == 404


def test_post_to_a_return_page_is_not_allowed(client, make_session):
    assert client.post(reverse("khaime:success", kwargs={"reference": make_session().reference})).status_code == 405


def test_refresh_session_does_not_ask_about_a_session_khaime_never_created(make_session, khaime_api):
    session = make_session(Status.CREATED)
    assert services.refresh_session(session) is session
    assert len(khaime_api.calls) == 0


def test_session_links_to_its_success_page(make_session):
    session = make_session()
    assert session.get_absolute_url() == reverse("khaime:success", kwargs={"reference": session.reference})


# -- SQL per success return -----------------------------------------------------------------------


@pytest.mark.usefixtures("transactional_db")
def test_paid_success_return_costs_three_statements_on_postgresql_five_elsewhere(
    client, make_session, khaime_says, django_assert_num_queries
):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed")
    earlier = make_session(Status.PENDING)
    khaime_says(earlier, "pending")
    success(client, earlier)  # the hour's first ask INSERTs the hour's budget row; later ones UPDATE it
    # SELECT the session; claim the ask (UPDATE last_checked_at) and count it against the
    # page-load budget (UPDATE); then the conditional UPDATE and the status log INSERT. On
    # PostgreSQL each pair is one statement (a data-modifying CTE): three in all; elsewhere five.
    if connection.vendor == "postgresql":
        with django_assert_num_queries(3) as captured:
            success(client, session)
        assert sql_statements(captured) == ["SELECT", "WITH", "WITH"]
        return
    with django_assert_num_queries(5 + 2) as captured:
        success(client, session)
    assert sql_statements(captured) == ["SELECT", "UPDATE", "UPDATE", "UPDATE", "INSERT"]


@pytest.mark.usefixtures("transactional_db")
def test_still_pending_success_return_costs_two_statements_on_postgresql_three_elsewhere(
    client, make_session, khaime_says, django_assert_num_queries
):
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    # SELECT the session; claim the ask (UPDATE last_checked_at); count it against the budget.
    earlier = make_session(Status.PENDING)
    khaime_says(earlier, "pending")
    success(client, earlier)  # the hour's first ask INSERTs the hour's budget row; later ones UPDATE it
    if connection.vendor == "postgresql":  # the claim and the budget: one statement
        with django_assert_num_queries(2) as captured:
            success(client, session)
        assert sql_statements(captured) == ["SELECT", "WITH"]
        return
    with django_assert_num_queries(3) as captured:
        success(client, session)
    assert sql_statements(captured) == ["SELECT", "UPDATE", "UPDATE"]


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_records_cancelled_and_cancelled_at(client, make_session, khaime_api):
    session = make_session(Status.PENDING)
    before = timezone.now()
    response = cancel(client, session)
    assert response.status_code == 200
    assert "Payment cancelled" in response.content.decode()
    session = reloaded(session)
    assert session.status == Status.CANCELLED
    assert session.cancelled_at >= before
    assert StatusChange.objects.get().source == Source.CANCEL
    assert len(khaime_api.calls) == 0


def test_cancel_offers_return_to_payment_until_expiry(client, make_session):
    session = make_session(Status.PENDING)
    page = cancel(client, session).content.decode()
    assert "Return to payment" in page
    assert f'href="{session.payment_url}"' in page


def test_cancel_after_expiry_does_not_offer_return_to_payment(client, make_session):
    session = make_session(Status.PENDING, expires_at=timezone.now() - timedelta(minutes=1))
    assert "Return to payment" not in cancel(client, session).content.decode()


def test_cancel_after_completed_leaves_completed(client, make_session):
    session = make_session(Status.COMPLETED, completed_at=timezone.now())
    page = cancel(client, session).content.decode()
    assert "Payment received" in page
    session = reloaded(session)
    assert session.status == Status.COMPLETED
    assert session.cancelled_at is None


def test_second_cancel_changes_nothing(client, make_session):
    session = make_session(Status.PENDING)
    cancel(client, session)
    first_cancelled_at = reloaded(session).cancelled_at
    cancel(client, session)
    assert reloaded(session).cancelled_at == first_cancelled_at
    assert StatusChange.objects.count() == 1


def test_cancel_before_khaime_answered_changes_nothing(client, make_session):
    session = make_session(Status.CREATED)
    cancel(client, session)
    assert reloaded(session).status == Status.CREATED


# -- the JSON status endpoint ---------------------------------------------------------------------


def test_status_endpoint_returns_the_status(client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed")
    assert status(client, session).json() == {
        "reference": str(session.reference),
        "status": "completed",
        "status_display": "Completed",
        "is_paid": True,
        "is_final": True,
        "total": "$53.20",
    }


def test_status_endpoint_asks_khaime_at_most_once_per_interval(client, make_session, khaime_says, khaime_api):
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    assert status(client, session).json()["status"] == "pending"
    assert status(client, session).json()["status"] == "pending"
    assert len(khaime_api.calls) == 1


def test_status_endpoint_asks_again_once_the_interval_has_passed(
    client, make_session, khaime_says, khaime_api, settings
):
    settings.KHAIME = {**settings.KHAIME, "STATUS_REFRESH_INTERVAL": 5}
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    status(client, session)
    PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=timezone.now() - timedelta(seconds=6))
    status(client, session)
    assert len(khaime_api.calls) == 2


def test_status_endpoint_does_not_ask_about_a_final_session(client, make_session, khaime_api):
    assert status(client, make_session(Status.COMPLETED)).json()["status"] == "completed"
    old_failure = make_session(Status.FAILED, created_at=timezone.now() - timedelta(days=3, minutes=1))
    assert status(client, old_failure).json()["status"] == "failed"
    assert len(khaime_api.calls) == 0


def test_status_endpoint_survives_khaime_being_unreachable(client, make_session, khaime_api):
    session = make_session(Status.PENDING)
    khaime_api.get(f"{API_BASE}/payments/sessions/{session.session_id}", body=requests.ConnectionError("down"))
    response = status(client, session)
    assert response.status_code == 200
    assert response.json()["status"] == "pending"


def test_status_endpoint_does_not_ask_an_unreachable_khaime_on_every_poll(client, make_session, khaime_api, settings):
    settings.KHAIME = {**settings.KHAIME, "MAX_RETRIES": 0}
    session = make_session(Status.PENDING)
    khaime_api.get(f"{API_BASE}/payments/sessions/{session.session_id}", body=requests.ConnectionError("down"))
    status(client, session)
    status(client, session)
    assert len(khaime_api.calls) == 1


# -- templates ------------------------------------------------------------------------------------


@pytest.fixture
def merchant_base_template(settings, tmp_path):
    """The merchant overrides khaime_django/base.html from their own template directory."""
    (tmp_path / "khaime_django").mkdir()
    (tmp_path / "khaime_django" / "base.html").write_text(
        "<html><body data-merchant-shell>{% block content %}{% endblock %}</body></html>"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]


@pytest.mark.usefixtures("merchant_base_template")
def test_return_pages_extend_the_overridable_base_template(client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed")
    page = success(client, session).content.decode()
    assert "data-merchant-shell" in page
    assert "Payment received" in page
    assert "data-merchant-shell" in cancel(client, make_session(Status.PENDING)).content.decode()


@pytest.mark.usefixtures("merchant_base_template")
def test_checkout_pages_extend_the_overridable_base_template(client, khaime_api, buy_token):
    invalid = client.post(reverse("khaime:checkout"), {"token": "forged", "email": "a@example.com"})
    assert "data-merchant-shell" in invalid.content.decode()
    khaime_api.post(f"{API_BASE}/payments/sessions", json={"success": False, "error": "boom"}, status=500)
    error = client.post(reverse("khaime:checkout"), {"token": buy_token, "email": "a@example.com"})
    assert error.status_code == 502
    assert "data-merchant-shell" in error.content.decode()

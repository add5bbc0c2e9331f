"""Khaime requests per paid purchase (issue 13): the success page first waits briefly for the
webhook, reading only the database, and a 429 backs page loads off instead of spending more of
the hour's quota."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from khaime_django.client import transport
from khaime_django.models import PaymentSession, RefreshBudget, Source, Status
from khaime_django.services import session_refresh
from khaime_django.transitions import transition

from .conftest import API_BASE
from .webhook_helpers import payment_event, post_webhook

pytestmark = pytest.mark.django_db


def success(client, session):
    return client.get(reverse("khaime:success", kwargs={"reference": session.reference}))


@pytest.fixture
def webhook_wait(settings):
    def set_wait(seconds):
        settings.KHAIME = {**settings.KHAIME, "RETURN_WEBHOOK_WAIT": seconds}

    return set_wait


def test_a_webhook_landing_during_the_wait_spares_the_khaime_request(
    client, make_session, khaime_api, webhook_wait, monkeypatch
):
    """0.1.0 asked Khaime on every first return, even when the webhook came a moment later."""
    webhook_wait(1.5)
    session = make_session(Status.PENDING)
    real_sleep = time.sleep

    def webhook_arrives(seconds):  # the webhook's request commits while this one sleeps
        real_sleep(seconds)
        transition(PaymentSession.objects.get(pk=session.pk), Status.COMPLETED, source=Source.WEBHOOK)

    monkeypatch.setattr(session_refresh.time, "sleep", webhook_arrives)
    page = success(client, session)
    assert page.context["session"].status == Status.COMPLETED
    assert len(khaime_api.calls) == 0


def test_without_a_webhook_the_page_asks_khaime_once_after_the_wait(client, make_session, khaime_says, webhook_wait):
    webhook_wait(0.5)
    session = make_session(Status.PENDING)
    call = khaime_says(session, "completed")
    started = time.monotonic()
    page = success(client, session)
    assert 0.5 <= time.monotonic() - started < 2
    assert page.context["session"].status == Status.COMPLETED
    assert call.call_count == 1


def test_a_reload_does_not_wait_again(client, make_session, khaime_api, webhook_wait):
    webhook_wait(5)
    session = make_session(Status.PENDING, last_checked_at=timezone.now())
    started = time.monotonic()
    success(client, session)
    assert time.monotonic() - started < 1
    assert len(khaime_api.calls) == 0


def test_a_settled_session_is_not_waited_on(client, make_session, khaime_api, webhook_wait):
    webhook_wait(5)
    started = time.monotonic()
    success(client, make_session(Status.COMPLETED))
    assert time.monotonic() - started < 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: two requests at once")
def test_a_real_webhook_request_landing_during_the_wait_spares_the_khaime_request(
    make_session, khaime_api, webhook_wait
):
    webhook_wait(3)
    session = make_session(Status.PENDING)

    def deliver_later():
        try:
            time.sleep(0.4)
            assert post_webhook(Client(), payment_event("payment.succeeded", session)).status_code == 200
        finally:
            connection.close()

    thread = threading.Thread(target=deliver_later)
    started = time.monotonic()
    thread.start()
    page = success(Client(), session)
    thread.join(timeout=10)
    assert b"khaime-note" not in page.content
    assert PaymentSession.objects.get(pk=session.pk).status == Status.COMPLETED
    assert time.monotonic() - started < 2
    assert len(khaime_api.calls) == 0


# -- 429: back off ---------------------------------------------------------------------------------


def rate_limited(khaime_api, session, retry_after):
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return khaime_api.get(
        f"{API_BASE}/payments/sessions/{session.session_id}",
        status=429,
        json={"success": False, "error": "Rate limit exceeded"},
        headers=headers,
    )


def test_a_429_keeps_page_loads_off_that_session_until_retry_after(
    client, make_session, khaime_api, khaime_says, monkeypatch
):
    """0.1.0 asked again at the next interval (and retried the 429 inside the request)."""
    session = make_session(Status.PENDING)
    rate_limited(khaime_api, session, 20)
    assert success(client, session).context["unconfirmed"] is True
    assert len(khaime_api.calls) == 1
    # Past the 5 s interval, but not past Retry-After: no request.
    PaymentSession.objects.filter(pk=session.pk).update(
        last_checked_at=PaymentSession.objects.get(pk=session.pk).last_checked_at - timedelta(seconds=6)
    )
    success(client, session)
    assert len(khaime_api.calls) == 1
    # Nor about another session while Retry-After lasts: the limit is the key's, and the client
    # holds every call until then instead of spending a request on a certain 429.
    other = make_session(Status.PENDING)
    assert success(client, other).context["unconfirmed"] is True
    assert len(khaime_api.calls) == 1
    # Once it has passed, a session is asked about again: a short Retry-After is not the hour.
    real_monotonic = transport.time.monotonic
    monkeypatch.setattr(transport.time, "monotonic", lambda: real_monotonic() + 21)
    third = make_session(Status.PENDING)
    khaime_says(third, "pending")
    success(client, third)
    assert len(khaime_api.calls) == 2


def test_a_429_without_retry_after_backs_off_that_session_only(client, make_session, khaime_api, khaime_says):
    """It may be the burst limit (50 a second), not the hourly quota: a stray one must not stop
    every return page from asking for an hour (the soak saw one early 429 leave 20 retrieves for
    the whole run)."""
    session, other = make_session(Status.PENDING), make_session(Status.PENDING)
    rate_limited(khaime_api, session, None)
    success(client, session)
    PaymentSession.objects.filter(pk=session.pk).update(
        last_checked_at=PaymentSession.objects.get(pk=session.pk).last_checked_at - timedelta(seconds=6)
    )
    success(client, session)
    assert len(khaime_api.calls) == 1  # that session waits RATE_LIMIT_BACKOFF
    khaime_says(other, "pending")
    success(client, other)
    assert len(khaime_api.calls) == 2  # others are still asked about
    assert RefreshBudget.objects.get().used == 2


def test_a_429_for_the_hourly_quota_stops_page_loads_asking_for_the_hour(client, make_session, khaime_api):
    session, other = make_session(Status.PENDING), make_session(Status.PENDING)
    rate_limited(khaime_api, session, 600)
    success(client, session)
    assert success(client, other).context["unconfirmed"] is True
    assert len(khaime_api.calls) == 1
    assert RefreshBudget.objects.get().used == 600

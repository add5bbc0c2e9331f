"""What page loads (the success page, the status endpoint) may spend of Khaime's quota and of the
buyer's time (issue 10, items 1, 6 and 7): one claimed ask per interval, a per-key hourly budget
counted in the database, one attempt within RETURN_TIMEOUT, and `failed`/`expired` sessions still
asked about within RECHECK_LOOKBACK."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from khaime_django import services
from khaime_django.models import PaymentSession, RefreshBudget, Source, Status
from khaime_django.services import reconcile

from .concurrency import run_at_once
from .slow_khaime import SlowKhaime

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: SQLite serialises writers, so requests cannot race"
)


def success(client, session):
    return client.get(reverse("khaime:success", kwargs={"reference": session.reference}))


def status(client, session):
    return client.get(reverse("khaime:status", kwargs={"reference": session.reference}))


def point_at(settings, khaime: SlowKhaime, **extra):
    settings.KHAIME = {**settings.KHAIME, "API_BASE_URL": khaime.api_base_url, **extra}


# -- item 7: one attempt, RETURN_TIMEOUT as a total deadline ----------------------------------------


@pytest.mark.django_db
def test_a_slow_khaime_holds_the_success_page_one_attempt_of_return_timeout(client, make_session, settings):
    """Khaime answering in 6 s took the page 16 s and 3 requests on 0.1.0 (read timeout x retries)."""
    session = make_session(Status.PENDING)
    with SlowKhaime(status="completed", delay=6) as khaime:
        point_at(settings, khaime, RETURN_TIMEOUT=(1, 1.5), MAX_RETRIES=2)
        started = time.monotonic()
        page = success(client, session)
        took = time.monotonic() - started
    assert page.status_code == 200
    assert page.context["unconfirmed"] is True
    assert khaime.count("GET") == 1
    assert took < 2.5


@pytest.mark.django_db
def test_a_khaime_dripping_its_answer_cannot_hold_the_buyer_past_the_deadline(client, make_session, settings):
    """Each byte arrives within the read timeout, so a (connect, read) timeout alone never fires:
    the body would take about 14 s. The deadline ends the call at RETURN_TIMEOUT."""
    session = make_session(Status.PENDING)
    with SlowKhaime(status="completed", drip=0.2) as khaime:
        point_at(settings, khaime, RETURN_TIMEOUT=(1, 1.5))
        started = time.monotonic()
        payload = status(client, session).json()
        took = time.monotonic() - started
    assert payload["status"] == "pending"
    assert khaime.count("GET") == 1
    assert took < 2.5


@pytest.mark.django_db
def test_a_prompt_answer_within_the_deadline_is_applied(client, make_session, settings):
    session = make_session(Status.PENDING)
    with SlowKhaime(status="completed", drip=0.001) as khaime:
        point_at(settings, khaime)
        assert success(client, session).context["session"].status == Status.COMPLETED
    assert khaime.count("GET") == 1


def test_the_admin_refresh_keeps_the_full_timeout_and_retries(make_session, khaime_api, db):
    """Only buyer-facing paths are cut short: the admin's refresh retries as before."""
    from .conftest import API_BASE

    session = make_session(Status.PENDING)
    url = f"{API_BASE}/payments/sessions/{session.session_id}"
    khaime_api.get(url, status=503, json={"success": False, "error": "busy"})
    khaime_api.get(url, json={"success": True, "data": {"session_id": session.session_id, "status": "completed"}})
    services.refresh_session(session, source=Source.ADMIN)
    assert session.status == Status.COMPLETED
    assert len(khaime_api.calls) == 2


# -- item 6: the ask is claimed; page loads share a per-key budget ----------------------------------


@pytest.mark.django_db
def test_a_refresh_another_process_claimed_meanwhile_is_not_made_again(make_session, khaime_api):
    """This request read the row before another one stamped it: 0.1.0 trusted its stale copy."""
    session = make_session(Status.PENDING)
    PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=timezone.now())  # the other request
    assert session.last_checked_at is None
    assert services.refresh_if_due(session) is True
    assert len(khaime_api.calls) == 0


@pytest.mark.django_db
def test_a_claim_lost_to_another_request_spends_no_budget(make_session, khaime_says):
    """The claim and the budget are one statement on PostgreSQL: the budget's UPDATE runs only
    when the claim's changed the row."""
    earlier = make_session(Status.PENDING)
    khaime_says(earlier, "pending")
    assert services.refresh_if_due(earlier) is True  # makes the hour's budget row
    assert RefreshBudget.objects.get().used == 1
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=timezone.now())  # the other request
    assert services.refresh_if_due(session) is True
    assert RefreshBudget.objects.get().used == 1
    session.refresh_from_db()
    session.last_checked_at = None
    PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=None)
    assert services.refresh_if_due(session) is True  # now it wins, and spends one
    assert RefreshBudget.objects.get().used == 2


@pytest.mark.django_db
def test_page_loads_stop_asking_khaime_when_the_hourly_budget_is_spent(client, make_session, khaime_says, settings):
    settings.KHAIME = {**settings.KHAIME, "REFRESH_BUDGET_PER_HOUR": 2}
    sessions = [make_session(Status.PENDING) for _ in range(3)]
    for session in sessions:
        khaime_says(session, "pending")
    pages = [success(client, session) for session in sessions]
    assert [page.context["unconfirmed"] for page in pages] == [False, False, True]
    assert RefreshBudget.objects.get().used == 2


@pytest.mark.django_db
def test_the_budget_is_per_key_and_per_hour(make_session, khaime_says, settings):
    settings.KHAIME = {**settings.KHAIME, "REFRESH_BUDGET_PER_HOUR": 1}
    now = timezone.now()
    assert reconcile.take_refresh_budget(now) is True
    assert reconcile.take_refresh_budget(now) is False
    assert reconcile.take_refresh_budget(now + timedelta(hours=1)) is True  # the next hour
    settings.KHAIME = {**settings.KHAIME, "API_KEY": "pk_sandbox_another_key"}
    assert reconcile.take_refresh_budget(now) is True
    # Rows more than a day old are pruned when an hour's row is made.
    assert reconcile.take_refresh_budget(now + timedelta(days=2)) is True
    assert list(RefreshBudget.objects.values_list("window", flat=True)) == [
        (now + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    ]


@pytest.mark.django_db
def test_a_zero_budget_means_page_loads_never_ask(client, make_session, khaime_api, settings):
    settings.KHAIME = {**settings.KHAIME, "REFRESH_BUDGET_PER_HOUR": 0}
    assert success(client, make_session(Status.PENDING)).context["unconfirmed"] is True
    assert len(khaime_api.calls) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@on_postgres
def test_eight_concurrent_polls_of_one_session_make_one_khaime_request(make_session, settings):
    """0.1.0 read last_checked_at and wrote it after Khaime answered: 8 polls, 8 requests."""
    session = make_session(Status.PENDING)
    with SlowKhaime(status="pending", delay=0.5) as khaime:
        point_at(settings, khaime)
        pages = run_at_once(8, lambda i: status(Client(), session).status_code)
    assert pages == [200] * 8
    assert khaime.count("GET") == 1
    assert RefreshBudget.objects.get().used == 1  # the seven that lost the claim spent no budget


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@on_postgres
def test_concurrent_page_loads_across_connections_stay_within_the_hourly_budget(make_session, settings):
    sessions = [make_session(Status.PENDING) for _ in range(10)]
    with SlowKhaime(status="pending", delay=0.2) as khaime:
        point_at(settings, khaime, REFRESH_BUDGET_PER_HOUR=3)
        # The page's note, not response.context: the test client's context capture is not per thread.
        pages = run_at_once(10, lambda i: b"khaime-note" in success(Client(), sessions[i]).content)
    assert khaime.count("GET") == 3
    assert sorted(pages) == [False] * 3 + [True] * 7
    assert RefreshBudget.objects.get().used == 3


# -- item 1: failed and expired sessions are still asked about within the look-back --------------


@pytest.mark.django_db
@pytest.mark.parametrize("final", [Status.FAILED, Status.EXPIRED])
def test_success_page_finds_a_payment_after_failed_or_a_local_expiry(client, make_session, khaime_says, final):
    """payment.failed (or an offline expiry), then the buyer paid on the same page and the
    payment.succeeded webhook was lost: 0.1.0 said "not charged" after 0 Khaime requests."""
    session = make_session(final)
    khaime_says(session, "completed")
    page = success(client, session)
    assert page.context["session"].status == Status.COMPLETED
    assert session.status_changes.get().source == Source.RETURN


@pytest.mark.django_db
def test_success_page_asks_about_a_failed_session_at_most_once_per_interval(
    client, make_session, khaime_says, khaime_api
):
    session = make_session(Status.FAILED)
    khaime_says(session, "failed")
    success(client, session)
    success(client, session)
    assert len(khaime_api.calls) == 1
    PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=timezone.now() - timedelta(seconds=6))
    success(client, session)
    assert len(khaime_api.calls) == 2
    assert PaymentSession.objects.get(pk=session.pk).status == Status.FAILED


@pytest.mark.django_db
@pytest.mark.parametrize("final", [Status.FAILED, Status.EXPIRED])
def test_success_page_stops_asking_once_the_look_back_has_passed(client, make_session, khaime_api, final, settings):
    settings.KHAIME = {**settings.KHAIME, "RECHECK_LOOKBACK": 3600}
    session = make_session(final, created_at=timezone.now() - timedelta(hours=1, seconds=1))
    assert success(client, session).context["session"].status == final
    assert len(khaime_api.calls) == 0

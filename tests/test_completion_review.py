"""Every path that completes a session runs the same review as payment.succeeded: the return
page, khaime_sync and the admin's "Refresh status from Khaime" (issue 10, item 3)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from khaime_django import services
from khaime_django.models import Source, Status


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def return_page(client, session):
    return client.get(reverse("khaime:success", kwargs={"reference": session.reference}))


def sync(session):
    services.sync_sessions(grace=timedelta(0))


def admin_refresh(admin_client, session):
    admin_client.post(
        reverse("admin:khaime_django_paymentsession_changelist"),
        {"action": "refresh_from_khaime", "_selected_action": [session.pk]},
    )


PATHS = {
    "return page": lambda clients, session: return_page(clients["client"], session),
    "khaime_sync": lambda clients, session: sync(session),
    "admin refresh": lambda clients, session: admin_refresh(clients["admin_client"], session),
}


@pytest.fixture
def clients(client, admin_client):
    return {"client": client, "admin_client": admin_client}


def needs_review_signals(signal_log):
    return [kwargs for name, kwargs in signal_log if name == "payment_needs_review"]


@pytest.mark.parametrize("path", PATHS.values(), ids=PATHS.keys())
def test_khaime_completing_a_short_payment_flags_the_session_on_every_path(
    clients, make_session, khaime_says, signal_log, django_capture_on_commit_callbacks, path
):
    session = make_session(Status.PENDING, created_at=timezone.now() - timedelta(hours=1))
    khaime_says(session, "completed", amount=1, currency="USD")
    with django_capture_on_commit_callbacks(execute=True):
        path(clients, session)
    session.refresh_from_db()
    assert session.status == Status.COMPLETED  # money is never refused
    assert session.needs_review
    assert "paid 1 USD, less than the 5000 USD asked for" in session.review_reason
    [review] = needs_review_signals(signal_log)
    assert review["session"].pk == session.pk and review["event"] is None
    names = [name for name, _ in signal_log]
    assert names.index("payment_completed") < names.index("payment_needs_review")


@pytest.mark.parametrize("path", PATHS.values(), ids=PATHS.keys())
def test_khaime_completing_in_another_currency_flags_the_session(clients, make_session, khaime_says, path):
    session = make_session(Status.PENDING, created_at=timezone.now() - timedelta(hours=1))
    khaime_says(session, "completed", amount=5320, currency="EUR")
    path(clients, session)
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.COMPLETED, True)


def test_a_matching_completion_is_not_flagged(make_session, khaime_says, signal_log):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed", amount=5320, currency="USD")
    services.refresh_session(session, source=Source.RETURN)
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.COMPLETED, False)
    assert not needs_review_signals(signal_log)


def test_an_answer_about_another_mode_is_never_applied(make_session, khaime_says, signal_log):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed", amount=5320, currency="USD", mode="live")
    services.refresh_session(session, source=Source.ADMIN)
    session.refresh_from_db()
    assert (session.status, session.needs_review) == (Status.PENDING, True)
    assert "a live event for a sandbox session" in session.review_reason

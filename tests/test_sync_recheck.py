"""khaime_sync asks about `failed` sessions and local expiries within RECHECK_LOOKBACK (issue 10,
item 1): Khaime may still take their payment, and a lost payment.succeeded is otherwise never
found."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from khaime_django.models import PaymentSession, Status

from .test_sync import khaime_answers, statuses, sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged(make_session):
    def make(status, *, minutes_ago=60, **fields):
        return make_session(status, created_at=timezone.now() - timedelta(minutes=minutes_ago), **fields)

    return make


@pytest.mark.parametrize("final", [Status.FAILED, Status.EXPIRED])
def test_sync_finds_a_payment_after_failed_or_a_local_expiry(khaime_api, aged, final):
    """0.1.0: "checked 0", and the paid session stayed failed/expired."""
    session = aged(final)
    khaime_answers(khaime_api, session, "completed")
    output = sync()
    assert statuses(session) == [Status.COMPLETED]
    assert "checked 1, changed 1 (completed 1)" in output


def test_sync_leaves_failed_and_expired_sessions_past_the_look_back_alone(khaime_api, aged, settings):
    settings.KHAIME = {**settings.KHAIME, "RECHECK_LOOKBACK": timedelta(days=1)}
    aged(Status.FAILED, minutes_ago=24 * 60 + 1)
    aged(Status.EXPIRED, minutes_ago=24 * 60 + 1)
    assert "checked 0" in sync()
    assert len(khaime_api.calls) == 0


def test_rechecks_share_the_budget_newest_first_with_pending_sessions(khaime_api, aged):
    newest_failed = aged(Status.FAILED, minutes_ago=20)
    pending = aged(Status.PENDING, minutes_ago=30)
    older_expired = aged(Status.EXPIRED, minutes_ago=40)
    for session in (newest_failed, pending, older_expired):
        khaime_answers(khaime_api, session, "completed")
    output = sync("--budget", "2")
    assert statuses(newest_failed, pending, older_expired) == [Status.COMPLETED, Status.COMPLETED, Status.EXPIRED]
    assert "requests 2" in output


def test_a_failed_session_khaime_still_calls_failed_is_not_asked_again_within_the_grace(khaime_api, aged):
    session = aged(Status.FAILED)
    khaime_answers(khaime_api, session, "failed")
    assert "checked 1, changed 0" in sync()
    assert "checked 0" in sync()
    assert len(khaime_api.calls) == 1
    assert PaymentSession.objects.get(pk=session.pk).status == Status.FAILED

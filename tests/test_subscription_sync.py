"""khaime_sync's subscription pass against a stubbed Partner API (precise request counts)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command

from khaime_django.models import Payment, Subscription
from khaime_django.services.subscriptions import sells_subscriptions, sync_subscriptions
from khaime_django.subscription_statuses import SubscriptionStatus as SUB

from .conftest import API_BASE
from .subscription_helpers import subscription_object

pytestmark = pytest.mark.django_db

LIST = re.compile(re.escape(f"{API_BASE}/subscriptions") + r"\?.*")


def summary(item: dict) -> dict:
    return {key: value for key, value in item.items() if key != "payment_history"}


def page(*items, total=None):
    return {
        "success": True,
        "data": {"subscriptions": list(items), "total": total or len(items), "limit": 100, "offset": 0},
    }


def detail(khaime_api, data, **kwargs):
    khaime_api.get(f"{API_BASE}/subscriptions/{data['id']}", json={"success": True, "data": data}, **kwargs)


def known(subscription_id="sub_1", **fields):
    values = {"status": SUB.ACTIVE, "next_payment_date": None}
    values.update(fields)
    return Subscription.objects.create(subscription_id=subscription_id, **values)


def test_unknown_subscriptions_are_fetched_and_recorded(khaime_api):
    data = subscription_object("sub_new", payments=("txn_1", "txn_2"))
    khaime_api.get(LIST, json=page(summary(data)))
    detail(khaime_api, data)
    report = sync_subscriptions(budget=10)
    assert (report.requests, report.listed, report.fetched, report.changed, report.renewals) == (2, 1, 1, 1, 1)
    assert Subscription.objects.get().status == SUB.ACTIVE
    assert Payment.objects.count() == 2
    assert "limit=100" in khaime_api.calls[0].request.url and "sort_order=asc" in khaime_api.calls[0].request.url


def test_a_list_item_with_its_payment_history_needs_no_detail(khaime_api):
    known("sub_1")
    khaime_api.get(LIST, json=page(subscription_object("sub_1", status="paused")))
    report = sync_subscriptions(budget=10)
    assert (report.requests, report.fetched, report.changed) == (1, 0, 1)
    assert Subscription.objects.get().status == SUB.PAUSED


def test_dry_run_changes_nothing(khaime_api):
    known("sub_1")
    khaime_api.get(LIST, json=page(summary(subscription_object("sub_1", status="cancelled", next_payment_date=None))))
    seen = []
    report = sync_subscriptions(budget=10, dry_run=True, on_change=lambda *change: seen.append(change))
    assert report.changed == 1 and seen == [("sub_1", SUB.ACTIVE, SUB.CANCELLED)]
    assert Subscription.objects.get().status == SUB.ACTIVE


def test_a_detail_khaime_cannot_answer_is_an_error_and_the_next_one_is_still_asked(khaime_api):
    first, second = subscription_object("sub_a"), subscription_object("sub_b")
    khaime_api.get(LIST, json=page(summary(first), summary(second)))
    detail(khaime_api, first, status=500)
    detail(khaime_api, second)
    report = sync_subscriptions(budget=10)
    assert (report.errors, report.fetched, report.requests, report.stopped) == (1, 1, 3, "")
    assert list(Subscription.objects.values_list("subscription_id", flat=True)) == ["sub_b"]


def test_a_refused_key_stops_and_says_unreachable(khaime_api):
    khaime_api.get(LIST, status=401, json={"success": False, "error": "Invalid API key"})
    report = sync_subscriptions(budget=10)
    assert report.unreachable and report.stopped == "Khaime refused the API key"


def test_a_page_without_subscriptions_is_an_error_that_stops(khaime_api):
    khaime_api.get(LIST, json={"success": True, "data": {"total": 3}})
    report = sync_subscriptions(budget=10)
    assert report.errors == 1 and report.stopped.startswith("Khaime failed")


def test_zero_budget_asks_nothing(khaime_api):
    assert sync_subscriptions(budget=0).requests == 0


def test_the_command_runs_subscriptions_only_for_a_shop_that_sells_them(khaime_api, make_session):
    out = io.StringIO()
    call_command("khaime_sync", stdout=out)
    assert "subscriptions" not in out.getvalue() and not sells_subscriptions()
    make_session(subscription_frequency_key="monthly")
    khaime_api.get(LIST, json=page())
    out = io.StringIO()
    call_command("khaime_sync", "--dry-run", stdout=out)
    assert "khaime_sync subscriptions: listed 0, fetched 0, would change 0" in out.getvalue()
    out = io.StringIO()
    call_command("khaime_sync", "--skip-subscriptions", stdout=out)
    assert "subscriptions" not in out.getvalue()


def test_the_command_shows_each_change_at_verbosity_2(khaime_api):
    known("sub_1")
    khaime_api.get(LIST, json=page(subscription_object("sub_1", status="expired")))
    out = io.StringIO()
    call_command("khaime_sync", "-v", "2", stdout=out)
    assert "sub_1: changed active -> expired" in out.getvalue()

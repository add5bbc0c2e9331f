"""A subscription's whole life over real HTTP: the demo shop on ``live_server``, Khaime played
by the emulator, every event signed and delivered to ``khaime:webhook`` (twice, shuffled)."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command

from khaime_django.models import Payment, Subscription, WebhookEvent
from khaime_django.signals import subscription_renewed
from khaime_django.subscription_statuses import SubscriptionStatus as SUB
from khaime_django.timestamps import parse_timestamp

from .conftest import the_session


@pytest.fixture
def renewals():
    received = []

    def receiver(sender, subscription, payment, **kwargs):
        received.append(payment.transaction_id)

    subscription_renewed.connect(receiver, weak=False)
    yield received
    subscription_renewed.disconnect(receiver)


def settle(emulator, per_event: int = 1) -> None:
    """Wait until every event the emulator has sent so far was delivered ``per_event`` times."""
    emulator.wait_for_deliveries(len(emulator.events()) * per_event, timeout=15)


def the_subscription() -> Subscription:
    return Subscription.objects.get()


def buy_membership(buyer, emulator) -> str:
    buyer.buy("monthly-membership")
    return emulator.complete(the_session().session_id)["subscription_id"]


def test_a_membership_from_first_payment_to_expiry_events_twice_and_shuffled(buyer, khaime_emulator, renewals):
    khaime_emulator.configure(duplicate_webhooks=True, webhook_order="shuffled", seed=11)
    sub_id = buy_membership(buyer, khaime_emulator)
    settle(khaime_emulator, 2)
    sub = the_subscription()
    assert (sub.subscription_id, sub.status, sub.frequency) == (sub_id, SUB.ACTIVE, "monthly")
    assert sub.session == the_session() and sub.is_active
    assert Payment.objects.get().is_renewal is False
    truth = khaime_emulator.subscription(sub_id)
    assert sub.next_payment_date == parse_timestamp(truth["next_payment_date"])

    for _ in range(2):
        khaime_emulator.renew_subscription(sub_id)
    settle(khaime_emulator, 2)
    sub = the_subscription()
    assert sub.status == SUB.ACTIVE
    assert sub.next_payment_date == parse_timestamp(khaime_emulator.subscription(sub_id)["next_payment_date"])
    assert Payment.objects.filter(subscription=sub).count() == 3
    assert len(renewals) == 2

    khaime_emulator.fail_subscription_payment(sub_id)
    settle(khaime_emulator, 2)
    sub = the_subscription()
    assert sub.status == SUB.DUE
    assert sub.is_active  # the next payment date has not even come: within grace

    khaime_emulator.renew_subscription(sub_id)
    settle(khaime_emulator, 2)
    assert the_subscription().status == SUB.ACTIVE
    assert len(renewals) == 3

    khaime_emulator.cancel_subscription(sub_id)
    settle(khaime_emulator, 2)
    sub = the_subscription()
    assert sub.status == SUB.CANCELLED and sub.cancelled_at is not None
    assert sub.is_active  # paid until next_payment_date
    assert not sub.is_active_at(sub.next_payment_date + timedelta(seconds=1))

    khaime_emulator.expire_subscription(sub_id)
    settle(khaime_emulator, 2)
    sub = the_subscription()
    assert sub.status == SUB.EXPIRED and not sub.is_active
    assert not Subscription.objects.active().exists()

    # The ledger matches Khaime's: every payment once, renewals signalled once each.
    truth = khaime_emulator.subscription(sub_id)
    assert sorted(Payment.objects.values_list("transaction_id", flat=True)) == sorted(
        entry["transaction_id"] for entry in truth["payment_history"]
    )
    assert sorted(renewals) == sorted(entry["transaction_id"] for entry in truth["payment_history"][1:])
    assert list(sub.status_changes.values_list("to_status", flat=True)) == [
        SUB.ACTIVE,
        SUB.DUE,
        SUB.ACTIVE,
        SUB.CANCELLED,
        SUB.EXPIRED,
    ]
    assert not WebhookEvent.objects.exclude(error="").exists()


def test_a_lost_renewal_is_found_by_khaime_sync(buyer, khaime_emulator, renewals):
    sub_id = buy_membership(buyer, khaime_emulator)
    settle(khaime_emulator)
    assert the_subscription().status == SUB.ACTIVE
    khaime_emulator.configure(webhook_url=None)  # the renewal's webhooks are lost
    khaime_emulator.renew_subscription(sub_id)
    assert Payment.objects.count() == 1

    out = io.StringIO()
    call_command("khaime_sync", "--budget", "10", stdout=out)
    sub = the_subscription()
    truth = khaime_emulator.subscription(sub_id)
    assert sub.next_payment_date == parse_timestamp(truth["next_payment_date"])
    assert sub.last_checked_at is not None
    assert Payment.objects.count() == 2
    assert renewals == [truth["payment_history"][1]["transaction_id"]]
    assert "listed 1, fetched 1" in out.getvalue()
    assert "renewals found 1" in out.getvalue()

    # A second run has nothing left to fetch: the list settles it.
    out = io.StringIO()
    call_command("khaime_sync", "--budget", "10", stdout=out)
    assert "listed 1, fetched 0, changed 0" in out.getvalue()
    assert "requests 1" in out.getvalue()


def test_khaime_sync_applies_a_lost_cancellation_from_the_list_alone(buyer, khaime_emulator):
    sub_id = buy_membership(buyer, khaime_emulator)
    settle(khaime_emulator)
    khaime_emulator.configure(webhook_url=None)
    khaime_emulator.cancel_subscription(sub_id)
    out = io.StringIO()
    call_command("khaime_sync", "--budget", "10", stdout=out)
    assert the_subscription().status == SUB.CANCELLED
    assert "fetched 0, changed 1" in out.getvalue()


def test_khaime_sync_pages_by_100_and_keeps_to_its_budget(buyer, khaime_emulator):
    buy_membership(buyer, khaime_emulator)
    settle(khaime_emulator)
    # 120 more subscriptions we never heard of (sold while our webhook endpoint was down).
    khaime_emulator.configure(webhook_url=None)
    for number in range(120):
        buyer.email = f"member{number}@example.com"
        buyer.buy("monthly-membership")
        khaime_emulator.complete(buyer.page.url.rstrip("/").rsplit("/", 1)[-1])
    out = io.StringIO()
    call_command("khaime_sync", "--budget", "30", stdout=out)
    # One page of 100 (ours first, oldest first, settled by the list), then details until the
    # budget is spent: 1 + 29 requests.
    assert "listed 100, fetched 29, changed 29" in out.getvalue()
    assert "requests 30; stopped early: budget spent" in out.getvalue()
    assert Subscription.objects.count() == 30
    out = io.StringIO()
    call_command("khaime_sync", "--budget", "200", stdout=out)
    assert "listed 121, fetched 91" in out.getvalue()
    assert Subscription.objects.count() == 121
    assert "requests 93" in out.getvalue()


def test_khaime_sync_stops_at_the_first_429(buyer, khaime_emulator):
    buy_membership(buyer, khaime_emulator)
    settle(khaime_emulator)
    khaime_emulator.configure(fail_rate=1.0, fail_status=429)  # Khaime's quota is spent
    out = io.StringIO()
    call_command("khaime_sync", "--budget", "10", stdout=out)
    assert "listed 0, fetched 0, changed 0, renewals found 0, errors 0, requests 1" in out.getvalue()
    assert "stopped early: Khaime rate limit (429)" in out.getvalue()


def test_khaime_sync_stops_at_a_429_between_list_and_details(buyer, khaime_emulator):
    buy_membership(buyer, khaime_emulator)
    settle(khaime_emulator)
    khaime_emulator.configure(webhook_url=None)
    buyer.email = "second@example.com"
    buyer.buy("monthly-membership")  # unknown here: the sync must ask for its details
    khaime_emulator.complete(buyer.page.url.rstrip("/").rsplit("/", 1)[-1])
    khaime_emulator.configure(rate_limit_per_second=1)
    time.sleep(1.05 - time.time() % 1)  # both requests inside one second of the emulator's window
    out = io.StringIO()
    call_command("khaime_sync", "--budget", "10", stdout=out)
    line = out.getvalue()
    assert "listed 2, fetched 0, changed 0" in line
    assert "requests 2; stopped early: Khaime rate limit (429)" in line
    assert Subscription.objects.count() == 1


# -- the demo: a membership unlocks the members' area ----------------------------------------------


def log_in(buyer, django_user_model, username="ada", email="ada@example.com"):
    from .pages import parse_forms

    django_user_model.objects.create_user(username, email, "correct horse")
    buyer.email = email
    page = buyer.open("/accounts/login/?next=/members/")
    (form,) = [form for form in parse_forms(page.text) if "log-in" in form.button_ids]
    return buyer.submit(form, {"username": username, "password": "correct horse"})


def test_members_area_needs_a_login_then_a_membership(buyer, khaime_emulator, django_user_model):
    page = buyer.open("/members/")
    assert "/accounts/login/" in page.url
    page = log_in(buyer, django_user_model)
    assert page.url.endswith("/products/monthly-membership/")  # logged in, not a member yet

    buyer.buy("monthly-membership")
    page = buyer.press("pay")
    settle(khaime_emulator)
    assert page.status_code == 200
    page = buyer.open("/members/")
    assert page.status_code == 200 and "Welcome to the members" in page.text
    sub = the_subscription()
    assert sub.user.username == "ada"

    order = buyer.open(f"/orders/{the_session().reference}/")
    assert 'data-subscription-status="active"' in order.text
    assert Payment.objects.get().transaction_id in order.text and "first payment" in order.text
    khaime_emulator.renew_subscription(sub.subscription_id)
    settle(khaime_emulator)
    order = buyer.open(f"/orders/{the_session().reference}/")
    assert order.text.count("<code>txn_") == 2 and "renewal" in order.text

    khaime_emulator.expire_subscription(sub.subscription_id)
    settle(khaime_emulator)
    page = buyer.open("/members/")
    assert page.url.endswith("/products/monthly-membership/")

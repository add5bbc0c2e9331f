"""Admin for subscriptions and the payment ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from khaime_django.admin import REFRESH_ACTION_LIMIT
from khaime_django.models import Payment, Subscription
from khaime_django.subscription_statuses import SubscriptionStatus as SUB

from .conftest import API_BASE
from .subscription_helpers import subscription_event, subscription_object

pytestmark = pytest.mark.django_db

SUB_CHANGELIST = "admin:khaime_django_subscription_changelist"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def renewed(deliver, make_session):
    session = make_session(subscription_frequency_key="monthly")
    deliver(
        subscription_event(
            "subscription.renewed", subscription_object("sub_admin", session, payments=("txn_a1", "txn_a2"))
        )
    )
    return Subscription.objects.get()


def refresh(client, *subscriptions):
    return client.post(
        reverse(SUB_CHANGELIST),
        {"action": "refresh_from_khaime", "_selected_action": [s.pk for s in subscriptions]},
        follow=True,
    )


def test_changelist_shows_money_filters_and_finds_by_id_and_email(admin_client, renewed):
    page = admin_client.get(reverse(SUB_CHANGELIST))
    text = page.content.decode()
    assert "sub_admin" in text and "$53.20" in text and "Monthly Membership" in text
    titles = {spec.title for spec in page.context["cl"].filter_specs}
    assert {"status", "frequency", "currency"} <= titles
    for term in ("sub_admin", "member@example.com"):
        assert "sub_admin" in admin_client.get(reverse(SUB_CHANGELIST), {"q": term}).content.decode()
    assert "sub_admin" not in admin_client.get(reverse(SUB_CHANGELIST), {"q": "nobody@x.com"}).content.decode()
    assert admin_client.get(reverse(SUB_CHANGELIST), {"status__exact": "active"}).status_code == 200


def test_detail_page_shows_payments_and_history(admin_client, renewed):
    text = admin_client.get(reverse("admin:khaime_django_subscription_change", args=[renewed.pk])).content.decode()
    assert "txn_a1" in text and "txn_a2" in text
    assert "Status history" in text or "status history" in text
    assert "Pending" in text and "Active" in text


def test_refresh_from_khaime_applies_what_khaime_says(admin_client, renewed, khaime_api):
    khaime_api.get(
        f"{API_BASE}/subscriptions/sub_admin",
        json={
            "success": True,
            "data": subscription_object(
                "sub_admin", renewed.session, status="cancelled", payments=("txn_a1", "txn_a2", "txn_a3")
            ),
        },
    )
    page = refresh(admin_client, renewed)
    assert "1 subscription changed" in page.content.decode()
    renewed.refresh_from_db()
    assert renewed.status == SUB.CANCELLED
    assert renewed.last_checked_at is not None
    assert Payment.objects.filter(subscription=renewed).count() == 3
    assert renewed.status_changes.last().source == "admin"


def test_refresh_reports_khaime_errors(admin_client, renewed, khaime_api):
    khaime_api.get(f"{API_BASE}/subscriptions/sub_admin", status=404, json={"success": False, "error": "Not found"})
    text = refresh(admin_client, renewed).content.decode()
    assert "could not be checked" in text and "Not found" in text


def test_refresh_is_capped_per_run(admin_client, khaime_api):
    subs = [
        Subscription.objects.create(subscription_id=f"sub_{n}", status=SUB.ACTIVE)
        for n in range(REFRESH_ACTION_LIMIT + 2)
    ]
    for sub in subs:
        khaime_api.get(
            f"{API_BASE}/subscriptions/{sub.subscription_id}",
            json={"success": True, "data": subscription_object(sub.subscription_id, payments=())},
        )
    text = refresh(admin_client, *subs).content.decode()
    assert f"Only the {REFRESH_ACTION_LIMIT} newest" in text
    assert len(khaime_api.calls) == REFRESH_ACTION_LIMIT


def test_refresh_needs_the_change_permission(client, django_user_model, renewed):
    viewer = django_user_model.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_subscription"))
    client.force_login(viewer)
    page = client.get(reverse(SUB_CHANGELIST))
    assert page.status_code == 200
    assert "refresh_from_khaime" not in page.content.decode()
    refresh(client, renewed)
    renewed.refresh_from_db()
    assert renewed.last_checked_at is None


def test_payments_are_read_only_and_never_deletable(admin_client, renewed):
    payment = Payment.objects.first()
    changelist = admin_client.get(reverse("admin:khaime_django_payment_changelist"))
    assert changelist.status_code == 200 and "txn_a1" in changelist.content.decode()
    assert "delete_selected" not in changelist.content.decode()
    detail = admin_client.get(reverse("admin:khaime_django_payment_change", args=[payment.pk]))
    assert detail.status_code == 200 and "$53.20" in detail.content.decode()
    admin_client.post(reverse("admin:khaime_django_payment_change", args=[payment.pk]), {"amount": 1})
    assert admin_client.get(reverse("admin:khaime_django_payment_delete", args=[payment.pk])).status_code == 403
    assert admin_client.get(reverse("admin:khaime_django_payment_add")).status_code == 403
    payment.refresh_from_db()
    assert payment.amount == 5320
    assert admin_client.get(reverse("admin:khaime_django_subscription_delete", args=[renewed.pk])).status_code == 403


def test_access_column_reads_well(admin_client):
    sub = Subscription.objects.create(
        subscription_id="sub_c", status=SUB.CANCELLED, next_payment_date=timezone.now() + timedelta(days=2)
    )
    text = admin_client.get(reverse("admin:khaime_django_subscription_change", args=[sub.pk])).content.decode()
    assert "until" in text

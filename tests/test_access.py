"""Gating views and templates on an active subscription."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import timezone
from django.views import View

from khaime_django.access import SubscriptionRequiredMixin, has_active_subscription, subscription_required
from khaime_django.models import Subscription
from khaime_django.subscription_statuses import SubscriptionStatus as SUB

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("ada", "ada@example.com", "pw")


def subscribe(user, status=SUB.ACTIVE, *, product_name="Monthly Membership", product_id=7, days=10):
    return Subscription.objects.create(
        subscription_id=f"sub_{Subscription.objects.count()}",
        status=status,
        user=user,
        product_name=product_name,
        product_id=product_id,
        next_payment_date=timezone.now() + timedelta(days=days),
    )


def request_as(user):
    request = RequestFactory().get("/members/?page=2")
    request.user = user
    return request


@subscription_required
def any_plan(request):
    return HttpResponse("welcome")


@subscription_required("Monthly Membership")
def monthly_only(request):
    return HttpResponse("welcome")


@subscription_required(7, redirect_url="/pricing/")
def by_id_with_redirect(request):
    return HttpResponse("welcome")


class MembersView(SubscriptionRequiredMixin, View):
    subscription_product = "Monthly Membership"

    def get(self, request):
        return HttpResponse("welcome")


def test_anonymous_visitors_are_sent_to_log_in():
    response = any_plan(request_as(AnonymousUser()))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert MembersView.as_view()(request_as(AnonymousUser())).status_code == 302


def test_a_user_without_a_subscription_is_refused(member):
    with pytest.raises(PermissionDenied):
        any_plan(request_as(member))
    with pytest.raises(PermissionDenied):
        MembersView.as_view()(request_as(member))
    response = by_id_with_redirect(request_as(member))
    assert (response.status_code, response["Location"]) == (302, "/pricing/")


def test_an_active_member_gets_in(member):
    subscribe(member)
    for view in (any_plan, monthly_only, by_id_with_redirect, MembersView.as_view()):
        assert view(request_as(member)).content == b"welcome"


def test_the_product_must_match(member):
    subscribe(member, product_name="Gold", product_id=9)
    assert any_plan(request_as(member)).status_code == 200
    with pytest.raises(PermissionDenied):
        monthly_only(request_as(member))
    assert by_id_with_redirect(request_as(member)).status_code == 302


@pytest.mark.parametrize(
    ("status", "days", "allowed"),
    [(SUB.CANCELLED, 5, True), (SUB.CANCELLED, -1, False), (SUB.DUE, -1, True), (SUB.EXPIRED, 5, False)],
)
def test_access_follows_is_active(member, status, days, allowed):
    subscribe(member, status, days=days)
    assert has_active_subscription(member) is allowed


def test_a_subscription_bought_with_the_users_email_counts(member):
    Subscription.objects.create(subscription_id="sub_e", status=SUB.ACTIVE, customer_email="ADA@example.com")
    assert has_active_subscription(member)


def test_template_filter(member):
    template = Template(
        "{% load khaime %}{% if user|khaime_is_member %}member{% endif %}/"
        '{% if user|khaime_is_member:"Gold" %}gold{% endif %}'
    )
    assert template.render(Context({"user": member})) == "/"
    subscribe(member)
    assert template.render(Context({"user": member})) == "member/"
    assert template.render(Context({"user": AnonymousUser()})) == "/"

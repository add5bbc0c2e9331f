"""A member in a real browser: logs in, buys the Monthly Membership in the demo shop, pays on
the emulator's checkout page, and opens the members' area it unlocks. Screenshots go to
test-artifacts/screenshots/<test>/."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from khaime_django.models import PaymentSession, Subscription

pytestmark = pytest.mark.browser

MEMBER, PASSWORD = "ada", "browser-test-password"  # a throwaway user in the test database


@pytest.fixture
def shop(live_shop, khaime_emulator, transactional_db, settings) -> str:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("loaddata", "demo_products", verbosity=0)
    get_user_model().objects.create_user(MEMBER, "ada@example.com", PASSWORD)
    return live_shop.url


@pytest.fixture
def expect():
    from playwright.sync_api import expect

    return expect


def test_member_buys_the_membership_and_opens_the_members_area(page, shop, khaime_emulator, shot, expect):
    page.goto(shop + "/members/")
    page.wait_for_url(re.compile(r".*/accounts/login/\?next=/members/"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(MEMBER)
    page.get_by_label("Password").fill(PASSWORD)
    shot("log-in")
    page.get_by_role("button", name="Log in").click()

    # Logged in but not a member: sent to the membership's product page.
    page.wait_for_url("**/products/monthly-membership/")
    expect(page.get_by_role("heading", name="Monthly Membership")).to_be_visible()
    shot("not-a-member-yet")
    email = page.get_by_label("Email")
    if email.count():
        email.fill("ada@example.com")
    page.get_by_role("button", name="Buy now").click()
    page.wait_for_url(re.compile(re.escape(khaime_emulator.base_url) + r"/checkout/sess_"))
    expect(page.get_by_role("heading", name="Monthly Membership")).to_be_visible()
    shot("emulator-checkout")
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()
    page.wait_for_url("**/success/")
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    shot("payment-received")
    khaime_emulator.wait_for_deliveries(2)  # subscription.created, payment.succeeded

    page.goto(shop + "/members/")
    expect(page.get_by_role("heading", name="Welcome to the members' area")).to_be_visible()
    expect(page.get_by_text("member", exact=False).first).to_be_visible()
    shot("members-area")
    subscription = Subscription.objects.get()
    assert subscription.user.username == MEMBER and subscription.is_active

    page.goto(shop + f"/orders/{PaymentSession.objects.get().reference}/")
    expect(page.get_by_role("heading", name="Subscription")).to_be_visible()
    expect(page.get_by_role("heading", name="Payments")).to_be_visible()
    shot("order-with-subscription")

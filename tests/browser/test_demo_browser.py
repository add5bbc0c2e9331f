"""A person in a real browser: buys in the demo shop, pays (or cancels, or is declined) on the
emulator's checkout page, comes back, and the merchant sees the result in the admin.

The demo shop runs on ``live_server``, Khaime is the emulator (``khaime_emulator``), and its
webhooks go to the shop. Each step is screenshotted into test-artifacts/screenshots/<test>/.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from khaime_django.models import PaymentSession, Status

pytestmark = pytest.mark.browser

ADMIN_USER = "admin"
ADMIN_PASSWORD = "browser-test-password"  # a throwaway user in the test database


@pytest.fixture
def shop(live_shop, khaime_emulator, transactional_db, settings) -> str:
    """The demo shop with its products and an admin user; answers its URL."""
    # A fast hasher for the throwaway admin: the default one costs about a second per login.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("loaddata", "demo_products", verbosity=0)
    get_user_model().objects.create_superuser(ADMIN_USER, "admin@example.com", ADMIN_PASSWORD)
    return live_shop.url


@pytest.fixture
def expect():
    from playwright.sync_api import expect

    return expect


def buy_premium_plan(page, shop: str, emulator, shot, expect) -> None:
    """From the product list to the emulator's checkout page."""
    page.goto(shop + "/")
    expect(page.get_by_role("link", name="Premium Plan")).to_be_visible()
    shot("product-list")
    page.get_by_role("link", name="Premium Plan").click()
    expect(page.get_by_role("heading", name="Premium Plan")).to_be_visible()
    page.get_by_label("Email").fill("buyer@example.com")
    shot("product-page")
    page.get_by_role("button", name="Buy now").click()
    page.wait_for_url(re.compile(re.escape(emulator.base_url) + r"/checkout/sess_"))
    expect(page.get_by_role("heading", name="Premium Plan")).to_be_visible()
    expect(page.get_by_role("button", name="Pay 53.20 USD")).to_be_visible()
    shot("emulator-checkout")


def test_buyer_pays_and_admin_shows_the_session_completed_with_fees(page, shop, khaime_emulator, shot, expect):
    buy_premium_plan(page, shop, khaime_emulator, shot, expect)

    page.get_by_role("button", name="Pay 53.20 USD").click()

    page.wait_for_url("**/success/")
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    expect(page.get_by_text("You paid $53.20 for Premium Plan")).to_be_visible()
    shot("payment-received")
    khaime_emulator.wait_for_deliveries(1)
    session = PaymentSession.objects.get()
    assert session.status == Status.COMPLETED

    page.goto(shop + reverse("admin:khaime_django_paymentsession_changelist"))
    page.get_by_label("Username").fill(ADMIN_USER)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td.field-status")).to_have_text("Completed")
    shot("admin-session-list")
    row.get_by_role("link", name=str(session.reference)[:8]).click()
    expect(page.locator(".field-status .readonly")).to_have_text("Completed")
    fees = page.locator(".field-fees .readonly")
    expect(fees).to_contain_text("transaction fee")
    expect(fees).to_contain_text("$3.20")
    expect(fees).to_contain_text("$53.20")
    shot("admin-session-detail")


def test_buyer_cancels_then_returns_to_payment_and_pays(page, shop, khaime_emulator, shot, expect):
    buy_premium_plan(page, shop, khaime_emulator, shot, expect)

    page.get_by_role("button", name="Cancel").click()

    page.wait_for_url("**/cancel/")
    expect(page.get_by_role("heading", name="Payment cancelled")).to_be_visible()
    expect(page.get_by_role("link", name="Return to payment")).to_be_visible()
    shot("payment-cancelled")
    assert PaymentSession.objects.get().status == Status.CANCELLED
    page.get_by_role("link", name="Return to payment").click()
    expect(page.get_by_role("button", name="Pay 53.20 USD")).to_be_visible()
    shot("emulator-checkout-again")
    page.get_by_role("button", name="Pay 53.20 USD").click()
    page.wait_for_url("**/success/")
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    shot("payment-received")
    khaime_emulator.wait_for_deliveries(1)
    assert PaymentSession.objects.get().status == Status.COMPLETED


def test_declined_buyer_sees_the_payment_failed(page, shop, khaime_emulator, shot, expect):
    buy_premium_plan(page, shop, khaime_emulator, shot, expect)

    page.get_by_role("button", name="Decline").click()

    expect(page.get_by_text("The payment was declined.")).to_be_visible()
    shot("emulator-declined")
    khaime_emulator.wait_for_deliveries(1)
    page.get_by_role("link", name="Return to the shop").click()
    expect(page.get_by_role("heading", name="Payment failed")).to_be_visible()
    shot("shop-payment-failed")
    session = PaymentSession.objects.get()
    assert session.status == Status.FAILED
    page.goto(shop + reverse("shop:order", kwargs={"reference": session.reference}))
    expect(page.locator("[data-order-status]")).to_have_text("Failed")
    shot("order-status-failed")


def test_processing_page_updates_itself_when_the_webhook_lands(page, shop, khaime_emulator, webhook_gate, shot, expect):
    buy_premium_plan(page, shop, khaime_emulator, shot, expect)
    # Khaime's API fails, so the return page cannot confirm the payment.
    khaime_emulator.configure(fail_rate=1, fail_status=500)
    webhook_gate.hold()

    page.get_by_role("button", name="Pay 53.20 USD").click()

    page.wait_for_url("**/success/")
    expect(page.get_by_role("heading", name="Processing your payment")).to_be_visible()
    shot("processing")
    webhook_gate.release()
    khaime_emulator.wait_for_deliveries(1)
    # The page polls the status endpoint (first after 2 s) and reloads itself on a change.
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible(timeout=10_000)
    shot("payment-received-without-reload")


def test_khaime_down_at_checkout_shows_an_error_page_and_try_again_works(page, shop, khaime_emulator, shot, expect):
    khaime_emulator.configure(fail_rate=1, fail_status=500)
    page.goto(shop + reverse("shop:product", kwargs={"slug": "premium-plan"}))
    page.get_by_label("Email").fill("buyer@example.com")

    page.get_by_role("button", name="Buy now").click()

    expect(page.get_by_role("heading", name="Payment is unavailable right now")).to_be_visible()
    shot("checkout-error")
    khaime_emulator.configure(fail_rate=0)
    page.get_by_role("button", name="Try again").click()
    expect(page.get_by_role("button", name="Pay 53.20 USD")).to_be_visible()
    shot("emulator-checkout-after-retry")

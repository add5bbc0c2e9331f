"""The admin refund flow in a real browser: a clerk with the refund permission refunds part of a
paid order, then the rest; Khaime (the emulator) completes each refund by webhook; a clerk
without the permission sees no Refund button. Screenshots in test-artifacts/screenshots/<test>/.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from khaime_django.models import Payment, PaymentSession, Status
from khaime_django.services import start_checkout

pytestmark = pytest.mark.browser

PASSWORD = "browser-test-password"  # throwaway users in the test database


@pytest.fixture
def expect():
    from playwright.sync_api import expect

    return expect


@pytest.fixture
def paid_order(live_shop, khaime_emulator, transactional_db, settings) -> PaymentSession:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": live_shop.url}
    session = start_checkout(amount=5000, currency="USD", customer_email="ada@example.com", product_name="Premium Plan")
    khaime_emulator.complete(session.session_id)
    khaime_emulator.wait_for_deliveries(1)
    return PaymentSession.objects.get()


def clerk(username: str, *, may_refund: bool) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    names = ["view_paymentsession", "view_payment", "view_refund"] + (["refund_payment"] if may_refund else [])
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="khaime_django", codename__in=names))
    return user


def log_in(page, url: str, username: str) -> None:
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_clerk_refunds_part_then_the_rest_from_the_session_page(
    page, live_shop, paid_order, khaime_emulator, shot, expect
):
    clerk("refunder", may_refund=True)
    session_url = live_shop.url + reverse("admin:khaime_django_paymentsession_change", args=[paid_order.pk])
    log_in(page, session_url, "refunder")
    expect(page.locator(".field-status .readonly")).to_have_text("Completed")
    shot("session-paid")

    page.get_by_role("link", name="Refund", exact=True).click()
    expect(page.locator("[data-refund-warning]")).to_contain_text("cannot be undone")
    expect(page.locator("[data-refundable]")).to_have_text("$53.20")
    expect(page.get_by_label("Amount to refund")).to_have_value("53.20")
    shot("confirm-full-amount")
    page.get_by_label("Amount to refund").fill("20.00")
    page.get_by_label("Reason").fill("arrived late")
    shot("confirm-partial")
    page.get_by_role("button", name="Yes, refund this amount").click()

    expect(page.locator(".messagelist")).to_contain_text("Khaime is processing it")
    khaime_emulator.wait_for_deliveries(2)  # payment.succeeded, refund.completed
    page.reload()
    expect(page.locator(".field-status .readonly")).to_have_text("Completed")
    expect(page.locator(".field-refunded .readonly")).to_have_text("$20.00")
    expect(page.locator(".field-refunds_summary")).to_contain_text("arrived late")
    shot("session-partly-refunded")

    page.get_by_role("link", name="Refund", exact=True).click()
    expect(page.locator("[data-refunded]")).to_have_text("$20.00")
    expect(page.get_by_label("Amount to refund")).to_have_value("33.20")
    shot("confirm-the-rest")
    page.get_by_role("button", name="Yes, refund this amount").click()
    expect(page.locator(".messagelist")).to_contain_text("Khaime is processing it")
    khaime_emulator.wait_for_deliveries(4)  # refund.completed, payment.refunded
    page.reload()
    expect(page.locator(".field-status .readonly")).to_have_text("Refunded")
    expect(page.locator(".field-refunded .readonly")).to_have_text("$53.20")
    expect(page.get_by_role("link", name="Refund", exact=True)).to_have_count(0)  # nothing remains
    shot("session-refunded")

    page.goto(live_shop.url + reverse("admin:khaime_django_refund_changelist"))
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    shot("refunds-list")
    page.goto(live_shop.url + reverse("shop:order", args=[paid_order.reference]))
    expect(page.locator("[data-refunded]")).to_have_text("$53.20")
    shot("order-page")
    assert PaymentSession.objects.get().status == Status.REFUNDED
    assert Payment.objects.get().refunded_amount == 5320
    assert [r["amount"] for r in khaime_emulator.refunds()] == [2000, 3320]


def test_clerk_without_the_permission_sees_no_refund_button(page, live_shop, paid_order, shot, expect):
    clerk("viewer", may_refund=False)
    session_url = live_shop.url + reverse("admin:khaime_django_paymentsession_change", args=[paid_order.pk])
    log_in(page, session_url, "viewer")
    expect(page.locator(".field-status .readonly")).to_have_text("Completed")
    expect(page.get_by_role("link", name="Refund", exact=True)).to_have_count(0)
    shot("no-refund-button")
    payment = Payment.objects.get()
    response = page.goto(live_shop.url + reverse("admin:khaime_django_payment_refund", args=[payment.pk]))
    assert response.status == 403
    shot("refund-page-forbidden")

"""The admin's Refund button and confirmation page, against the emulator over real HTTP (no
webhook URL: refunds stay ``processing``, which is all the admin needs to show)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from khaime_django.models import Payment, Refund, Status
from khaime_django.refund_statuses import RefundStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid(make_session, khaime_emulator):
    """A session the emulator took payment for, and its ledger row."""

    def make(amount=5000, currency="USD", total=5320):
        from khaime_django.services import start_checkout

        session = start_checkout(
            amount=amount, currency=currency, customer_email="ada@example.com", product_name="Field guide"
        )
        khaime_emulator.complete(session.session_id)
        truth = khaime_emulator.session(session.session_id)
        session.status = Status.COMPLETED
        session.save(update_fields=["status"])
        return Payment.objects.create(
            transaction_id=truth["transaction_id"],
            session=session,
            amount=truth.get("total_amount") or total,
            currency=currency,
            paid_at=timezone.now() - timedelta(minutes=1),
        )

    return make


@pytest.fixture(autouse=True)
def site_url(settings, khaime_emulator):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "http://127.0.0.1:8000"}


def staff(*, refund: bool, username="clerk") -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    names = ["view_paymentsession", "change_paymentsession", "view_payment", "view_refund", "change_payment"]
    if refund:
        names.append("refund_payment")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="khaime_django", codename__in=names))
    return user


def refund_url(payment) -> str:
    return reverse("admin:khaime_django_payment_refund", args=[payment.pk])


def form_fields(html: str) -> dict:
    fields = dict(re.findall(r'name="(token|csrfmiddlewaretoken)" value="([^"]+)"', html))
    fields["amount"] = re.search(r'name="amount" value="([^"]*)"', html).group(1)
    return fields


def test_staff_with_the_permission_sees_the_button_on_the_session_and_the_payment(client, paid):
    payment = paid()
    client.force_login(staff(refund=True))
    session_page = client.get(reverse("admin:khaime_django_paymentsession_change", args=[payment.session_id]))
    payment_page = client.get(reverse("admin:khaime_django_payment_change", args=[payment.pk]))
    assert f'href="{refund_url(payment)}?from=session"' in session_page.content.decode()
    assert f'href="{refund_url(payment)}"' in payment_page.content.decode()


def test_staff_without_the_permission_neither_sees_nor_can_post(client, paid, khaime_emulator):
    payment = paid()
    client.force_login(staff(refund=False))  # may change sessions and payments, not refund
    session_page = client.get(reverse("admin:khaime_django_paymentsession_change", args=[payment.session_id]))
    assert session_page.status_code == 200
    assert "khaime-refund-button" not in session_page.content.decode()
    assert client.get(refund_url(payment)).status_code == 403
    assert client.post(refund_url(payment), {"amount": "53.20", "token": "x"}).status_code == 403
    assert not Refund.objects.exists()
    assert khaime_emulator.refunds() == []


def test_a_non_staff_user_with_the_permission_is_sent_to_the_login(client, paid):
    payment = paid()
    user = staff(refund=True)
    user.is_staff = False
    user.save()
    client.force_login(user)
    response = client.get(refund_url(payment))
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_the_confirmation_page_defaults_to_what_remains_and_warns(client, paid):
    payment = paid()
    client.force_login(staff(refund=True))
    page = client.get(refund_url(payment)).content.decode()
    assert form_fields(page)["amount"] == "53.20"
    assert "data-refund-warning" in page and "cannot be undone" in page
    assert "$53.20" in page  # paid, and still refundable
    assert "Refunded so far" in page


@pytest.mark.parametrize(
    ("currency", "amount", "total", "shown", "typed", "minor"),
    [("JPY", 5000, 5320, "5320", "1000", 1000), ("KWD", 1250, 1345, "1.345", "0.125", 125)],
)
def test_minor_units_of_jpy_and_kwd(client, paid, khaime_emulator, currency, amount, total, shown, typed, minor):
    payment = paid(amount=amount, currency=currency, total=total)
    client.force_login(staff(refund=True))
    fields = form_fields(client.get(refund_url(payment)).content.decode())
    assert fields["amount"] == shown
    client.post(refund_url(payment), {**fields, "amount": typed, "reason": "damaged"})
    assert Refund.objects.get().amount == minor
    assert khaime_emulator.refunds()[0]["amount"] == minor


def test_too_many_decimals_are_refused_not_rounded(client, paid, khaime_emulator):
    payment = paid()
    client.force_login(staff(refund=True))
    fields = form_fields(client.get(refund_url(payment)).content.decode())
    response = client.post(refund_url(payment), {**fields, "amount": "10.005"})
    assert response.status_code == 200
    assert not Refund.objects.exists()
    assert khaime_emulator.refunds() == []


def test_confirming_refunds_once_and_reports_it(client, paid, khaime_emulator):
    payment = paid()
    user = staff(refund=True)
    client.force_login(user)
    fields = form_fields(client.get(refund_url(payment)).content.decode())
    response = client.post(refund_url(payment), {**fields, "amount": "20.00", "reason": "late delivery"}, follow=True)
    refund = Refund.objects.get()
    assert (refund.amount, refund.reason, refund.requested_by) == (2000, "late delivery", user)
    assert refund.status == RefundStatus.PROCESSING
    assert "Khaime is processing it" in response.content.decode()
    assert khaime_emulator.refunds()[0]["transaction_id"] == payment.transaction_id


def test_a_double_submitted_form_makes_one_refund(client, paid, khaime_emulator):
    payment = paid()
    client.force_login(staff(refund=True))
    fields = form_fields(client.get(refund_url(payment)).content.decode())
    first = client.post(refund_url(payment), {**fields, "amount": "10.00"})
    second = client.post(refund_url(payment), {**fields, "amount": "10.00"})
    assert first.status_code == second.status_code == 302
    assert Refund.objects.count() == 1
    assert len(khaime_emulator.refunds()) == 1


def test_a_second_tab_opened_before_the_first_refund_is_refused(client, paid, khaime_emulator):
    payment = paid()
    client.force_login(staff(refund=True))
    tab_one = form_fields(client.get(refund_url(payment)).content.decode())
    tab_two = form_fields(client.get(refund_url(payment)).content.decode())
    client.post(refund_url(payment), {**tab_one, "amount": "10.00"})
    page = client.post(refund_url(payment), {**tab_two, "amount": "10.00"}, follow=True).content.decode()
    assert "changed since the form was shown" in page
    assert Refund.objects.count() == 1
    assert len(khaime_emulator.refunds()) == 1


def test_a_forged_or_foreign_token_is_refused(client, paid, khaime_emulator):
    one, other = paid(), paid(amount=6000, total=6380)
    client.force_login(staff(refund=True))
    other_fields = form_fields(client.get(refund_url(other)).content.decode())
    assert client.post(refund_url(one), {**other_fields, "amount": "1.00"}).status_code == 200
    assert client.post(refund_url(one), {**other_fields, "token": "forged"}).status_code == 200
    assert not Refund.objects.exists()
    assert khaime_emulator.refunds() == []


def test_more_than_remains_is_refused_with_a_message(client, paid, khaime_emulator):
    payment = paid()
    client.force_login(staff(refund=True))
    fields = form_fields(client.get(refund_url(payment)).content.decode())
    page = client.post(refund_url(payment), {**fields, "amount": "60.00"}, follow=True).content.decode()
    assert "more than remains refundable" in page
    assert not Refund.objects.exists()


def test_an_unknown_refund_is_shown_clearly(client, paid, settings, khaime_emulator):
    settings.KHAIME = {**settings.KHAIME, "TIMEOUT": (1, 0.3)}
    khaime_emulator.configure(refund_answer_delay=1.0)
    payment = paid()
    client.force_login(staff(refund=True))
    khaime_emulator.next_refund("timeout")
    fields = form_fields(client.get(refund_url(payment)).content.decode())
    page = client.post(refund_url(payment), {**fields, "amount": "5.00"}, follow=True).content.decode()
    assert "Do not refund again" in page
    assert "UNKNOWN" in page  # the payment page's refunds inline
    listing = client.get(reverse("admin:khaime_django_refund_changelist")).content.decode()
    assert "UNKNOWN: Khaime may have refunded" in listing
    assert Refund.objects.get().status == RefundStatus.UNKNOWN


def test_refunds_changelist_is_read_only(client, paid):
    payment = paid()
    Refund.objects.create(payment=payment, amount=100, currency="USD", status=RefundStatus.COMPLETED)
    client.force_login(staff(refund=True))
    assert client.get(reverse("admin:khaime_django_refund_changelist")).status_code == 200
    assert client.get(reverse("admin:khaime_django_refund_add")).status_code == 403
    refund = Refund.objects.get()
    page = client.get(reverse("admin:khaime_django_refund_change", args=[refund.pk])).content.decode()
    assert 'name="amount"' not in page


def test_mark_failed_needs_the_refund_permission(client, paid):
    payment = paid()
    refund = Refund.objects.create(payment=payment, amount=100, currency="USD", status=RefundStatus.UNKNOWN)
    changelist = reverse("admin:khaime_django_refund_changelist")
    client.force_login(staff(refund=False, username="viewer"))
    assert "mark_failed" not in client.get(changelist).content.decode()
    client.post(changelist, {"action": "mark_failed", "_selected_action": [refund.pk]})
    refund.refresh_from_db()
    assert refund.status == RefundStatus.UNKNOWN

    client.force_login(staff(refund=True))
    client.post(changelist, {"action": "mark_failed", "_selected_action": [refund.pk]})
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert payment.refundable_amount == payment.amount

"""The whole payment flow over real HTTP: the demo shop on ``live_server``, Khaime played by the
emulator, the buyer by ``requests`` (see conftest.Buyer). Nothing is stubbed: checkout calls the
emulator's Partner API, the buyer presses the emulator's buttons, the emulator signs and delivers
webhooks to the shop's ``khaime:webhook``.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from khaime_django.models import Source, Status, WebhookEvent, WebhookOutcome

from .conftest import changes, the_session

# The demo's $50.00 Premium Plan with the emulator's default fee (6% + 20 cents, paid by the buyer).
PREMIUM_PLAN_FEES = {
    "base_product_price": 5000,
    "transaction_fee": 320,
    "total_amount": 5320,
    "customer_pays_fees": True,
}


def completions(session) -> list[tuple[str, str, str]]:
    return [change for change in changes(session) if change[1] == Status.COMPLETED]


COMPLETED_BY_WEBHOOK = [(Status.PENDING, Status.COMPLETED, Source.WEBHOOK)]
COMPLETED_BY_RETURN = [(Status.PENDING, Status.COMPLETED, Source.RETURN)]


def test_buy_pay_and_return_completes_the_session_once(buyer, khaime_emulator):
    checkout_page = buyer.buy()
    assert checkout_page.status_code == 200
    assert checkout_page.url == the_session().payment_url
    assert "Premium Plan" in checkout_page.text

    # The emulator sends the buyer back while its webhook is on the way.
    page = buyer.press("pay")
    khaime_emulator.wait_for_deliveries(1)

    assert page.status_code == 200
    assert page.url == the_session().success_url
    assert "Payment received" in page.text
    assert "$53.20" in page.text
    session = the_session()
    assert session.status == Status.COMPLETED
    assert session.completed_at is not None
    assert len(completions(session)) == 1
    assert session.fee_details == PREMIUM_PLAN_FEES
    assert session.amount == 5000
    assert (session.total_amount, session.currency) == (5320, "USD")
    assert session.metadata == {"product_slug": "premium-plan"}
    # Whichever came first, the return or the webhook:
    assert WebhookEvent.objects.get().session == session


@pytest.mark.parametrize(
    ("product_slug", "total_shown", "payment_type", "frequency"),
    [
        ("premium-plan", "$53.20", "one_time", ""),
        ("monthly-membership", "$9.74", "subscription", "monthly"),
        # JPY has no minor unit: 5000 is 5,000 yen.
        ("tokyo-tea-set", "\N{YEN SIGN}5,320", "one_time", ""),
    ],
)
def test_every_demo_product_can_be_bought(buyer, khaime_emulator, product_slug, total_shown, payment_type, frequency):
    buyer.buy(product_slug)

    page = buyer.press("pay")
    # A subscription also sends subscription.created: let it land in this test's database.
    khaime_emulator.wait_for_deliveries(2 if frequency else 1)

    assert "Payment received" in page.text
    assert total_shown in page.text
    session = the_session()
    assert session.payment_type == payment_type
    assert session.subscription_frequency_key == frequency
    sent_to_khaime = khaime_emulator.session(session.session_id)
    assert sent_to_khaime["subscription_frequency_key"] == (frequency or None)


def test_buying_again_while_pending_reuses_the_khaime_session(buyer, khaime_emulator):
    first = buyer.buy()

    second = buyer.buy()  # back button, Buy now again

    # One row, and the same Khaime checkout page: no second Khaime session was created.
    assert second.url == first.url == the_session().payment_url
    assert the_session().status == Status.PENDING


def test_webhook_of_a_paid_session_is_stored_and_applied(buyer, khaime_emulator):
    buyer.buy()
    buyer.press("pay", follow=False)
    khaime_emulator.wait_for_deliveries(1)

    (delivery,) = khaime_emulator.deliveries()
    assert delivery["status_code"] == 200
    event = WebhookEvent.objects.get()
    assert event.event_id == delivery["event_id"]
    assert event.event_type == "payment.succeeded"
    assert (event.outcome, event.session) == (WebhookOutcome.APPLIED, the_session())
    assert event.processed_at is not None


def test_webhook_before_the_buyer_returns_completes_once(buyer, khaime_emulator):
    buyer.buy()
    buyer.press("pay", follow=False)  # paid; the buyer's browser has not come back yet
    khaime_emulator.wait_for_deliveries(1)
    assert the_session().status == Status.COMPLETED

    page = buyer.follow()

    assert "Payment received" in page.text
    assert completions(the_session()) == COMPLETED_BY_WEBHOOK


def test_webhook_after_the_buyer_returned_changes_nothing_more(buyer, khaime_emulator, webhook_gate):
    webhook_gate.hold()
    buyer.buy()

    page = buyer.press("pay")  # back on the success page, which asked Khaime

    assert "Payment received" in page.text
    assert completions(the_session()) == COMPLETED_BY_RETURN
    webhook_gate.release()
    khaime_emulator.wait_for_deliveries(1)
    assert khaime_emulator.deliveries()[0]["status_code"] == 200
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.session) == (WebhookOutcome.DUPLICATE, the_session())
    assert completions(the_session()) == COMPLETED_BY_RETURN


def test_return_without_paying_does_not_mark_paid(buyer, khaime_emulator):
    buyer.buy()

    # A forged or premature success redirect.
    page = buyer.open(the_session().success_url)

    assert "Processing your payment" in page.text
    assert "Payment received" not in page.text
    assert the_session().status == Status.PENDING


def test_return_while_khaime_is_down_shows_processing_until_the_webhook(buyer, khaime_emulator, webhook_gate):
    buyer.buy()
    # Faults hit the Partner API only; webhooks still go.
    khaime_emulator.configure(fail_rate=1, fail_status=500)
    webhook_gate.hold()

    page = buyer.press("pay")

    assert "Processing your payment" in page.text
    assert "could not be reached" in page.text
    assert the_session().status == Status.PENDING
    webhook_gate.release()
    khaime_emulator.wait_for_deliveries(1)
    assert "Payment received" in buyer.open(the_session().success_url).text
    assert completions(the_session()) == COMPLETED_BY_WEBHOOK


def test_buyer_cancels_then_pays_later_from_the_cancel_page(buyer, khaime_emulator):
    buyer.buy()

    cancelled = buyer.press("cancel")

    assert cancelled.url == the_session().cancel_url
    assert "Payment cancelled" in cancelled.text
    assert the_session().status == Status.CANCELLED
    checkout_page = buyer.click("Return to payment")
    assert checkout_page.url == the_session().payment_url
    buyer.press("pay", follow=False)
    khaime_emulator.wait_for_deliveries(1)
    assert "Payment received" in buyer.follow().text
    assert changes(the_session()) == [
        (Status.CREATED, Status.PENDING, Source.CHECKOUT),
        (Status.PENDING, Status.CANCELLED, Source.CANCEL),
        (Status.CANCELLED, Status.COMPLETED, Source.WEBHOOK),
    ]


def test_declined_payment_ends_failed(buyer, khaime_emulator):
    buyer.buy()

    emulator_page = buyer.press("decline")  # the emulator shows its own page again

    assert emulator_page.url == the_session().payment_url
    assert "declined" in emulator_page.text
    khaime_emulator.wait_for_deliveries(1)
    session = the_session()
    assert session.status == Status.FAILED
    assert changes(session)[-1] == (Status.PENDING, Status.FAILED, Source.WEBHOOK)
    assert "Payment failed" in buyer.open(session.success_url).text


def test_expired_session_shows_expired_on_return(buyer, khaime_emulator):
    buyer.buy()
    khaime_emulator.expire(the_session().session_id)

    page = buyer.open(the_session().success_url)

    assert "Payment expired" in page.text
    assert changes(the_session())[-1] == (Status.PENDING, Status.EXPIRED, Source.RETURN)
    assert khaime_emulator.deliveries() == []  # Khaime announces no expiry by webhook


def test_status_endpoint_reports_expiry(buyer, khaime_emulator):
    buyer.buy()
    session = the_session()
    khaime_emulator.expire(session.session_id)

    status_url = reverse("khaime:status", kwargs={"reference": session.reference})
    answer = buyer.open(status_url).json()

    assert answer["status"] == "expired"
    assert (answer["is_paid"], answer["is_final"]) == (False, True)
    assert the_session().status == Status.EXPIRED

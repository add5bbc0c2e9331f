"""A merchant's own tests, as the README shows them: copy this file into your project.

Installing khaime-django gives pytest the ``khaime_emulator`` fixture: an offline Khaime on a
free port, with ``settings.KHAIME`` pointed at it for the test. With ``live_server`` as well,
its signed webhooks go to your ``khaime:webhook`` URL.
"""

import pytest
from django.urls import reverse

from demo_project.shop.models import Product  # your own product model
from khaime_django.models import PaymentSession, Status
from khaime_django.services import start_checkout


@pytest.mark.django_db
def test_buyer_pays_for_the_premium_plan(client, khaime_emulator):
    Product.objects.create(slug="premium-plan", name="Premium Plan", amount=5000, currency="USD")

    # The buyer presses "Buy now" on the product page, goes to Khaime's checkout...
    product_page = client.get(reverse("shop:product", kwargs={"slug": "premium-plan"}))
    checkout = client.post(
        reverse("khaime:checkout"),
        {"token": product_page.context["token"], "email": "buyer@example.com"},
    )
    session = PaymentSession.objects.get()
    assert checkout["Location"] == session.payment_url

    # ...pays there, and comes back to the shop.
    khaime_emulator.complete(session.session_id)
    page = client.get(session.get_absolute_url())

    assert "Payment received" in page.content.decode()
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


def test_webhook_completes_the_payment_when_the_buyer_never_returns(live_server, khaime_emulator, settings):
    # No request to build the return URLs from: name the site.
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": live_server.url}
    session = start_checkout(
        amount=5000,
        currency="USD",
        product_name="Premium Plan",
        customer_email="buyer@example.com",
    )

    # The buyer pays, then closes the tab; Khaime's signed webhook reaches the shop.
    khaime_emulator.complete(session.session_id)
    khaime_emulator.wait_for_deliveries(1)

    session.refresh_from_db()
    assert session.status == Status.COMPLETED

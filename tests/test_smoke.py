import pytest
from django.template import Context, Template
from django.urls import reverse

from khaime_django.models import PaymentSession, Status
from khaime_django.purchases import Purchase

from .conftest import API_BASE


@pytest.mark.django_db
def test_buy_button_to_khaime_redirect_and_verified_success(client, seed_create):
    html = Template('{% load khaime %}{% khaime_buy_button amount=5000 currency="USD" product_name="Premium Plan" %}').render(Context({}))
    assert "Pay $50.00" in html
    token = Purchase(amount=5000, currency="USD", product_name="Premium Plan").sign()
    response = client.post(reverse("khaime:checkout"), {"token": token, "email": "Buyer@Example.com"})
    assert response.status_code == 303
    assert response["Location"] == "https://checkout.stripe.com/c/pay/cs_live_a1b2"
    session = PaymentSession.objects.get()
    assert session.status == Status.PENDING
    assert session.total_amount == 5320
    seed_create.get(f"{API_BASE}/payments/sessions/{session.session_id}",
                    json={"success": True, "data": {"session_id": session.session_id, "status": "completed"}})
    page = client.get(reverse("khaime:success", kwargs={"reference": session.reference}))
    assert "Payment received" in page.content.decode()
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert [c.to_status for c in session.status_changes.all()] == ["pending", "completed"]

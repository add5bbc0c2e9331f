"""The naive checkout view: post to Khaime, save a row, redirect."""

import requests
from django.conf import settings
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect

from .models import NaiveOrder

# The price list a hand-written integration keeps in code (the form sends only a product slug).
PRODUCTS = {"premium": {"amount": 5000, "currency": "USD", "product_name": "Premium Plan"}}


def naive_checkout(request):
    product = PRODUCTS.get(request.POST.get("product", ""))
    email = request.POST.get("email", "")
    if product is None or "@" not in email:
        return HttpResponseBadRequest("bad product or email")
    khaime = settings.KHAIME
    response = requests.post(
        khaime["API_BASE_URL"] + "/payments/sessions",
        json={
            **product,
            "customer": {"email": email},
            "success_url": request.build_absolute_uri("/thanks/"),
            "cancel_url": request.build_absolute_uri("/"),
        },
        headers={"X-API-Key": khaime["API_KEY"]},
        timeout=10,
    )
    response.raise_for_status()
    data = response.json()["data"]
    NaiveOrder.objects.create(
        session_id=data["session_id"],
        payment_url=data["payment_url"],
        amount=product["amount"],
        currency=product["currency"],
        email=email,
    )
    return redirect(data["payment_url"])

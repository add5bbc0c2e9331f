"""The buy button and its signed price: the buyer cannot change, replay after expiry, or forge it."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse

from khaime_django.exceptions import KhaimeRequestInvalid
from khaime_django.models import PaymentSession
from khaime_django.purchases import SALT, InvalidPurchase, Purchase

PREMIUM = Purchase(amount=5000, currency="USD", product_name="Premium Plan")


def signed_long_ago(purchase: Purchase, seconds_ago: int) -> str:
    """A token as if the page had been rendered ``seconds_ago`` seconds ago."""
    then = signing.b62_encode(int(time.time()) - seconds_ago)
    with mock.patch.object(signing.TimestampSigner, "timestamp", return_value=then):
        return purchase.sign()


def tampered(token: str) -> str:
    payload, timestamp, signature = token.rsplit(":", 2)
    return f"{payload}:{timestamp}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}"


# -- the token ------------------------------------------------------------------------------------


def test_token_round_trips_the_price():
    purchase = Purchase(
        amount=1200,
        currency="eur",
        product_id=7,
        subscription_frequency_key="monthly",
        metadata={"plan": "pro", "seats": 3},
    )
    assert Purchase.from_token(purchase.sign()) == purchase
    assert purchase.currency == "EUR"


def test_tampered_token_is_invalid():
    with pytest.raises(InvalidPurchase, match="not valid"):
        Purchase.from_token(tampered(PREMIUM.sign()))


def test_expired_token_is_invalid(settings):
    settings.KHAIME = {**settings.KHAIME, "TOKEN_MAX_AGE": 60}
    with pytest.raises(InvalidPurchase, match="expired"):
        Purchase.from_token(signed_long_ago(PREMIUM, 61))


def test_token_within_max_age_is_valid(settings):
    settings.KHAIME = {**settings.KHAIME, "TOKEN_MAX_AGE": 60}
    assert Purchase.from_token(signed_long_ago(PREMIUM, 30)) == PREMIUM


def test_token_signed_with_another_salt_is_invalid():
    foreign = signing.dumps(
        {"amount": 5000, "currency": "USD", "product_name": "Premium Plan"},
        salt="django.contrib.sessions",
        compress=True,
    )
    with pytest.raises(InvalidPurchase):
        Purchase.from_token(foreign)


def test_token_with_our_salt_but_not_a_price_is_invalid():
    with pytest.raises(InvalidPurchase):
        Purchase.from_token(signing.dumps({"amount": 5000, "evil": True}, salt=SALT))
    with pytest.raises(InvalidPurchase):
        Purchase.from_token(signing.dumps({"amount": -1, "currency": "USD", "product_name": "x"}, salt=SALT))


def test_missing_token_is_invalid():
    with pytest.raises(InvalidPurchase, match="missing"):
        Purchase.from_token("")


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": 50.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"product_name": ""}, "product_name"),
        ({"metadata": {"nested": {"no": 1}}}, "metadata"),
    ],
)
def test_invalid_purchase_is_refused_with_details(fields, bad):
    values = {"amount": 5000, "currency": "USD", "product_name": "Premium Plan", **fields}
    with pytest.raises(KhaimeRequestInvalid) as caught:
        Purchase(**values)
    assert bad in {key.partition(".")[0] for key in caught.value.details}


def test_checkout_kwargs_fit_start_checkout():
    assert Purchase(amount=900, currency="GBP", product_id=3).checkout_kwargs() == {
        "amount": 900,
        "currency": "GBP",
        "product_name": None,
        "product_id": 3,
        "subscription_frequency_key": None,
        "metadata": {},
    }


# -- a bad token at checkout: 400, no Khaime call, no row -----------------------------------------


def post_checkout(client, token, email="buyer@example.com"):
    data = {"email": email} if token is None else {"token": token, "email": email}
    return client.post(reverse("khaime:checkout"), data)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make_token",
    [
        lambda: tampered(PREMIUM.sign()),
        lambda: signed_long_ago(PREMIUM, 25 * 3600),
        lambda: signing.dumps(
            {"amount": 5000, "currency": "USD", "product_name": "Premium Plan"}, salt="someone.else", compress=True
        ),
        lambda: "",
        lambda: None,
        lambda: "garbage",
    ],
    ids=["tampered", "expired", "foreign", "empty", "missing", "garbage"],
)
def test_bad_token_gets_a_400_page_no_khaime_call_and_no_row(client, khaime_api, make_token):
    response = post_checkout(client, make_token())
    assert response.status_code == 400
    assert "This purchase cannot be started" in response.content.decode()
    assert len(khaime_api.calls) == 0
    assert not PaymentSession.objects.exists()


@pytest.mark.django_db
def test_missing_token_page_says_the_button_is_broken_not_the_email(client, khaime_api):
    page = post_checkout(client, None).content.decode()
    assert "purchase token is missing" in page
    assert "valid email" not in page


@pytest.mark.django_db
def test_expired_token_page_tells_the_buyer_to_reload(client, khaime_api):
    page = post_checkout(client, signed_long_ago(PREMIUM, 25 * 3600)).content.decode()
    assert "expired; reload the page" in page


# -- the buy button tag ---------------------------------------------------------------------------


def render(template: str, **context) -> str:
    return Template("{% load khaime %}" + template).render(Context(context))


def test_buy_button_posts_the_signed_price_to_checkout():
    html = render('{% khaime_buy_button amount=5000 currency="USD" product_name="Premium Plan" %}')
    assert f'action="{reverse("khaime:checkout")}"' in html
    assert 'method="post"' in html
    token = html.split('name="token" value="', 1)[1].split('"', 1)[0]
    assert Purchase.from_token(token) == PREMIUM
    assert "Pay $50.00" in html


def test_buy_button_carries_the_csrf_token():
    html = render('{% khaime_buy_button amount=5000 currency="USD" product_name="P" %}', csrf_token="tok123")
    assert 'name="csrfmiddlewaretoken" value="tok123"' in html


def test_buy_button_signs_every_option():
    html = render(
        '{% khaime_buy_button amount=999 currency="EUR" product_id=12 subscription_frequency_key="monthly" '
        'metadata=meta label="Subscribe" %}',
        meta={"plan": "pro"},
    )
    token = html.split('name="token" value="', 1)[1].split('"', 1)[0]
    assert Purchase.from_token(token) == Purchase(
        amount=999, currency="EUR", product_id=12, subscription_frequency_key="monthly", metadata={"plan": "pro"}
    )
    assert "Subscribe" in html
    assert "Pay" not in html


def test_buy_button_asks_a_guest_for_an_email():
    html = render('{% khaime_buy_button amount=5000 currency="USD" product_name="P" %}', user=AnonymousUser())
    assert 'name="email"' in html


@pytest.mark.django_db
def test_buy_button_does_not_ask_a_logged_in_user_with_an_email(django_user_model):
    user = django_user_model.objects.create_user("ada", email="ada@example.com")
    html = render('{% khaime_buy_button amount=5000 currency="USD" product_name="P" %}', user=user)
    assert 'name="email"' not in html


@pytest.mark.django_db
def test_buy_button_asks_a_logged_in_user_without_an_email(django_user_model):
    user = django_user_model.objects.create_user("bob", email="")
    html = render('{% khaime_buy_button amount=5000 currency="USD" product_name="P" %}', user=user)
    assert 'name="email"' in html


@pytest.mark.django_db
def test_buy_button_finds_the_user_on_the_request(django_user_model):
    request = RequestFactory().get("/")
    request.user = django_user_model.objects.create_user("cy", email="cy@example.com")
    html = render('{% khaime_buy_button amount=5000 currency="USD" product_name="P" %}', request=request)
    assert 'name="email"' not in html

"""The hosted checkout page at payment_url, played as the buyer over real HTTP."""

from __future__ import annotations

import pytest

from .conftest import OMIT


@pytest.fixture
def session(api):
    return api.create_session()


def page(http, url: str):
    return http.get(url, timeout=5)


def press(http, session: dict, button: str):
    return http.post(f"{session['payment_url']}/{button}", allow_redirects=False, timeout=5)


def test_page_shows_product_amounts_badge_and_three_buttons(http, session):
    response = page(http, session["payment_url"])

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    html = response.text
    assert "Field guide (PDF)" in html
    assert "50.00 USD" in html and "3.20 USD" in html and "53.20 USD" in html
    assert "Sandbox emulator" in html
    for button in ("pay", "decline", "cancel"):
        assert f'action="/checkout/{session["session_id"]}/{button}"' in html
        assert f'id="{button}"' in html
    assert html.count('<form method="post"') == 3


@pytest.mark.parametrize(
    ("currency", "amount", "shown"),
    [
        ("JPY", 1500, "1,500 JPY"),
        ("KWD", 1500, "1.500 KWD"),
        ("GBP", 123456, "1,234.56 GBP"),
    ],
)
def test_amount_is_shown_in_major_units_of_the_currency(http, api, currency, amount, shown):
    api.emulator.configure(customer_pays_fees=False)
    session = api.create_session(currency=currency, amount=amount)

    assert shown in page(http, session["payment_url"]).text


def test_product_name_is_html_escaped(http, api):
    session = api.create_session(product_name='<script>alert("x")</script>')

    html = page(http, session["payment_url"]).text

    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_unknown_session_page_is_404(http, emulator):
    response = page(http, f"{emulator.base_url}/checkout/sess_unknown")

    assert response.status_code == 404
    assert "no checkout session" in response.text


def test_pay_completes_the_session_and_redirects_to_success_url(http, api, session):
    response = press(http, session, "pay")

    assert response.status_code == 303
    assert response.headers["Location"] == "https://shop.example/return/success?order=ord-1"
    assert api.retrieve(session["session_id"]).json()["data"]["status"] == "completed"


def test_pay_without_success_url_redirects_back_to_the_checkout_page(http, api):
    session = api.create_session(success_url=OMIT)

    response = press(http, session, "pay")

    assert response.status_code == 303
    assert response.headers["Location"] == session["payment_url"]


def test_completed_session_page_says_paid_instead_of_offering_buttons(http, session):
    press(http, session, "pay")

    html = page(http, session["payment_url"]).text

    assert "payment has been completed" in html
    assert 'id="pay"' not in html


def test_decline_fails_the_session_and_the_page_says_declined(http, api, session):
    response = press(http, session, "decline")

    assert response.status_code == 303
    assert response.headers["Location"] == session["payment_url"]
    assert api.retrieve(session["session_id"]).json()["data"]["status"] == "failed"
    html = page(http, response.headers["Location"]).text
    assert "declined" in html
    assert 'id="pay"' not in html


def test_cancel_redirects_to_cancel_url_and_leaves_the_session_payable(http, api, session):
    response = press(http, session, "cancel")

    assert response.status_code == 303
    assert response.headers["Location"] == "https://shop.example/return/cancel?order=ord-1"
    assert api.retrieve(session["session_id"]).json()["data"]["status"] == "pending"
    assert press(http, session, "pay").status_code == 303


@pytest.mark.parametrize("end_state", ["complete", "fail", "expire"])
def test_paying_a_session_that_is_no_longer_pending_is_409_without_webhook(http, api, session, end_state):
    getattr(api.emulator, end_state)(session["session_id"])
    events_before = len(api.emulator.events())

    response = press(http, session, "pay")

    assert response.status_code == 409
    assert "Cannot complete" in response.text
    assert len(api.emulator.events()) == events_before


def test_expired_session_page_says_expired(http, api, session):
    api.emulator.expire(session["session_id"])

    html = page(http, session["payment_url"]).text

    assert "expired" in html
    assert 'id="pay"' not in html


def test_wrong_method_on_a_button_is_405(http, session):
    response = http.get(f"{session['payment_url']}/pay", timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"

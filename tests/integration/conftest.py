"""Fixtures for the integration tests: the demo shop served by ``live_server``, the emulator
(``khaime_emulator``, from khaime-django's pytest plugin) as Khaime, and a buyer who speaks
plain HTTP to both, the way a browser without JavaScript would.
"""

from __future__ import annotations

from urllib.parse import urljoin

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse

from khaime_django.models import PaymentSession

from ..live_server_support import live_shop_fixture, webhook_gate_fixture  # noqa: F401 - fixtures
from .pages import links, parse_forms

TIMEOUT = 10


class Buyer:
    """A person at a browser: keeps cookies, submits the forms a page shows, follows redirects.

    ``page`` is the last response; with ``follow=False`` it is the redirect itself, and
    ``follow()`` goes where it points (the buyer's browser arriving a moment later).
    """

    def __init__(self, shop_url: str, email: str = "buyer@example.com"):
        self.shop_url = shop_url
        self.email = email
        self.http = requests.Session()
        # Loopback only: never through a proxy from the environment.
        self.http.trust_env = False
        self.page: requests.Response | None = None

    def open(self, url: str) -> requests.Response:
        self.page = self.http.get(urljoin(self.shop_url, url), timeout=TIMEOUT)
        return self.page

    def buy(self, product_slug: str = "premium-plan", *, follow: bool = True) -> requests.Response:
        """Open the product page and press its buy button (CSRF and price token from the HTML)."""
        product_page = self.open(reverse("shop:product", kwargs={"slug": product_slug}))
        assert product_page.status_code == 200, product_page.text
        (form,) = [form for form in parse_forms(product_page.text) if "khaime-buy-button" in form.classes]
        return self.submit(form, {"email": self.email}, follow=follow)

    def press(self, button_id: str, *, follow: bool = True) -> requests.Response:
        """Press a button of the current page (the emulator's Pay, Decline or Cancel)."""
        (form,) = [form for form in parse_forms(self.page.text) if button_id in form.button_ids]
        return self.submit(form, follow=follow)

    def click(self, link_text: str) -> requests.Response:
        (href,) = [href for href, text in links(self.page.text) if text == link_text]
        return self.open(urljoin(self.page.url, href))

    def follow(self) -> requests.Response:
        assert self.page.is_redirect, f"{self.page.status_code} is not a redirect"
        return self.open(urljoin(self.page.url, self.page.headers["Location"]))

    def submit(self, form, extra: dict | None = None, *, follow: bool = True) -> requests.Response:
        self.page = self.http.request(
            form.method,
            urljoin(self.page.url, form.action),
            data={**form.fields, **(extra or {})},
            allow_redirects=follow,
            timeout=TIMEOUT,
        )
        return self.page

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def demo_products(transactional_db):
    call_command("loaddata", "demo_products", verbosity=0)


@pytest.fixture
def buyer(live_shop, khaime_emulator, demo_products):
    """A buyer in the demo shop (on ``live_server``), which pays through the emulator."""
    person = Buyer(live_shop.url)
    yield person
    person.close()


def the_session() -> PaymentSession:
    """The one payment session the test made, fresh from the database."""
    return PaymentSession.objects.get()


def changes(session: PaymentSession) -> list[tuple[str, str, str]]:
    """The session's status log as (from, to, source)."""
    return list(session.status_changes.values_list("from_status", "to_status", "source"))

"""Browsers for the tests of who may reuse or cancel a checkout: a browser is a test Client with
its own cookies, and it gets its buyer token the way a real one does, from a page with a buy button."""

from __future__ import annotations

import copy
import re

from django.test import Client
from django.urls import reverse

TOKEN_FIELD = re.compile(r'name="token" value="([^"]+)"')


def product_page_token(browser: Client) -> str:
    """Open the demo shop's Premium Plan page in ``browser`` and return its buy button's signed price."""
    from demo_project.shop.models import Product

    Product.objects.get_or_create(slug="premium-plan", defaults={"name": "Premium Plan", "amount": 5000})
    page = browser.get(reverse("shop:product", kwargs={"slug": "premium-plan"}))
    assert page.status_code == 200
    return TOKEN_FIELD.search(page.content.decode()).group(1)


def new_browser() -> tuple[Client, str]:
    """A browser that has seen the product page, and the token its buy button carries."""
    browser = Client()
    return browser, product_page_token(browser)


def same_browser(browser: Client) -> Client:
    """Another tab of ``browser`` (its cookies), for requests sent from other threads."""
    tab = Client()
    tab.cookies = copy.deepcopy(browser.cookies)
    return tab


def buy(browser: Client, token: str, email: str = "victim@example.com"):
    return browser.post(reverse("khaime:checkout"), {"token": token, "email": email})

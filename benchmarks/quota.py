"""7. Khaime requests per paid purchase: what one sale costs of the hour's quota."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from unittest import mock

import requests
from django.db import connections
from django.test import Client
from django.urls import reverse

from .checkout import PRODUCT, new_email
from .db import empty_tables
from .harness import Context, Section, Table, Target

TITLE = "7. Khaime requests per paid purchase"
TARGET = 1.3
#: The default KHAIME["RETURN_WEBHOOK_WAIT"]: the bench settings turn the wait off for section 2.
RETURN_WEBHOOK_WAIT = 1.5
#: How long after the buyer's return the webhook lands in the "during the wait" scenario.
WEBHOOK_LAG = 0.3


class Meter:
    """Counts every request our app makes to the Partner API (retries included)."""

    def __init__(self, api_base_url: str):
        self.api_base_url = api_base_url
        self.calls = 0
        self._real = requests.Session.request

    def __enter__(self) -> Meter:
        meter = self

        def counted(session, method, url, *args, **kwargs):
            if str(url).startswith(meter.api_base_url):
                meter.calls += 1
            return meter._real(session, method, url, *args, **kwargs)

        self._patch = mock.patch.object(requests.Session, "request", counted)
        self._patch.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._patch.stop()


class Shop:
    """One buyer's purchase through the real views, and the emulator's webhook for it."""

    def __init__(self, emulator, secret: str):
        self.emulator = emulator
        self.secret = secret
        self.checkout_url = reverse("khaime:checkout")
        self.webhook_url = reverse("khaime:webhook")

    def buy_and_pay(self) -> tuple[Client, object]:
        from khaime_django.models import PaymentSession
        from khaime_django.purchases import Purchase

        browser, email = Client(), new_email("quota")
        answer = browser.post(self.checkout_url, {"token": Purchase(**PRODUCT).sign(), "email": email})
        if answer.status_code != 303:
            raise AssertionError(f"checkout answered {answer.status_code}")
        session = PaymentSession.objects.get(customer_email=email)
        self.emulator.complete(session.session_id)  # the buyer pays on the hosted page
        return browser, session

    def deliver_webhook(self, session) -> None:
        from khaime_django.emulator import khaime_sign

        envelope = next(
            e
            for e in reversed(self.emulator.events())
            if e["event_type"] == "payment.succeeded" and e["data"].get("session_id") == session.session_id
        )
        body = json.dumps(envelope, separators=(",", ":")).encode()
        answer = Client().post(
            self.webhook_url,
            data=body,
            content_type="application/json",
            HTTP_X_KHAIME_SIGNATURE=khaime_sign(body, self.secret),
            HTTP_X_KHAIME_EVENT=envelope["event_type"],
            HTTP_X_KHAIME_EVENT_ID=envelope["event_id"],
            HTTP_X_KHAIME_API_VERSION=envelope["api_version"],
        )
        if answer.status_code != 200:
            raise AssertionError(f"webhook answered {answer.status_code}")

    def come_back(self, browser: Client, session) -> None:
        page = browser.get(reverse("khaime:success", kwargs={"reference": session.reference}))
        if page.status_code != 200 or b"Payment received" not in page.content:
            raise AssertionError(f"success page: {page.status_code}, not paid")


def _webhook_first(shop: Shop) -> None:
    browser, session = shop.buy_and_pay()
    shop.deliver_webhook(session)
    shop.come_back(browser, session)


def _webhook_during_wait(shop: Shop) -> None:
    browser, session = shop.buy_and_pay()

    def later():
        try:
            time.sleep(WEBHOOK_LAG)
            shop.deliver_webhook(session)
        finally:
            connections.close_all()

    sender = threading.Thread(target=later)
    sender.start()
    shop.come_back(browser, session)
    sender.join()


def _no_webhook(shop: Shop) -> None:
    browser, session = shop.buy_and_pay()
    shop.come_back(browser, session)


SCENARIOS: list[tuple[str, Callable[[Shop], None], bool]] = [
    ("webhook lands before the buyer returns", _webhook_first, True),
    (f"webhook lands {WEBHOOK_LAG:.1f} s into the return page's wait", _webhook_during_wait, True),
    ("no webhook (the return page asks Khaime)", _no_webhook, False),
]


def run(ctx: Context) -> Section:
    from django.conf import settings

    from khaime_django.conf import khaime_settings
    from khaime_django.models import PaymentSession, Status

    n = max(ctx.sizes.query_samples * 4, 4)
    empty_tables()
    shop = Shop(ctx.emulator, settings.KHAIME["WEBHOOK_SECRETS"][0])
    original = settings.KHAIME
    settings.KHAIME = {**original, "RETURN_WEBHOOK_WAIT": RETURN_WEBHOOK_WAIT, "WEBHOOK_PROCESSING": "inline"}
    table = Table(["scenario", "paid purchases", "Partner API requests", "per paid purchase", "seconds"])
    working = [0, 0]  # requests, purchases, over the scenarios where webhooks work
    try:
        for name, play, webhooks_work in SCENARIOS:
            started = time.perf_counter()
            with Meter(khaime_settings.API_BASE_URL) as meter:
                for _ in range(n):
                    play(shop)
            seconds = time.perf_counter() - started
            table.add(name, n, meter.calls, f"{meter.calls / n:.2f}", f"{seconds:.1f}")
            if webhooks_work:
                working[0] += meter.calls
                working[1] += n
    finally:
        settings.KHAIME = original
    paid = PaymentSession.objects.filter(status=Status.COMPLETED).count()
    if paid != n * len(SCENARIOS):
        raise AssertionError(f"{paid} sessions completed, {n * len(SCENARIOS)} paid")
    empty_tables()
    per_paid = working[0] / working[1]
    section = Section(TITLE, method=METHOD.format(wait=RETURN_WEBHOOK_WAIT), tables=[table])
    section.notes.append(
        "Under load, with Khaime's faults (429s, 5xx, slow and shuffled webhooks) and with buyers who "
        "never pay, see `make soak` (benchmarks/SOAK.md): it splits the same figure into a paid purchase's "
        "own requests and the creates of sessions nobody paid."
    )
    section.targets = [
        Target(
            "Khaime requests per paid purchase, webhooks working",
            f"≤ {TARGET}",
            f"{per_paid:.2f}",
            per_paid <= TARGET,
        )
    ]
    return section


METHOD = """
Each purchase goes through the real views with `django.test.Client`: the buy form (`POST
khaime:checkout`, which creates the Khaime session), the buyer paying on the emulator's hosted
page, the emulator's own signed `payment.succeeded` delivered to `khaime:webhook` (inline mode),
and the buyer's return to the success page, with the default `RETURN_WEBHOOK_WAIT` of {wait} s.
Every request our app sends to the Partner API is counted (retries included, on
`requests.Session.request`); paying on the hosted page is the buyer's, not ours. The third
scenario has no webhook at all: the page waits, then asks Khaime once. The target counts the
first two.
"""

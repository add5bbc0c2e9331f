"""What buyers do. ``SCENARIOS`` is the mix: add a scenario with a function and a line there.

A scenario gets a ``Trip`` (the buyer: a browser, a unique email, a seeded random) and plays one
purchase through real pages: the product page, the buy form (signed token + CSRF), the emulator's
hosted page, and the shop's return pages. It never looks at the database or the emulator's state:
what it saw goes in the trip, for the invariants.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from .browser import Browser, Page

#: The demo's one-time products (demo_project/shop/fixtures).
ONE_TIME_PRODUCTS = ("premium-plan", "tokyo-tea-set")
#: The demo's subscription product (a frequency key: Khaime starts a subscription when it is paid).
SUBSCRIPTION_PRODUCTS = ("monthly-membership",)
#: Seconds between the months of a subscription the soak plays (Khaime's renewals, a cancel).
MONTH_PAUSE = 0.3
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
#: A buyer who meets an error page tries again this many times (a reload, "Try again").
BUY_ATTEMPTS = 4
RETRY_PAUSE = 0.5
_SETTLED_PAGES = ("completed", "failed", "expired", "error", "refunded", "disputed")


@dataclass
class Trip:
    """One buyer's purchase: who, and what they saw."""

    scenario: str
    email: str
    browser: Browser
    shop_url: str
    rng: random.Random
    reload_pause: float
    reloads: int
    deadline: float = float("inf")  # time.monotonic() past which the buyer tries nothing again
    product: str = ""
    hosted_urls: list[str] = field(default_factory=list)  # every distinct hosted page reached
    shown: list[tuple[str, str]] = field(default_factory=list)  # (reference, status) per return page
    notes: list[str] = field(default_factory=list)

    def may_retry(self) -> bool:
        """Whether there is time for another try (the run's time limit bounds retries too)."""
        return time.monotonic() < self.deadline

    def remember(self, page: Page) -> Page:
        if page.status == 200 and "/checkout/" in page.url and page.url not in self.hosted_urls:
            if page.url.startswith(self.browser.emulator_origin):
                self.hosted_urls.append(page.url)
        reference = re.search(r"/sessions/([0-9a-f-]{36})/(?:success|cancel)/", page.url)
        if reference and page.shown_status:
            self.shown.append((reference.group(1), page.shown_status))
        return page


def on_hosted_page(trip: Trip, page: Page) -> bool:
    return page.status == 200 and page.url.startswith(trip.browser.emulator_origin + "/checkout/")


def buy_form(trip: Trip, products: tuple[str, ...] = ONE_TIME_PRODUCTS) -> dict | None:
    """A product page's buy form (the signed token and the CSRF token); reloads a failed page."""
    trip.product = trip.rng.choice(products)
    for _ in range(BUY_ATTEMPTS):
        product = trip.browser.get(f"{trip.shop_url}/products/{trip.product}/", "product page")
        form = product.form_to("/payments/checkout") if product.ok else None
        if form is not None or not trip.may_retry():
            break
        time.sleep(RETRY_PAUSE)
    if form is not None:
        return form
    trip.notes.append(f"no buy form on the product page ({product.status})")
    return None


def open_checkout(trip: Trip, products: tuple[str, ...] = ONE_TIME_PRODUCTS) -> Page | None:
    """Product page, then the buy form; retries as a buyer does. The hosted page, or None."""
    form = buy_form(trip, products)
    if form is None:
        return None
    page = trip.remember(trip.browser.submit(form, "buy", email=trip.email))
    for _ in range(BUY_ATTEMPTS - 1):
        if on_hosted_page(trip, page) or (page.status == 200 and page.shown_status) or not trip.may_retry():
            break
        time.sleep(RETRY_PAUSE)
        retry = page.form_to("/payments/checkout") if page.status in (502, 503) else None
        # The error page's "Try again", else the buyer goes back and submits the form again.
        again = {} if retry else {"email": trip.email}
        page = trip.remember(trip.browser.submit(retry or form, "buy (again)", **again))
    if on_hosted_page(trip, page) or (page.status == 200 and page.shown_status):
        return page
    trip.notes.append(f"gave up at checkout ({page.status})")
    return None


def settle_return_page(trip: Trip, page: Page) -> Page:
    """A return page that says "processing" refreshes itself (<noscript> meta refresh)."""
    for _ in range(trip.reloads):
        if (
            not trip.may_retry()
            or not page.ok
            or page.shown_status in _SETTLED_PAGES
            or page.shown_status == "cancelled"
        ):
            break
        time.sleep(trip.reload_pause)
        page = trip.remember(trip.browser.get(page.url, "return page reload"))
    return page


def press(trip: Trip, hosted: Page, button: str) -> Page | None:
    form = hosted.form_to(f"/{button}")
    if form is None:
        trip.notes.append(f"no {button} button on the hosted page")
        return None
    return trip.remember(trip.browser.submit(form, button))


def pay(trip: Trip) -> None:
    hosted = open_checkout(trip)
    if hosted is not None and on_hosted_page(trip, hosted):
        paid = press(trip, hosted, "pay")
        if paid is not None:
            settle_return_page(trip, paid)


def decline(trip: Trip) -> None:
    hosted = open_checkout(trip)
    if hosted is None or not on_hosted_page(trip, hosted):
        return
    declined = press(trip, hosted, "decline")
    back = [link for link in declined.links() if "/success/" in link] if declined is not None else []
    if back:  # "Return to the shop" on the emulator's declined page
        settle_return_page(trip, trip.remember(trip.browser.get(back[0], "success return")))


def cancel(trip: Trip) -> Page | None:
    hosted = open_checkout(trip)
    if hosted is not None and on_hosted_page(trip, hosted):
        return press(trip, hosted, "cancel")
    return None


def abandon(trip: Trip) -> None:
    open_checkout(trip)  # and closes the tab on Khaime's page


def cancel_then_pay(trip: Trip) -> None:
    cancelled = cancel(trip)
    resume = [link for link in cancelled.links() if "/checkout/" in link] if cancelled is not None else []
    if not resume:
        shown = f"{cancelled.status}, shows {cancelled.shown_status or 'no status'}" if cancelled else "not reached"
        trip.notes.append(f"no 'Return to payment' link after cancelling ({shown})")
        return
    hosted = trip.remember(trip.browser.get(resume[0], "hosted page"))
    if on_hosted_page(trip, hosted):
        paid = press(trip, hosted, "pay")
        if paid is not None:
            settle_return_page(trip, paid)


def double_submit(trip: Trip) -> None:
    """Two submits of the same buy form at once (a double click), then pay where the browser
    landed last. Both must reach the same Khaime session."""
    form = buy_form(trip)
    if form is None:
        return
    twin = Browser(trip.browser.recorder, trip.browser.emulator_origin)
    twin.http.cookies.update(trip.browser.http.cookies)
    pages: list[Page] = []
    threads = [
        threading.Thread(target=lambda b=b: pages.append(b.submit(form, "buy", email=trip.email)))
        for b in (trip.browser, twin)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    twin.close()
    trip.browser.history.extend(twin.history)  # the second click's requests, after the first's
    for page in pages:
        trip.remember(page)
    landed = [page for page in pages if on_hosted_page(trip, page)]
    if not landed:
        trip.notes.append(f"neither click reached Khaime ({', '.join(str(page.status) for page in pages)})")
    else:
        paid = press(trip, landed[-1], "pay")
        if paid is not None:
            settle_return_page(trip, paid)


def khaime(trip: Trip, method: str, path: str) -> dict:
    """Khaime's own side (the emulator's control API): what happens there without the buyer."""
    body = b"{}" if method == "POST" else None
    request = urllib.request.Request(  # noqa: S310 (the emulator's loopback URL)
        f"{trip.browser.emulator_origin}/_emulator{path}",
        data=body,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with _no_proxy.open(request, timeout=30) as response:
        answer = json.loads(response.read())
    return answer.get("data", answer)


def subscribe(trip: Trip) -> None:
    """Pay a monthly subscription, then live through its months at Khaime: one to three renewals,
    and a cancel for half of the buyers. Each is a Khaime action (its webhooks tell the shop)."""
    hosted = open_checkout(trip, SUBSCRIPTION_PRODUCTS)
    if hosted is None or not on_hosted_page(trip, hosted):
        return
    paid = press(trip, hosted, "pay")
    if paid is None:
        return
    settle_return_page(trip, paid)
    session_id = hosted.url.rstrip("/").rsplit("/", 1)[-1]
    subscription_id = khaime(trip, "GET", f"/sessions/{session_id}").get("subscription_id")
    if not subscription_id:
        trip.notes.append("paid, but Khaime started no subscription")
        return
    for _ in range(trip.rng.randint(1, 3)):
        time.sleep(MONTH_PAUSE)
        khaime(trip, "POST", f"/subscriptions/{subscription_id}/renew")
    if trip.rng.random() < 0.5:
        time.sleep(MONTH_PAUSE)
        khaime(trip, "POST", f"/subscriptions/{subscription_id}/cancel")


@dataclass(frozen=True)
class Scenario:
    name: str
    weight: int
    play: Callable[[Trip], object]


SCENARIOS: list[Scenario] = [
    Scenario("pay", 45, pay),
    Scenario("decline", 10, decline),
    Scenario("cancel", 10, cancel),
    Scenario("abandon", 10, abandon),
    Scenario("cancel then pay", 10, cancel_then_pay),
    Scenario("double submit, pay", 15, double_submit),
    Scenario("subscribe, renew, maybe cancel", 10, subscribe),
]


def draw(rng: random.Random, scenarios: list[Scenario] = SCENARIOS) -> Scenario:
    return rng.choices(scenarios, weights=[s.weight for s in scenarios])[0]

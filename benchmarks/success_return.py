"""2. Success return: the buyer is back from Khaime; we ask Khaime, apply, render."""

from __future__ import annotations

import uuid

import requests
from django.test import Client, RequestFactory

from .db import count_queries, empty_tables
from .harness import (
    Context,
    Section,
    Summary,
    Table,
    Target,
    Variant,
    interleave,
    ms,
    ratio_of_medians,
)

TITLE = "2. Success return"


def start_sessions(count: int, tag: str) -> list:
    """Pending sessions made by the real checkout service (not timed)."""
    from django.contrib.auth.models import AnonymousUser

    from khaime_django import services

    request = RequestFactory().post("/payments/checkout/")
    request.user = AnonymousUser()
    return [
        services.start_checkout(
            request=request,
            amount=5000,
            currency="USD",
            product_name="Premium Plan",
            customer_email=f"{tag}{i}@example.com",
        )
        for i in range(count)
    ]


class FloorGet(Variant):
    """A bare pooled GET of the session from the emulator: the call the return page must make."""

    name = "floor"

    def __init__(self, api_base_url: str, api_key: str, session_ids: list[str]):
        self.url = api_base_url + "/payments/sessions/"
        self.http = requests.Session()
        self.http.headers["X-API-Key"] = api_key
        self.session_ids = session_ids

    def prepare(self, r: int) -> str:
        return self.url + self.session_ids[r]

    def run(self, url: str):
        return self.http.get(url, timeout=(2, 5))

    def check(self, response) -> None:
        if response.status_code != 200:
            raise AssertionError(f"floor GET answered {response.status_code}")


class ReturnPage(Variant):
    def __init__(self, name: str, sessions: list, expect: bytes):
        self.name = name
        self.client = Client()
        self.sessions = sessions
        self.expect = expect

    def prepare(self, r: int) -> str:
        return self.sessions[r].get_absolute_url()

    def run(self, url: str):
        return self.client.get(url)

    def check(self, response) -> None:
        if response.status_code != 200 or self.expect not in response.content:
            raise AssertionError(f"{self.name}: {response.status_code}, {self.expect!r} not on the page")


def run(ctx: Context) -> Section:
    from khaime_django.conf import khaime_settings

    sizes = ctx.sizes
    empty_tables()
    rounds, warmup, samples = (
        sizes.return_rounds,
        sizes.warmup_rounds,
        sizes.query_samples,
    )
    needed = warmup + rounds + samples
    tag = uuid.uuid4().hex[:6]
    paid = start_sessions(needed, f"paid-{tag}-")
    waiting = start_sessions(needed, f"wait-{tag}-")
    for session in paid:
        ctx.emulator.complete(session.session_id)

    floor = FloorGet(
        khaime_settings.API_BASE_URL,
        khaime_settings.API_KEY,
        [s.session_id for s in paid],
    )
    paid_page = ReturnPage("ours: paid", paid, b"Payment received")
    waiting_page = ReturnPage("ours: still pending", waiting, b"Processing your payment")
    # Query counts on sessions the timed loop does not use.
    q_paid = [count_queries(lambda s=s: paid_page.check(paid_page.run(s.get_absolute_url()))) for s in paid[-samples:]]
    q_wait = [
        count_queries(lambda s=s: waiting_page.check(waiting_page.run(s.get_absolute_url())))
        for s in waiting[-samples:]
    ]
    times = interleave([floor, paid_page, waiting_page], rounds, warmup=warmup)

    table = Table(
        [
            "variant",
            "n",
            "median ms",
            "p95 ms",
            "SQL round trips (statements + tx)",
            "ratio to floor (95% CI)",
        ]
    )
    queries = {
        "floor": "-",
        paid_page.name: _counts(q_paid),
        waiting_page.name: _counts(q_wait),
    }
    for name, values in times.items():
        s = Summary.of(values)
        ratio = "-" if name == "floor" else str(ratio_of_medians(values, times["floor"], sizes.bootstrap_resamples))
        table.add(name, s.n, ms(s.median), ms(s.p95), queries[name], ratio)
    section = Section(TITLE, method=METHOD, tables=[table])
    section.notes.append(
        "SQL per paid return: "
        + ", ".join(f"`{q}`" for q in q_paid[0].statements)
        + ". Per still-pending return: "
        + ", ".join(f"`{q}`" for q in q_wait[0].statements)
        + "."
    )
    statements = max(c.data_statements for c in q_paid + q_wait)
    round_trips = max(len(c) for c in q_paid + q_wait)
    section.targets = [
        Target(
            "SQL per success return (statements; with BEGIN/COMMIT)",
            "≤ 3",
            f"{statements}; {round_trips}",
            statements <= 3,
        )
    ]
    empty_tables()
    return section


def _counts(samples) -> str:
    return " / ".join(sorted({s.describe() for s in samples}))


METHOD = """
`GET khaime:success` through `django.test.Client`, for sessions made by the real checkout
service beforehand (untimed). *paid*: the emulator already says `completed`, so the page asks
Khaime, moves the session to `completed` (conditional UPDATE + status log) and renders "Payment
received". *still pending*: Khaime says `pending`; the page records the check and renders
"Processing". *floor* is a bare pooled GET of the same session from the emulator. The three are
interleaved round by round; 0 ms emulator latency.
"""

"""1. Checkout: floor vs naive vs ours, against the emulator at 0 ms and 50 ms added latency."""

from __future__ import annotations

import uuid

import requests
from django.test import Client
from django.urls import reverse

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

TITLE = "1. Checkout"
PRODUCT = {"amount": 5000, "currency": "USD", "product_name": "Premium Plan"}


def new_email(who: str) -> str:
    """A buyer never seen before, so checkout never reuses a pending session."""
    return f"{who}-{uuid.uuid4().hex[:12]}@example.com"


class Floor(Variant):
    """A bare pooled ``requests.Session().post()`` of the body khaime_django sends: the least any
    integration can spend."""

    name = "floor"

    def __init__(self, api_base_url: str, api_key: str):
        self.url = api_base_url + "/payments/sessions"
        self.http = requests.Session()
        self.http.headers["X-API-Key"] = api_key

    def prepare(self, r: int) -> dict:
        reference = uuid.uuid4()
        return {
            **PRODUCT,
            "customer": {"email": new_email("floor")},
            "success_url": f"http://testserver/payments/sessions/{reference}/success/",
            "cancel_url": f"http://testserver/payments/sessions/{reference}/cancel/",
            "metadata": {"reference": str(reference)},
        }

    def run(self, body: dict) -> requests.Response:
        return self.http.post(self.url, json=body, timeout=(3.05, 10))

    def check(self, response: requests.Response) -> None:
        if response.status_code != 201:
            raise AssertionError(f"floor: emulator answered {response.status_code}: {response.text[:200]}")


class Naive(Variant):
    """``benchmarks/naive``: requests.post (new connection), a model row, a redirect."""

    name = "naive"

    def __init__(self):
        self.client = Client()
        self.url = reverse("naive_checkout")

    def prepare(self, r: int) -> dict:
        return {"product": "premium", "email": new_email("naive")}

    def run(self, form: dict):
        return self.client.post(self.url, form)

    def check(self, response) -> None:
        if response.status_code != 302:
            raise AssertionError(f"naive checkout answered {response.status_code}")


class Ours(Variant):
    """``POST khaime:checkout`` with a fresh signed token and a new buyer (so nothing is reused)."""

    name = "ours"

    def __init__(self):
        self.client = Client()
        self.url = reverse("khaime:checkout")

    def prepare(self, r: int) -> dict:
        from khaime_django.purchases import Purchase

        return {"token": Purchase(**PRODUCT).sign(), "email": new_email("ours")}

    def run(self, form: dict):
        return self.client.post(self.url, form)

    def check(self, response) -> None:
        if response.status_code != 303:
            raise AssertionError(f"khaime:checkout answered {response.status_code}: {response.content[:300]!r}")


def _describe(samples) -> str:
    return " / ".join(sorted({s.describe() for s in samples}))


def run(ctx: Context) -> Section:
    from khaime_django.conf import khaime_settings

    sizes = ctx.sizes
    empty_tables()
    floor, naive, ours = (
        Floor(khaime_settings.API_BASE_URL, khaime_settings.API_KEY),
        Naive(),
        Ours(),
    )
    section = Section(TITLE, method=METHOD)
    timings = Table(
        [
            "emulator latency",
            "variant",
            "n",
            "median ms",
            "p95 ms",
            "SQL round trips (statements + tx)",
        ]
    )
    ratios = Table(
        [
            "emulator latency",
            "ours/naive (95% CI)",
            "ours/floor (95% CI)",
            "naive/floor",
            "ours - floor, ms",
            "ours - naive, ms",
        ]
    )
    queries = {}
    for variant in (naive, ours):
        samples = [count_queries(lambda v=variant: v.check(v.run(v.prepare(0)))) for _ in range(sizes.query_samples)]
        queries[variant.name] = samples
    query_cell = {
        "floor": "-",
        **{name: _describe(samples) for name, samples in queries.items()},
    }
    results = {}
    for latency, rounds in (
        (0, sizes.checkout_rounds_0ms),
        (50, sizes.checkout_rounds_50ms),
    ):
        ctx.emulator.configure(latency_ms=latency)
        try:
            times = interleave(
                [floor, naive, ours],
                rounds,
                warmup=sizes.warmup_rounds if latency == 0 else 2,
            )
        finally:
            ctx.emulator.configure(latency_ms=0)
        summaries = {name: Summary.of(values) for name, values in times.items()}
        for name in ("floor", "naive", "ours"):
            s = summaries[name]
            timings.add(f"{latency} ms", name, s.n, ms(s.median), ms(s.p95), query_cell[name])
        on = ratio_of_medians(times["ours"], times["naive"], sizes.bootstrap_resamples)
        of = ratio_of_medians(times["ours"], times["floor"], sizes.bootstrap_resamples)
        nf = summaries["naive"].median / summaries["floor"].median
        ratios.add(
            f"{latency} ms",
            on,
            of,
            f"{nf:.2f}",
            ms(summaries["ours"].median - summaries["floor"].median),
            ms(summaries["ours"].median - summaries["naive"].median),
        )
        results[latency] = (on, of)
    section.tables += [timings, ratios]
    ours_queries = queries["ours"][0].statements if queries["ours"] else []
    section.notes.append(
        "SQL per checkout, in order (ours): "
        + (", ".join(f"`{q}`" for q in ours_queries) or "-")
        + ". Naive: "
        + (", ".join(f"`{q}`" for q in queries["naive"][0].statements) if queries["naive"] else "-")
        + "."
    )
    statements = max((s.data_statements for s in queries["ours"]), default=0)
    round_trips = max((len(s) for s in queries["ours"]), default=0)
    section.targets = [
        Target(
            "checkout ours/naive at 0 ms",
            "≤ 1.0",
            f"{results[0][0].value:.2f}",
            results[0][0].value <= 1.0,
        ),
        Target(
            "checkout ours/floor at 0 ms",
            "≤ 2.0",
            f"{results[0][1].value:.2f}",
            results[0][1].value <= 2.0,
        ),
        Target(
            "checkout ours/floor at 50 ms",
            "≤ 1.1",
            f"{results[50][1].value:.2f}",
            results[50][1].value <= 1.1,
        ),
        Target(
            "SQL per checkout (statements; with BEGIN/COMMIT)",
            "≤ 5",
            f"{statements}; {round_trips}",
            statements <= 5,
        ),
    ]
    empty_tables()
    return section


METHOD = """
Each round runs *floor*, *naive* and *ours* once, rotating which goes first; the first rounds are
warm-up and not counted. *floor* is a pooled `requests.Session().post()` of the same
create-session body straight to the emulator. *naive* (`benchmarks/naive/`: `requests.post`, a
new connection each time, then a row in its own small `NaiveOrder` model, then a redirect; its
own model because a hand-written integration stores only what it needs, without PaymentSession's
constraints and indexes, which are part of what ours costs) and *ours*
(`POST khaime:checkout`, fresh signed token) both go through Django's full request cycle with
`django.test.Client` (middleware, URL resolution, view, response), in this process, with a new
buyer email every time so no pending session is reused. The emulator runs in its own process
(Khaime is another machine; in-process its threads would compete for this process's GIL).
Ratios are of medians; the interval is a 95% bootstrap over rounds. SQL queries are counted in
separate, untimed requests with Django's `CaptureQueriesContext`: "7 (3 + 4 tx)" is 7 round
trips as `assertNumQueries` counts them, of which 3 are statements and 4 BEGIN/COMMIT.
"""

"""Where the time goes: cheap timers around the database and Khaime calls (checkout, webhook),
then pyinstrument over many ``POST khaime:checkout``."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Self

from .checkout import Naive, Ours
from .db import empty_tables
from .harness import Context, Section, Table

TITLE = "Where the time goes"

#: (label, does this frame start the part?) — the time of the outermost matching frames is summed.
PARTS: list[tuple[str, Callable | None]] = [
    ("the rest: test client, middleware, URL resolution, response", None),
    (
        "Khaime round trip (KhaimeClient._send_once)",
        lambda f: f.function == "_send_once",
    ),
    (
        "INSERT of the session (_insert_or_reuse)",
        lambda f: f.function == "_insert_or_reuse",
    ),
    ("status change to pending (transition)", lambda f: f.function == "transition"),
    ("buy-button token (Purchase.from_token)", lambda f: f.function == "from_token"),
    ("form validation (CheckoutForm.is_valid)", lambda f: f.function == "is_valid"),
    (
        "request validation (price_errors: Purchase and SessionRequest)",
        lambda f: f.function == "price_errors",
    ),
    ("return URLs (_absolute_url)", lambda f: f.function == "_absolute_url"),
    ("purchase key (_purchase_key)", lambda f: f.function == "_purchase_key"),
    (
        "payment_url check (_check_payment_url)",
        lambda f: f.function == "_check_payment_url",
    ),
    ("get_client", lambda f: f.function == "get_client"),
    (
        "the buyer's Django session, loaded for the browser binding (authenticated_user, browser_token)",
        lambda f: f.function in ("authenticated_user", "browser_token"),
    ),
]


class Stopwatch:
    """Adds up, per request, the time spent in ``requests`` (HTTP to Khaime) and in the database
    driver (every execute, plus commits), with a few ``perf_counter`` calls: cheap enough not to
    change what it measures, unlike a profiler."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.http = self.db = self.commit_time = 0.0
        self.round_trips = 0
        self.commits = 0

    def __enter__(self) -> Self:
        import requests
        from django.db import connection

        watch = self
        self._request = original_request = requests.Session.request

        def request(session, *args, **kwargs):
            started = time.perf_counter()
            try:
                return original_request(session, *args, **kwargs)
            finally:
                watch.http += time.perf_counter() - started

        requests.Session.request = request
        self._wrapper = connection.execute_wrapper(self._execute)
        self._wrapper.__enter__()
        original_commit = connection._commit

        def commit():
            started = time.perf_counter()
            try:
                return original_commit()
            finally:
                elapsed = time.perf_counter() - started
                watch.db += elapsed
                watch.commit_time += elapsed
                watch.round_trips += 1
                watch.commits += 1

        connection._commit = commit  # instance attribute: this connection only, until __exit__
        return self

    def __exit__(self, *exc_info) -> None:
        import requests
        from django.db import connection

        requests.Session.request = self._request
        self._wrapper.__exit__(*exc_info)
        del connection._commit

    def _execute(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.db += time.perf_counter() - started
            self.round_trips += 1


def attribute(contestants: dict[str, Callable[[int], None]], rounds: int) -> dict[str, dict]:
    """Interleaved runs of each contestant under the stopwatch: per-request medians (seconds)
    of the total, HTTP to Khaime, database, the Python rest, and the round-trip count."""
    parts: dict[str, list[tuple[float, float, float, int, int, float]]] = {name: [] for name in contestants}
    with Stopwatch() as watch:
        for r in range(rounds):
            for name, run_one in contestants.items():
                watch.reset()
                started = time.perf_counter()
                run_one(r)
                total = time.perf_counter() - started
                parts[name].append((total, watch.http, watch.db, watch.round_trips, watch.commits, watch.commit_time))

    def median(index: int) -> float:
        return statistics.median(row[index] for row in rows)

    medians = {}
    for name, rows in parts.items():
        medians[name] = {
            "total": median(0),
            "http": median(1),
            "db": median(2),
            "python": statistics.median(t - h - d for t, h, d, *_ in rows),
            "trips": round(median(3)),
            "commits": round(median(4)),
            "commit_time": median(5),
        }
    return medians


def attribution_table(medians: dict[str, dict]) -> Table:
    table = Table(
        [
            "request",
            "total ms",
            "Khaime HTTP ms",
            "database ms",
            "of which COMMIT ms",
            "Python (Django + app) ms",
            "DB round trips",
        ]
    )
    for name, m in medians.items():
        table.add(
            name,
            f"{m['total'] * 1000:.2f}",
            f"{m['http'] * 1000:.2f}" if m["http"] else "-",
            f"{m['db'] * 1000:.2f}",
            f"{m['commit_time'] * 1000:.2f}" if m["commits"] else "-",
            f"{m['python'] * 1000:.2f}",
            m["trips"],
        )
    return table


def checkout_summary(naive: dict, ours: dict) -> str:
    def diff(key: str) -> str:
        return f"{(ours[key] - naive[key]) * 1000:+.2f} ms"

    return (
        f"**Checkout:** ours takes {diff('total')} against naive: {diff('db')} in the database "
        f"({ours['trips']} round trips, {_commits(ours)}, against naive's {naive['trips']}, "
        f"an INSERT that commits by itself: ours commits the row before calling Khaime, then "
        f"the answer and the status log in a second transaction), "
        f"{diff('python')} of Python (the ORM building an INSERT and an UPDATE of a 30-column "
        f"model and the log INSERT, the signed token, validation, the purchase key), and "
        f"{diff('http')} in the Khaime call (ours reuses a kept-alive connection, naive opens "
        f"one per checkout; on loopback that is a TCP handshake, against Khaime's HTTPS it is "
        f"also a TLS handshake per checkout)."
    )


def _commits(m: dict) -> str:
    return f"{m['commits']} of them COMMIT" if m["commits"] != 1 else "1 of them COMMIT"


def return_summary(m: dict) -> str:
    return (
        f"**Success return (paid):** {m['total'] * 1000:.2f} ms: {m['http'] * 1000:.2f} ms asking "
        f"Khaime, {m['db'] * 1000:.2f} ms in {m['trips']} database round trips "
        f"({_commits(m)}), "
        f"{m['python'] * 1000:.2f} ms of Python (request cycle, the ORM, rendering the page with "
        f"its money formatting)."
    )


def webhook_summary(m: dict) -> str:
    return (
        f"**Webhook:** a new `payment.succeeded` costs {m['total'] * 1000:.2f} ms: "
        f"{m['db'] * 1000:.2f} ms in {m['trips']} database round trips ({_commits(m)}) and "
        f"{m['python'] * 1000:.2f} ms of "
        f"Python (request cycle, signature and parsing, the ORM): one process at this rate "
        f"applies about {1 / m['total']:.0f} events/s."
    )


def run(ctx: Context) -> Section:
    count = ctx.sizes.profile_checkouts
    section = Section(TITLE, method=METHOD.format(count=count))
    empty_tables()
    naive, ours = Naive(), Ours()
    for r in range(5):  # warm: templates compiled, connections open
        for contestant in (naive, ours):
            contestant.check(contestant.run(contestant.prepare(r)))

    def checkout(contestant):
        # Signed before the clock starts.
        forms = [contestant.prepare(r) for r in range(count)]
        return lambda r: contestant.check(contestant.run(forms[r]))

    medians = attribute({"checkout: naive": checkout(naive), "checkout: ours": checkout(ours)}, count)
    summaries = [checkout_summary(medians["checkout: naive"], medians["checkout: ours"])]
    returns = _return_attribution(ctx, count)
    medians.update(returns)
    summaries.append(return_summary(returns["success return: paid"]))
    webhook = _webhook_attribution(ctx, count)
    if webhook is not None:
        medians.update(webhook)
        summaries.append(webhook_summary(webhook["webhook: new payment.succeeded"]))
    section.notes.append(attribution_table(medians).render())  # notes keep their order
    section.notes.append(STOPWATCH_NOTE)
    section.notes += summaries
    _profile(section, ours, count)
    empty_tables()
    return section


def _return_attribution(ctx: Context, count: int) -> dict[str, dict]:
    from django.test import Client

    from .success_return import start_sessions

    empty_tables()
    paid = start_sessions(count + 5, "where-paid-")
    for session in paid:
        ctx.emulator.complete(session.session_id)
    client = Client()
    urls = [session.get_absolute_url() for session in paid]
    for url in urls[:5]:
        client.get(url)

    def one(r):
        response = client.get(urls[5 + r])
        if b"Payment received" not in response.content:
            raise AssertionError("the paid return page did not say so")

    return attribute({"success return: paid": one}, count)


def _webhook_attribution(ctx: Context, count: int) -> dict[str, dict] | None:
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    from . import webhook

    try:
        url = reverse("khaime:webhook")
    except NoReverseMatch:
        return None
    empty_tables()
    _, deliveries = webhook._prepare(count + 10)
    client = Client()
    fresh = [d for i, d in enumerate(deliveries) if d.event_id not in {x.event_id for x in deliveries[:i]}]
    for delivery in fresh[:10]:
        webhook._post(client, url, delivery)
    events = iter(fresh[10:])
    return attribute(
        {"webhook: new payment.succeeded": lambda r: webhook._post(client, url, next(events))},
        min(count, len(fresh) - 10),
    )


def _profile(section: Section, ours: Ours, count: int) -> None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        section.notes.append("pyinstrument is not installed (`pip install pyinstrument`): no profile.")
        return
    forms = [ours.prepare(r) for r in range(count)]
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for form in forms:
        ours.run(form)
    session = profiler.stop()
    root = session.root_frame()
    total = root.time if root is not None else 0.0
    sums = {label: 0.0 for label, _ in PARTS}
    if root is not None:
        _sum_parts(root, sums)
    sums[PARTS[0][0]] = max(0.0, total - sum(sums.values()))
    table = Table(["part of one checkout (pyinstrument)", "ms per checkout", "share"])
    for label, seconds in sorted(sums.items(), key=lambda item: -item[1]):
        table.add(
            label,
            f"{seconds / count * 1000:.2f}",
            f"{seconds / total:.0%}" if total else "-",
        )
    table.add("**total, under the profiler**", f"{total / count * 1000:.2f}", "100%")
    tree = profiler.output_text(
        unicode=False,
        color=False,
        show_all=False,
        processor_options={"filter_threshold": 0.02},
    )
    section.notes.append(PROFILE_NOTE.format(count=count))
    section.notes.append(table.render())
    section.notes.append(
        "<details><summary>pyinstrument tree (frames ≥ 2% of the total)</summary>\n\n```\n"
        + _trim(tree)
        + "\n```\n</details>"
    )


def _sum_parts(frame, sums: dict[str, float]) -> None:
    for label, matches in PARTS[1:]:
        if matches(frame):
            sums[label] += frame.time
            return  # outermost match only: nested parts are counted in their parent
    for child in frame.children:
        _sum_parts(child, sums)


def _trim(text: str, limit: int = 80) -> str:
    banner = (
        "Recorded:",
        "Duration:",
        "/_//_/",
        "/   _/",
        "Profile at",
        "To view",
        "Program:",
    )
    body = [line for line in text.splitlines() if line.strip() and not any(b in line for b in banner)]
    return "\n".join(body[:limit])


METHOD = """
First without a profiler: {count} naive and {count} ours checkouts (interleaved, 0 ms emulator
latency), {count} paid success returns and {count} new `payment.succeeded` webhook deliveries, each timed whole and with
timers around `requests.Session.request` (HTTP to Khaime) and around the database driver (every
execute through `connection.execute_wrapper`, and every commit). Medians per request.
"""

STOPWATCH_NOTE = """
"database ms" includes the driver (parameter adaptation, the round trip, fetching rows), not the
ORM building the SQL, which counts as Python. "DB round trips" counts executes and commits
(psycopg sends BEGIN with the first statement of a transaction). COMMIT waits for the WAL to
reach the disk; an autocommitted statement (naive's INSERT) does the same inside its execute.
"""

PROFILE_NOTE = """
Then pyinstrument over {count} more `POST khaime:checkout` (sampling every 0.5 ms, wall-clock:
waiting on a socket counts). The profiler slows Python-heavy code (the ORM) more than waiting,
so trust the stopwatch table for the split between Python and waiting, and this one for which
part of our code the Python time is in. "the rest" is what no listed part contains.
"""

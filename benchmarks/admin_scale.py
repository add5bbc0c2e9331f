"""4. Admin at scale: the PaymentSession changelist at 1,000 and 100,000 sessions."""

from __future__ import annotations

import time
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from .db import (
    QueryCounter,
    empty_tables,
    insert_sessions,
    session_rows,
    vacuum_analyze,
)
from .harness import Context, Section, Summary, Table, Target, ms, skipped

TITLE = "4. Admin changelist at scale"
TARGET_MS = 200
STATUS_MIX = ("completed",) * 12 + ("expired",) * 4 + ("pending", "pending", "cancelled", "failed")
EMAILS = 5000  # distinct buyers: one session each at 1,000 rows, 20 each at 100,000


def run(ctx: Context) -> Section:
    if not ctx.postgres:
        return skipped(
            TITLE,
            f"needs PostgreSQL ({ctx.postgres_problem}).",
            [
                ("admin changelist median at the largest size", f"≤ {TARGET_MS} ms"),
                ("admin query count independent of table size", "same"),
            ],
        )
    from django.contrib.auth import get_user_model

    from khaime_django.models import PaymentSession

    sizes = ctx.sizes
    empty_tables()
    admin = get_user_model().objects.create_superuser("bench-admin", "admin@example.com", "x")
    client = Client()
    client.force_login(admin)
    url = "/admin/khaime_django/paymentsession/"
    now = timezone.now()

    table = Table(["sessions", "view", "median ms", "p95 ms", "SQL queries", "SQL ms (sum)"])
    loads = []
    medians: dict[tuple[int, str], float] = {}
    counts: dict[tuple[int, str], int] = {}
    largest: dict[str, QueryCounter] = {}
    inserted = 0
    for size in sizes.admin_sizes:
        started = time.perf_counter()
        inserted += insert_sessions(
            session_rows(
                size - inserted,
                start=inserted,
                now=now,
                status=lambda i: STATUS_MIX[i % len(STATUS_MIX)],
                age=lambda i: timedelta(minutes=5 * i),  # ~one year for 100,000
                email=lambda i: f"buyer{i % EMAILS}@example.com",
            )
        )
        vacuum_analyze(PaymentSession)
        loads.append(f"{size:,} rows in {time.perf_counter() - started:.1f} s")
        probe = PaymentSession.objects.order_by("pk")[size // 2]
        views = {
            "first page": {},
            "status filter (completed)": {"status__exact": "completed"},
            "search by session id": {"q": probe.session_id},
            "search by email": {"q": probe.customer_email},
        }
        client.get(url)  # warm: templates, the admin's own caches
        times: dict[str, list[float]] = {name: [] for name in views}
        for _ in range(sizes.admin_repeats):  # interleaved: view 1, 2, 3, 4, 1, 2, ...
            for name, params in views.items():
                t0 = time.perf_counter()
                response = client.get(url, params)
                times[name].append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise AssertionError(f"admin {name}: {response.status_code}")
        for name, params in views.items():
            with QueryCounter(_connection()) as counter:
                client.get(url, params)
            s = Summary.of(times[name])
            medians[(size, name)], counts[(size, name)] = s.median, len(counter)
            table.add(
                f"{size:,}",
                name,
                ms(s.median),
                ms(s.p95),
                len(counter),
                f"{counter.total_seconds * 1000:.0f}",
            )
            if size == sizes.admin_sizes[-1]:
                largest[name] = counter
    biggest, smallest = sizes.admin_sizes[-1], sizes.admin_sizes[0]
    section = Section(
        TITLE,
        method=METHOD.format(
            sizes=" and ".join(f"{s:,}" for s in sizes.admin_sizes),
            loads="; ".join(loads),
            repeats=sizes.admin_repeats,
        ),
        tables=[table],
    )
    section.notes.append(_summary(largest["first page"], medians[(biggest, "first page")], biggest))
    section.notes.append(_sql_note(largest, biggest))
    worst = max(medians[(biggest, name)] for name in views)
    same = all(counts[(biggest, name)] == counts[(smallest, name)] for name in views)
    section.targets = [
        Target(
            f"admin changelist, slowest view's median at {biggest:,}",
            f"≤ {TARGET_MS} ms",
            f"{worst * 1000:.0f} ms",
            worst * 1000 <= TARGET_MS,
        ),
        Target(
            f"admin query count at {biggest:,} vs {smallest:,}",
            "same",
            "same" if same else ", ".join(f"{n}: {counts[(smallest, n)]}→{counts[(biggest, n)]}" for n in views),
            same,
        ),
    ]
    empty_tables()
    return section


def _summary(counter: QueryCounter, median: float, size: int) -> str:
    """How much of the first page is SQL, and how much of that is whole-table DISTINCTs."""
    distinct = [q for q in counter.queries if "SELECT DISTINCT" in q["sql"].upper()]
    distinct_ms = sum(float(q["time"]) for q in distinct) * 1000
    return (
        f"**At {size:,} sessions** the first page takes {median * 1000:.0f} ms (median), of which "
        f"{counter.total_seconds * 1000:.0f} ms is SQL; {len(distinct)} `SELECT DISTINCT` "
        f"queries over the whole table (the choices of value-based list filters and the date "
        f"hierarchy) take {distinct_ms:.0f} ms of it. They do not add queries as the table grows, "
        f"but each reads every row."
    )


def _sql_note(counters: dict[str, QueryCounter], size: int) -> str:
    """Every query of the first page, then the costly ones of the other views."""
    lines = [f"SQL at {size:,} sessions (Django's debug timings, 1 ms resolution):", ""]
    for name, counter in counters.items():
        shown = [q for q in counter.queries if name == "first page" or float(q["time"]) >= 0.002]
        if not shown:
            continue
        lines.append(f"- {name}:")
        lines += [f"  - {float(q['time']) * 1000:.0f} ms `{_short(q['sql'])}`" for q in shown]
    return "\n".join(lines)


def _connection():
    from django.db import connection

    return connection


def _short(sql: str, limit: int = 400) -> str:
    sql = " ".join(sql.split()).replace("`", "'")
    return sql if len(sql) <= limit else sql[:limit] + " …"


METHOD = """
A superuser (`force_login`) loads `/admin/khaime_django/paymentsession/` through
`django.test.Client` at {sizes} sessions (a year of checkouts: mostly completed, some expired,
pending, cancelled, failed; 5,000 distinct buyers), {repeats} times per view, the four views
interleaved. Rows are loaded with PostgreSQL `COPY` (PaymentSession's own columns and defaults),
then `VACUUM ANALYZE` ({loads}). Query counts and SQL time come from one extra request
per view under `CaptureQueriesContext` (they include the login session and user look-ups and any
BEGIN/COMMIT).
"""

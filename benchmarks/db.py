"""The bench database: find it, empty it, fill it fast, count queries."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from django.db import connection
from django.test.utils import CaptureQueriesContext

COPY_BATCH = 20_000
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def postgres_problem(url: str) -> str:
    """ "" when PostgreSQL at ``url`` answers (creating the database if it is missing), else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return ""
    except psycopg.OperationalError as error:
        if f'database "{name}" does not exist' not in str(error):
            return str(error).strip().splitlines()[0]
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(maintenance, connect_timeout=3, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return ""
    except psycopg.Error as error:
        return f"database {name!r} is missing and could not be created: {str(error).strip().splitlines()[0]}"


def safe_label(url: str) -> str:
    """The URL without a password, for the report."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return url
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def server_version() -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0]}"
    if connection.vendor == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    return connection.vendor


def empty_tables() -> None:
    """Delete every row the benchmarks write (sessions, their log and events, the ledger, naive
    orders, admin users and their login sessions)."""
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.models import Session

    from khaime_django import models as khaime

    models = [
        khaime.WebhookEvent,
        khaime.RefundStatusChange,
        khaime.Refund,
        khaime.Payment,
        khaime.StatusChange,
        khaime.PaymentSession,
        khaime.SubscriptionStatusChange,
        khaime.Subscription,
        Session,
    ]
    if apps.is_installed("benchmarks.naive"):  # not under the test suite's settings
        models.append(apps.get_model("bench_naive", "NaiveOrder"))
    # TRUNCATE is fastest, but not inside a transaction that has deferred constraint checks
    # pending (the test suite's): there, delete.
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models)
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    else:
        for model in models:
            model.objects.all().delete()
    get_user_model().objects.filter(username__startswith="bench-").delete()


def vacuum_analyze(*models) -> None:
    """Fresh planner statistics after a bulk load, and no autovacuum starting mid-measurement."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def insert_sessions(rows: Iterable[dict]) -> int:
    """Insert PaymentSession rows fast: ``COPY`` on PostgreSQL, ``bulk_create`` elsewhere.

    Each row is a dict of field values; every other field gets its model default, so a column
    added to the model later does not break the loader.
    """
    from khaime_django.models import PaymentSession

    if connection.vendor != "postgresql":
        objects = [PaymentSession(**row) for row in rows]
        PaymentSession.objects.bulk_create(objects, batch_size=2000)
        return len(objects)

    fields = [f for f in PaymentSession._meta.concrete_fields if not f.primary_key]
    defaults = {f.attname: f.get_default() for f in fields}
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(PaymentSession._meta.db_table)
    count = 0
    connection.ensure_connection()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor, for COPY
        batch: list[tuple] = []

        def flush() -> None:
            with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for values in batch:
                    copy.write_row(values)
            batch.clear()

        for row in rows:
            values = {
                **defaults,
                **{_attname(PaymentSession, k): v for k, v in row.items()},
            }
            batch.append(tuple(_copy_value(f, values[f.attname]) for f in fields))
            count += 1
            if len(batch) >= COPY_BATCH:
                flush()
        if batch:
            flush()
    return count


def _attname(model, name: str) -> str:
    return model._meta.get_field(name).attname


def _copy_value(field, value):
    import json

    if field.get_internal_type() == "JSONField":
        return None if value is None else json.dumps(value)
    return value


def session_rows(
    count: int,
    *,
    status: str | Callable[[int], str] = "pending",
    now: datetime,
    age: Callable[[int], timedelta] = lambda i: timedelta(minutes=i % 1000),
    expires_in: Callable[[int], timedelta] = lambda i: timedelta(minutes=30),
    email: Callable[[int], str] = lambda i: f"buyer{i}@example.com",
    start: int = 0,
) -> Iterator[dict]:
    """Rows that look like checkouts made through khaime_django (amounts, fees, URLs, keys)."""
    currencies = ("USD", "USD", "USD", "EUR", "JPY")
    for i in range(start, start + count):
        reference = uuid.uuid4()
        created = now - age(i)
        currency = currencies[i % len(currencies)]
        amount = 5000 + (i % 7) * 1000
        fee = amount * 6 // 100 + 20
        row_status = status(i) if callable(status) else status
        yield {
            "reference": reference,
            "session_id": f"sess_{uuid.uuid4()}",
            "stripe_session_id": f"cs_test_{uuid.uuid4().hex}",
            "payment_url": f"http://127.0.0.1:8765/checkout/sess_{reference}",
            "status": row_status,
            "mode": "sandbox",
            "payment_type": "subscription" if i % 10 == 0 else "one_time",
            "amount": amount,
            "total_amount": amount + fee,
            "currency": currency,
            "product_name": f"Product {i % 50}",
            "customer_email": email(i),
            "customer": {"email": email(i)},
            "metadata": {},
            "fee_details": {
                "base_product_price": amount,
                "transaction_fee": fee,
                "total_amount": amount + fee,
                "customer_pays_fees": True,
            },
            "success_url": f"https://shop.example/payments/sessions/{reference}/success/",
            "cancel_url": f"https://shop.example/payments/sessions/{reference}/cancel/",
            "expires_at": created + expires_in(i),
            "completed_at": created + timedelta(minutes=3)
            if row_status in ("completed", "refunded", "disputed")
            else None,
            "purchase_key": uuid.uuid4().hex + uuid.uuid4().hex,
            "created_at": created,
            "updated_at": created,
        }


class QueryCounter(CaptureQueriesContext):
    """Django's own query capture, kept: the next request clears ``connection.queries_log``, so
    the captured queries are copied on exit. ``statements`` lists each query's first words."""

    def __exit__(self, exc_type, exc_value, traceback):
        super().__exit__(exc_type, exc_value, traceback)
        self.queries = list(self.captured_queries)

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def statements(self) -> list[str]:
        return [_shape(q["sql"]) for q in self.queries]

    @property
    def data_statements(self) -> int:
        """Queries other than BEGIN/COMMIT/SAVEPOINT/RELEASE/ROLLBACK (which Django 4.2+ also logs
        and counts in assertNumQueries: each is a round trip too)."""
        return sum(1 for q in self.queries if not q["sql"].lstrip().upper().startswith(TRANSACTION_CONTROL))

    def describe(self) -> str:
        """``"7 (3 + 4 tx)"``: all round trips, then statements + transaction control."""
        return f"{len(self)} ({self.data_statements} + {len(self) - self.data_statements} tx)"

    @property
    def total_seconds(self) -> float:
        return sum(float(q["time"]) for q in self.queries)

    def slowest(self) -> tuple[float, str]:
        if not self.queries:
            return 0.0, ""
        query = max(self.queries, key=lambda q: float(q["time"]))
        return float(query["time"]), query["sql"]


def _shape(sql: str) -> str:
    """``SELECT khaime_django_paymentsession``, ``UPDATE ...``, ``BEGIN``: verb and table."""
    verb = sql.split(None, 1)[0].upper() if sql.strip() else ""
    pattern = {
        "SELECT": r"\bFROM\s+\"?(\w+)",
        "DELETE": r"\bFROM\s+\"?(\w+)",
        "UPDATE": r"^\s*UPDATE\s+\"?(\w+)",
        "INSERT": r"\bINTO\s+\"?(\w+)",
    }.get(verb)
    match = re.search(pattern, sql, re.IGNORECASE) if pattern else None
    shape = f"{verb} {match.group(1)}" if match else verb
    if verb == "SELECT" and sql.rstrip().upper().endswith("FOR UPDATE"):
        shape += " FOR UPDATE"
    return shape


def count_queries(fn: Callable[[], object]) -> QueryCounter:
    with QueryCounter(connection) as counter:
        fn()
    return counter

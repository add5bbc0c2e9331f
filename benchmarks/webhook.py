"""3. Webhook apply on PostgreSQL: signed payment.succeeded events, sequential and concurrent.

The worker processes of the concurrent run are this module too (``_worker``).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from dataclasses import dataclass
from datetime import timedelta

from .harness import Context, Section, Summary, Table, Target, ms, skipped

TITLE = "3. Webhook apply"
TARGET_PER_S = 400
DUPLICATE_SHARE = 0.10
WEBHOOK_PATH = "/payments/webhook/"


@dataclass(frozen=True)
class Delivery:
    body: bytes
    signature: str
    event_id: str
    event_type: str
    api_version: str


def run(ctx: Context) -> Section:
    targets = [("webhook apply, sequential", f"≥ {TARGET_PER_S} events/s")]
    if not ctx.postgres:
        return skipped(TITLE, f"needs PostgreSQL ({ctx.postgres_problem}).", targets)
    from django.urls import NoReverseMatch, reverse

    try:
        url = reverse("khaime:webhook")
    except NoReverseMatch:
        return skipped(TITLE, "`khaime:webhook` is not in this tree yet.", targets)

    from .db import empty_tables

    floor_url = reverse("noop_webhook")
    n, clients = ctx.sizes.webhook_events, ctx.sizes.webhook_clients
    table = Table(
        [
            "run",
            "deliveries (events + duplicates)",
            "s",
            "deliveries/s",
            "p50 ms",
            "p99 ms",
            "answers",
            "every session completed exactly once",
        ]
    )
    sql_note = _sql_per_delivery(url)
    rates = {}
    for label, concurrency in (
        ("sequential", 1),
        (f"{clients} concurrent clients", clients),
    ):
        empty_tables()
        session_pks, deliveries = _prepare(n)
        if concurrency == 1:
            latencies, answers, wall, floor = _sequential(url, deliveries, floor_url)
            f = Summary.of(floor)
            table.add(
                "floor: the same POSTs to a no-op view",
                f"{len(floor):,}",
                f"{sum(floor):.2f}",
                f"{len(floor) / sum(floor):.0f}",
                ms(f.median),
                ms(f.p99),
                "200 noop",
                "-",
            )
        else:
            latencies, answers, wall = _concurrent(ctx, url, deliveries, concurrency)
        verdict = _verify(session_pks, n)
        s = Summary.of(latencies)
        rates[label] = len(deliveries) / wall
        table.add(
            label,
            f"{n:,} + {len(deliveries) - n:,}",
            f"{wall:.2f}",
            f"{rates[label]:.0f}",
            ms(s.median),
            ms(s.p99),
            ", ".join(f"{k} {v:,}" for k, v in sorted(answers.items())),
            verdict,
        )
    empty_tables()
    section = Section(TITLE, method=METHOD.format(n=n, clients=clients), tables=[table])
    section.notes.append(sql_note)
    seq = rates["sequential"]
    section.targets = [Target(targets[0][0], targets[0][1], f"{seq:.0f} events/s", seq >= TARGET_PER_S)]
    return section


def _prepare(n: int) -> tuple[list[int], list[Delivery]]:
    """``n`` pending sessions and, for each, the signed ``payment.succeeded`` the emulator would
    send for it (its own payload builder and signature); then 10% duplicates: half delivered
    right behind the original (with concurrent clients, at the same moment), half later."""
    from django.conf import settings
    from django.utils import timezone

    from khaime_django.emulator import EmulatorConfig, khaime_sign
    from khaime_django.emulator.events import API_VERSION, make_event
    from khaime_django.emulator.records import Payment
    from khaime_django.emulator.sessions import Session, SessionRequest
    from khaime_django.models import PaymentSession

    from .db import insert_sessions, session_rows

    secret = settings.KHAIME["WEBHOOK_SECRETS"][0]
    now = timezone.now()
    config = EmulatorConfig()
    rows, deliveries = [], []
    for row in session_rows(n, now=now, age=lambda i: timedelta(minutes=2)):
        request = SessionRequest(
            amount=row["amount"],
            currency=row["currency"],
            product_id=None,
            product_name=row["product_name"],
            customer={"email": row["customer_email"]},
            metadata={"reference": str(row["reference"])},
            success_url=row["success_url"],
            cancel_url=row["cancel_url"],
            subscription_frequency_key=None,
        )
        remote = Session.create(
            request,
            mode="sandbox",
            base_url="http://127.0.0.1:8765",
            config=config,
            now=now,
        )
        remote.complete(now)
        payment = Payment(str(remote.transaction_id), remote, now)
        event = make_event("payment.succeeded", payment.event_data(), is_live=False, occurred_at=now)
        row.update(
            session_id=remote.session_id,
            total_amount=remote.total_amount,
            payment_type="one_time",
            fee_details=remote.fee_details(),
        )
        rows.append(row)
        deliveries.append(
            Delivery(
                event.body,
                khaime_sign(event.body, secret),
                event.event_id,
                event.event_type,
                API_VERSION,
            )
        )
    insert_sessions(rows)
    pks = list(PaymentSession.objects.filter(reference__in=[r["reference"] for r in rows]).values_list("pk", flat=True))

    rng = random.Random(3)
    stream = list(deliveries)
    rng.shuffle(stream)
    duplicates = rng.sample(stream, int(n * DUPLICATE_SHARE))
    for k, original in enumerate(duplicates):
        at = stream.index(original)
        stream.insert(at + 1 if k % 2 == 0 else rng.randrange(at + 1, len(stream) + 1), original)
    return pks, stream


def _post(client, url: str, delivery: Delivery):
    return client.post(
        url,
        data=delivery.body,
        content_type="application/json",
        HTTP_X_KHAIME_SIGNATURE=delivery.signature,
        HTTP_X_KHAIME_EVENT=delivery.event_type,
        HTTP_X_KHAIME_EVENT_ID=delivery.event_id,
        HTTP_X_KHAIME_API_VERSION=delivery.api_version,
    )


def _answer(response) -> str:
    try:
        outcome = response.json().get("outcome", "?")
    except ValueError:
        outcome = "?"
    return f"{response.status_code} {outcome}"


def _sequential(url: str, deliveries: list[Delivery], floor_url: str):
    """One client; each delivery first to the no-op view (the floor), then to the webhook.
    Throughput is counted from the webhook requests' own time."""
    from django.test import Client

    client = Client()
    latencies, floor, answers = [], [], {}
    for delivery in deliveries:
        t0 = time.perf_counter()
        _post(client, floor_url, delivery)
        t1 = time.perf_counter()
        response = _post(client, url, delivery)
        latencies.append(time.perf_counter() - t1)
        floor.append(t1 - t0)
        answer = _answer(response)
        answers[answer] = answers.get(answer, 0) + 1
    return latencies, answers, sum(latencies), floor


def _concurrent(ctx: Context, url: str, deliveries: list[Delivery], clients: int):
    """``clients`` processes (like a WSGI server's worker processes), each with its own Django
    and database connection, delivering every ``clients``-th event: a duplicate queued right
    behind its original goes to another worker at about the same moment."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients + 1)
    results = context.Queue()
    shares = [deliveries[k::clients] for k in range(clients)]
    workers = [
        context.Process(target=_worker, args=(ctx.env, url, share, barrier, results), daemon=True) for share in shares
    ]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=120)  # every worker has set up Django and connected
    outputs = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(30)
    errors = [o["error"] for o in outputs if o.get("error")]
    if errors:
        raise RuntimeError("webhook worker failed:\n" + errors[0])
    latencies = [value for o in outputs for value in o["latencies"]]
    answers: dict[str, int] = {}
    for o in outputs:
        for answer, count in o["answers"].items():
            answers[answer] = answers.get(answer, 0) + count
    wall = max(o["ended"] for o in outputs) - min(o["started"] for o in outputs)
    return latencies, answers, wall


def _worker(env: dict, url: str, share: list[Delivery], barrier, results) -> None:
    os.environ.update(env)
    try:
        import django

        django.setup()
        from django.db import connection
        from django.test import Client

        connection.ensure_connection()
        client = Client()
        barrier.wait(timeout=120)
        latencies, answers = [], {}
        started = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
        for delivery in share:
            t0 = time.perf_counter()
            response = _post(client, url, delivery)
            latencies.append(time.perf_counter() - t0)
            answer = _answer(response)
            answers[answer] = answers.get(answer, 0) + 1
        results.put(
            {
                "latencies": latencies,
                "answers": answers,
                "started": started,
                "ended": time.monotonic(),
            }
        )
    except Exception:
        import traceback

        results.put({"error": traceback.format_exc()})


def _sql_per_delivery(url: str) -> str:
    """The SQL of one new event and of its duplicate (untimed, on a session of their own)."""
    from django.test import Client

    from .db import count_queries, empty_tables

    empty_tables()
    _, deliveries = _prepare(1)
    client = Client()
    first, again = (count_queries(lambda: _post(client, url, deliveries[0])) for _ in range(2))
    return (
        f"SQL per new event: {first.describe()} — "
        + ", ".join(f"`{q}`" for q in first.statements)
        + f". Per duplicate: {again.describe()} — "
        + ", ".join(f"`{q}`" for q in again.statements)
        + "."
    )


def _verify(session_pks: list[int], n: int) -> str:
    """ "yes", or what is wrong: each session completed, one `completed` log row each, one inbox row per event."""
    from django.db.models import Count

    from khaime_django.models import PaymentSession, StatusChange, WebhookEvent

    problems = []
    completed = PaymentSession.objects.filter(pk__in=session_pks, status="completed").count()
    if completed != n:
        problems.append(f"{n - completed} not completed")
    per_session = (
        StatusChange.objects.filter(session_id__in=session_pks, to_status="completed")
        .values("session_id")
        .annotate(c=Count("id"))
    )
    twice = sum(1 for row in per_session if row["c"] > 1)
    logged = sum(row["c"] for row in per_session)
    if twice:
        problems.append(f"{twice} completed more than once")
    if logged != n:
        problems.append(f"{logged} completed log rows for {n} sessions")
    events = WebhookEvent.objects.count()
    if events != n:
        problems.append(f"{events} inbox rows for {n} events")
    return "yes" if not problems else "**NO**: " + "; ".join(problems)


METHOD = """
{n:,} pending sessions (loaded with COPY) and, for each, the signed `payment.succeeded` event the
emulator would send for its payment (the emulator's own payload builder and `khaime_sign`), in
random order, plus 10% duplicates (same bytes, same signature): half right behind the original,
half later. Each delivery is a `POST khaime:webhook` through Django's full request cycle with
`django.test.Client` (middleware, CSRF exemption, URL resolution, the view): no HTTP server,
because parsing HTTP costs the same for any Django view, and a threaded server in one process
would measure the GIL. *Sequential*: one client in this process; before each delivery to the
webhook, the same POST goes to a no-op view (the *floor*: Django's request cycle and nothing
else), and each row counts only its own requests' time ("s"). *Concurrent*: {clients} worker
processes (as a WSGI server's workers would be), each with its own database connection, dealing
the stream round-robin, so a duplicate right behind its original arrives at another worker at
the same moment; "s" is the wall time from the first worker's start to the last one's end.
deliveries/s counts duplicates too; p50/p99 per delivery. Afterwards every session must be
`completed` with exactly one `completed` StatusChange row, and the inbox must hold one row per
event.
"""

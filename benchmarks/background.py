"""3b. Task mode (KHAIME["WEBHOOK_PROCESSING"] = "task") against inline, on PostgreSQL: how fast
Khaime is answered, how fast workers apply, and how long an event waits in between.

Worker processes are real engines: ``manage.py db_worker`` (django-tasks-db) and ``manage.py
rqworker`` (django-tasks-rq on the local Redis).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .harness import Context, Section, Summary, Table, Target, ms, skipped
from .webhook import _answer, _post, _prepare, _verify

TITLE = "3b. Background processing (task mode)"
TARGET_ACK_PER_S = 600
TARGET_ACK_RATIO = 3.0
WORKER_COUNTS = (1, 2, 4)
ROOT = Path(__file__).resolve().parent.parent
APPLY_TIMEOUT = 300


def run(ctx: Context) -> Section:
    targets = [
        ("task-mode acknowledgements, sequential", f"≥ {TARGET_ACK_PER_S} events/s"),
        ("task mode / inline acknowledgements, same run", f"≥ {TARGET_ACK_RATIO:.0f}x"),
    ]
    if not ctx.postgres:
        return skipped(TITLE, f"needs PostgreSQL ({ctx.postgres_problem}).", targets)
    from django.urls import reverse

    from khaime_django import task_engine

    if task_engine.ENGINE is None:
        return skipped(TITLE, "Django's Tasks framework is not installed (pip install khaime-django[tasks]).", targets)
    url = reverse("khaime:webhook")
    n = ctx.sizes.webhook_events
    section = Section(TITLE, method=METHOD.format(n=n, m=_applied_size(n)))
    ack_table, rates = _acknowledgements(url, n)
    section.tables.append(ack_table)
    section.notes.append(_commit_floor())
    redis_problem = _redis_problem()
    engines = [("database (db_worker)", "default")] + ([] if redis_problem else [("RQ (rqworker)", "rq")])
    if redis_problem:
        section.notes.append(f"RQ rows skipped: {redis_problem}.")
    section.tables.append(_applied(ctx, url, _applied_size(n), engines))
    task, inline = rates["task mode, database backend"], rates["inline"]
    section.targets = [
        Target(targets[0][0], targets[0][1], f"{task:.0f} events/s", task >= TARGET_ACK_PER_S),
        Target(targets[1][0], targets[1][1], f"{task / inline:.2f}x", task / inline >= TARGET_ACK_RATIO),
    ]
    return section


def _commit_floor(rounds: int = 200) -> str:
    """What one durable commit and one round trip cost on this database right now: a task-mode
    acknowledgement needs one commit (the event must be stored before Khaime gets its 2xx)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS bench_commit_probe (x int)")
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_commit_probe_durable (x int)")
        trips, commits = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            cursor.execute("SELECT 1")
            t1 = time.perf_counter()
            cursor.execute("INSERT INTO bench_commit_probe_durable VALUES (1)")
            commits.append(time.perf_counter() - t1)
            trips.append(t1 - t0)
        cursor.execute("DROP TABLE bench_commit_probe_durable")
    return (
        f"On this database, now: one round trip (`SELECT 1`) {ms(Summary.of(trips).median)} ms median; one "
        f"autocommit INSERT (a durable commit) {ms(Summary.of(commits).median)} ms median. Each acknowledgement "
        "commits once (task mode on the database backend: the event and its task together), so the "
        "commit bounds sequential acknowledgements at about 1000 / that many per second."
    )


def _applied_size(n: int) -> int:
    return max(1, min(n, 1000))


def _modes() -> dict[str, dict]:
    from django.conf import settings

    base = {**settings.KHAIME}
    return {
        "inline": {**base, "WEBHOOK_PROCESSING": "inline"},
        "task mode, database backend": {**base, "WEBHOOK_PROCESSING": "task", "TASK_BACKEND": "default"},
        **(
            {"task mode, RQ backend": {**base, "WEBHOOK_PROCESSING": "task", "TASK_BACKEND": "rq"}}
            if not _redis_problem()
            else {}
        ),
    }


def _acknowledgements(url: str, n: int):
    """Sequential deliveries, interleaved: one to each mode in turn, each mode its own events."""
    from django.conf import settings
    from django.test import Client

    from .db import empty_tables

    empty_tables()
    _empty_queues()
    modes = _modes()
    streams = {mode: _prepare(n)[1] for mode in modes}  # each mode its own sessions and events
    client = Client()
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    answers: dict[str, dict[str, int]] = {mode: {} for mode in modes}
    original = settings.KHAIME
    turns = [
        (mode, delivery)
        for deliveries in zip(*streams.values(), strict=True)
        for mode, delivery in zip(modes, deliveries, strict=True)
    ]
    try:
        for mode, delivery in turns:
            settings.KHAIME = modes[mode]
            t0 = time.perf_counter()
            response = _post(client, url, delivery)
            latencies[mode].append(time.perf_counter() - t0)
            answer = _answer(response)
            answers[mode][answer] = answers[mode].get(answer, 0) + 1
    finally:
        settings.KHAIME = original
    table = Table(["mode", "deliveries", "acknowledged/s", "p50 ms", "p95 ms", "p99 ms", "answers"])
    rates = {}
    for mode, values in latencies.items():
        s = Summary.of(values)
        rates[mode] = len(values) / sum(values)
        table.add(
            mode,
            f"{len(values):,}",
            f"{rates[mode]:.0f}",
            ms(s.median),
            ms(s.p95),
            ms(s.p99),
            ", ".join(f"{k} {v:,}" for k, v in sorted(answers[mode].items())),
        )
    empty_tables()
    _empty_queues()
    return table, rates


def _applied(ctx: Context, url: str, m: int, engines) -> Table:
    """For each engine and worker count: workers up, ``m`` deliveries acknowledged in task mode,
    then wait until every event is applied."""
    from django.conf import settings
    from django.test import Client

    from khaime_django.models import WebhookEvent

    from .db import empty_tables

    table = Table(
        ["engine", "workers", "events", "applied/s", "ack -> applied p50 ms", "p95 ms", "every session completed once"]
    )
    original = settings.KHAIME
    for label, alias in engines:
        for count in WORKER_COUNTS:
            empty_tables()
            _empty_queues()
            session_pks, stream = _prepare(m)
            stream = list({d.event_id: d for d in stream}.values())  # no duplicates: one ack per event
            workers = _start_workers(ctx, alias, count)
            try:
                settings.KHAIME = {**original, "WEBHOOK_PROCESSING": "task", "TASK_BACKEND": alias}
                client = Client()
                acked: dict[str, float] = {}
                for delivery in stream:
                    _post(client, url, delivery)
                    acked[delivery.event_id] = time.time()
                settings.KHAIME = original
                deadline = time.monotonic() + APPLY_TIMEOUT
                while WebhookEvent.objects.filter(outcome="received").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                settings.KHAIME = original
                _stop_workers(workers)
            done = dict(WebhookEvent.objects.exclude(processed_at=None).values_list("event_id", "processed_at"))
            delays = [done[e].timestamp() - at for e, at in acked.items() if e in done]
            first_ack = min(acked.values())
            last = max(v.timestamp() for v in done.values()) if done else first_ack
            s = Summary.of(delays or [0.0])
            table.add(
                label,
                str(count),
                f"{len(stream):,}",
                f"{len(done) / max(last - first_ack, 1e-9):.0f}",
                ms(s.median),
                ms(s.p95),
                _verify(session_pks, m)
                if len(done) == len(stream)
                else f"**NO**: {len(stream) - len(done)} not applied",
            )
    empty_tables()
    _empty_queues()
    return table


def _start_workers(ctx: Context, alias: str, count: int) -> list[subprocess.Popen]:
    env = {**ctx.env, "DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
    if alias == "rq":
        # SimpleWorker runs jobs in the worker process; RQ's default forks a work horse per job.
        command = [
            "rqworker",
            "default",
            "--job-class",
            "django_tasks_rq.backend.Job",
            "--worker-class",
            "rq.SimpleWorker",
        ]
    else:
        command = ["db_worker", "--no-startup-delay", "--no-reload", "--interval", "0.01"]
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    _wait_until_ready(alias, workers)
    return workers


def _wait_until_ready(alias: str, workers: list[subprocess.Popen]) -> None:
    """Until each worker is up: RQ registers its workers in Redis; db_worker gets a fixed pause."""
    deadline = time.monotonic() + 60
    if alias == "rq":
        import django_rq
        from rq import Worker

        connection = django_rq.get_connection("default")
        while len(Worker.all(connection=connection)) < len(workers) and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        time.sleep(3 + 0.5 * len(workers))


def _stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def _redis_problem() -> str:
    try:
        import django_rq

        django_rq.get_connection("default").ping()
    except Exception as error:  # any reason Redis is unusable skips the RQ rows
        return f"no usable Redis ({error})"
    return ""


def _empty_queues() -> None:
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.all().delete()
    if not _redis_problem():
        import django_rq

        django_rq.get_queue("default").empty()


METHOD = """
*Acknowledgement*: {n:,} signed `payment.succeeded` events per mode (as in section 3, with 10%
duplicates), delivered sequentially through `django.test.Client`, one to each mode in turn
(inline; task mode on the database backend; task mode on RQ), so machine load hits every mode
alike. No worker runs meanwhile: a task-mode delivery is verify, record, enqueue, answer 202 (on
the database backend on PostgreSQL the event and its task are one statement, a data-modifying
CTE, new event or redelivery alike; on RQ the event is one autocommit INSERT, then one enqueue to
Redis). acknowledged/s = deliveries / the sum of their own latencies.

*Applied*: for each engine and 1, 2, 4 worker processes (`manage.py db_worker --interval 0.01`,
`manage.py rqworker --worker-class rq.SimpleWorker`: no fork per job), workers started and
ready first, then {m:,} events acknowledged in task mode by one sequential client while the
workers apply them. applied/s = events / (last `processed_at` - first acknowledgement);
ack -> applied = each event's `processed_at` minus the moment its 202 came back. The client and
the workers share the machine's CPUs.
"""

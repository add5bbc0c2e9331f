"""Task mode on real engines: the database backend with two ``manage.py db_worker`` processes,
and RQ on the local Redis with two ``manage.py rqworker`` processes, both on PostgreSQL (the
workers are other processes: they need a database they can share with the shop).

The emulator pays sessions and delivers every event twice, shuffled; a worker is killed in the
middle of an apply; Redis refuses the shop's enqueue for a while. Every event is applied exactly
once and every signal is sent once (the workers journal theirs: tests/worker_journal.py).

Skipped with the reason without PostgreSQL or Redis; ``.ci/run`` sets KHAIME_REQUIRE_REDIS=1,
which turns a missing Redis into a failure.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from khaime_django import services
from khaime_django.models import PaymentSession, Status, StatusChange, WebhookEvent, WebhookOutcome

from ..tasks_support import DATABASE, RQ, task_mode

ROOT = Path(__file__).resolve().parent.parent.parent
SESSIONS = 12
BUYERS = itertools.count()  # a new buyer each time: one buyer's open session would be reused
WAIT = 60


def redis_problem() -> str | None:
    url = django_settings.KHAIME_TEST_REDIS_URL
    try:
        import redis
    except ImportError:
        return "redis-py is not installed (pip install khaime-django[test])"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as error:
        return f"no Redis at {url} ({error}); start one with `redis-server --daemonize yes`"
    return None


pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: the workers are separate processes sharing the shop's database "
        "(set DATABASE_URL=postgres://...)",
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def journal(tmp_path):
    path = tmp_path / "journal"
    path.touch()
    return path


def journal_lines(journal: Path, kind: str) -> list[list[str]]:
    return [line.split() for line in journal.read_text().splitlines() if line.startswith(kind + " ")]


class Workers:
    """Task worker processes on the test database, started and stopped by the test."""

    def __init__(self, backend: str, journal: Path):
        self.backend = backend
        self.journal = journal
        self.processes: list[subprocess.Popen] = []
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
            "KHAIME_TEST_TASKS_BACKEND": backend,
            "KHAIME_TEST_JOURNAL": str(journal),
            "KHAIME_TEST_REDIS_URL": django_settings.KHAIME_TEST_REDIS_URL,
        }

    def start(self, count: int = 1) -> list[subprocess.Popen]:
        started = []
        for _ in range(count):
            if self.backend == DATABASE:
                command = ["db_worker", "--no-startup-delay", "--interval", "0.05"]
            else:
                command = ["rqworker", "default", "--job-class", "django_tasks_rq.backend.Job"]
            process = subprocess.Popen(
                [sys.executable, "manage.py", *command],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self.processes.append(process)
            started.append(process)
        return started

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the worker and what it forked (RQ's work horse runs the job)."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> str:
        errors = []
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                _, stderr = process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                _, stderr = process.communicate()
            errors.append(stderr.decode(errors="replace")[-2000:])
        return "\n".join(errors)


@pytest.fixture
def db_workers(settings, journal):
    task_mode(settings, DATABASE)
    workers = Workers(DATABASE, journal)
    yield workers
    workers.stop()


@pytest.fixture
def rq_workers(settings, journal):
    problem = redis_problem()
    if problem:
        if os.environ.get("KHAIME_REQUIRE_REDIS") == "1":
            pytest.fail(f"KHAIME_REQUIRE_REDIS=1 but {problem}")
        pytest.skip(problem)
    import django_rq

    task_mode(settings, RQ)
    django_rq.get_queue("default").empty()
    workers = Workers(RQ, journal)
    yield workers
    workers.stop()
    django_rq.get_queue("default").empty()


def pay_sessions(khaime_emulator, count: int) -> list[PaymentSession]:
    """``count`` sessions made through the emulator and paid there; it sends their webhooks."""
    from django.conf import settings

    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "http://127.0.0.1"}
    sessions = [
        services.start_checkout(
            amount=1000 + i, currency="USD", customer_email=f"b{i}@example.com", product_name="Plan"
        )
        for i in (next(BUYERS) for _ in range(count))
    ]
    for session in sessions:
        khaime_emulator.complete(session.session_id)
    return sessions


def wait_until(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def all_applied(expected: int):
    return lambda: WebhookEvent.objects.filter(outcome=WebhookOutcome.APPLIED).count() >= expected


def assert_exactly_once(sessions, journal: Path, signal_log=()) -> None:
    """Each session completed once, and ``payment_completed`` sent once for it, by a worker
    (journal) or by this process (``signal_log``: the recovery runs here)."""
    for session in sessions:
        session.refresh_from_db()
        assert session.status == Status.COMPLETED
        history = StatusChange.objects.filter(session=session).order_by("created_at", "pk")
        assert list(history.values_list("to_status", flat=True)) == [Status.PENDING, Status.COMPLETED]
    completed = Counter(
        int(pk) for _, name, pk, *_pids in journal_lines(journal, "signal") if name == "payment_completed"
    )
    completed.update(kwargs["session"].pk for name, kwargs in signal_log if name == "payment_completed")
    assert completed == Counter({session.pk: 1 for session in sessions}), completed
    assert (
        not WebhookEvent.objects.exclude(outcome=WebhookOutcome.APPLIED).exclude(event_type="payment.created").exists()
    )


def deliver_shuffled_duplicates(khaime_emulator):
    khaime_emulator.configure(duplicate_webhooks=True, webhook_order="shuffled")


@pytest.mark.parametrize("engine", ["db", "rq"])
def test_two_workers_apply_duplicated_shuffled_deliveries_exactly_once(
    engine, request, live_server, khaime_emulator, journal
):
    workers = request.getfixturevalue("db_workers" if engine == "db" else "rq_workers")
    workers.start(2)
    deliver_shuffled_duplicates(khaime_emulator)
    sessions = pay_sessions(khaime_emulator, SESSIONS)
    paid_events = SESSIONS
    wait_until(lambda: WebhookEvent.objects.filter(event_type="payment.succeeded").count() == paid_events, "deliveries")
    wait_until(
        lambda: (
            WebhookEvent.objects.filter(event_type="payment.succeeded", outcome=WebhookOutcome.APPLIED).count()
            == paid_events
        ),
        "the workers to apply every event",
    )
    khaime_emulator.wait_for_deliveries(2 * len(khaime_emulator.events()), timeout=WAIT)  # every copy answered
    assert WebhookEvent.objects.filter(deliveries__gte=2).exists()  # the emulator did duplicate
    assert_exactly_once(sessions, journal)
    started = {str(process.pid) for process in workers.processes}
    appliers = {pid if pid in started else ppid for _, _evt, pid, ppid in journal_lines(journal, "apply")}
    assert appliers == started, "both workers took part"


@pytest.mark.parametrize("engine", ["db", "rq"])
def test_a_worker_killed_mid_apply_loses_nothing_and_applies_once(
    engine, request, live_server, khaime_emulator, journal, settings, signal_log
):
    workers = request.getfixturevalue("db_workers" if engine == "db" else "rq_workers")
    [first] = workers.start(1)
    slow = Path(str(journal) + ".slow")
    slow.touch()
    [session] = pay_sessions(khaime_emulator, 1)
    wait_until(lambda: journal_lines(journal, "apply"), "the worker to start applying")
    workers.kill(first)  # inside the apply's transaction: PostgreSQL rolls it back
    slow.unlink()
    event = WebhookEvent.objects.get(event_type="payment.succeeded")
    assert event.outcome == WebhookOutcome.RECEIVED
    session.refresh_from_db()
    assert session.status == Status.PENDING

    workers.start(2)
    others = pay_sessions(khaime_emulator, 4)
    wait_until(
        lambda: all(PaymentSession.objects.get(pk=s.pk).status == Status.COMPLETED for s in others),
        "the surviving workers to apply the other events",
    )
    # The killed worker's task is gone with it (the database backend), or its engine runs it again
    # (RQ may re-enqueue an abandoned job); either way khaime_sync's recovery leaves nothing waiting.
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_RECOVERY_DELAY": 0}
    recovered = services.apply_waiting_events()
    assert recovered == (1 if engine == "db" else recovered) and recovered in (0, 1)
    assert services.apply_waiting_events() == 0
    assert WebhookEvent.objects.get(pk=event.pk).outcome == WebhookOutcome.APPLIED
    assert_exactly_once([session, *others], journal, signal_log)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_redis_unavailable_at_enqueue_still_acknowledges_and_nothing_is_lost(
    rq_workers, live_server, khaime_emulator, journal, settings, caplog, signal_log
):
    rq_workers.start(2)
    deliver_shuffled_duplicates(khaime_emulator)
    before = pay_sessions(khaime_emulator, 3)
    wait_until(lambda: all(PaymentSession.objects.get(pk=s.pk).status == Status.COMPLETED for s in before), "applies")

    # The shop's Redis goes away (its address now refuses connections); the workers keep theirs.
    working = settings.RQ_QUEUES
    settings.RQ_QUEUES = {name: {"URL": f"redis://127.0.0.1:{closed_port()}/7"} for name in working}
    during = pay_sessions(khaime_emulator, 3)
    wait_until(lambda: WebhookEvent.objects.filter(event_type="payment.succeeded").count() == 6, "deliveries")
    # Every copy of every event, the shuffled duplicates still held back included, must have been
    # answered while Redis is away: a copy landing after it is back would enqueue its event.
    khaime_emulator.wait_for_deliveries(2 * len(khaime_emulator.events()), timeout=WAIT)
    statuses = [d["status_code"] for d in khaime_emulator.deliveries()]
    assert statuses and all(code in (200, 202) for code in statuses), statuses  # acknowledged all the same
    assert "Could not enqueue Khaime webhook event" in caplog.text
    waiting = WebhookEvent.objects.filter(outcome=WebhookOutcome.RECEIVED)
    assert waiting.count() == 3

    settings.RQ_QUEUES = working  # Redis is back
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_RECOVERY_DELAY": 0}
    assert services.apply_waiting_events() == 3
    assert_exactly_once([*before, *during], journal, signal_log)

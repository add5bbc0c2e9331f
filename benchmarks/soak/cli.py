"""The run: start the stack, drive the load with chaos, settle, check, write the report."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import chaos as chaos_module
from .stack import ROOT, Database, EmulatorProcess, Gunicorn, TaskWorker, listening_socket

HERE = Path(__file__).resolve().parent
APP_DB_NAME = "khaime-soak-app"
CHECK_DB_NAME = "khaime-soak-check"
WEBHOOK_SECRET = "whsec_soak"  # noqa: S105 (shared by two local processes of one run)


@dataclass(frozen=True)
class Settings:
    purchases: int
    buyers: int
    workers: int
    time_limit: float
    settle_timeout: float
    kills: int
    drops: int
    seed: int
    postgres_url: str
    report: Path
    worker_timeout: int = 30
    faults: dict = field(default_factory=dict)
    task_workers: int = 0  # > 0: webhooks in task mode, applied by this many `manage.py db_worker`
    refunds: int = 0  # batches of refunds the merchant makes during the run
    threads: int = 1  # > 1: gunicorn's gthread workers, this many threads each

    @property
    def label(self) -> str:
        label = f"{self.purchases} purchases, {self.buyers} concurrent buyers, {self.workers} gunicorn workers"
        if self.threads > 1:
            label += f" of {self.threads} threads (gthread)"
        if self.task_workers:
            label += f", webhooks in task mode with {self.task_workers} `db_worker` processes"
        return label


SHORT = {
    "purchases": 300,
    "buyers": 12,
    "time_limit": 100.0,
    "settle_timeout": 90.0,
    "kills": 2,
    "drops": 1,
    "refunds": 2,
}
FULL = {
    "purchases": 5000,
    "buyers": 24,
    "time_limit": 2400.0,
    "settle_timeout": 300.0,
    "kills": 4,
    "drops": 3,
    "refunds": 6,
}

#: Passed to the emulator when it has them: a pool of webhook senders, as a real provider has.
IF_SUPPORTED = {"webhook_workers": 4}

#: The emulator's faults during the run (its command-line options).
FAULTS = {
    "latency_ms": 25,
    "fail_rate": 0.03,
    "fail_status": 500,
    "rate_limit_per_second": 10,
    "duplicate_webhooks": True,
    "webhook_order": "shuffled",
    "webhook_attempts": 5,
    "webhook_retry_delay": 2.0,
    "webhook_timeout": 10.0,
}


def parse(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the CI run: a few hundred purchases, under 3 minutes")
    parser.add_argument("--purchases", type=int, help="purchases to play (default 5000; --short 300)")
    parser.add_argument("--buyers", type=int, help="buyers at a time (default 24; --short 12)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (default 4)")
    parser.add_argument(
        "--threads",
        type=int,
        default=4,
        help="threads per gunicorn worker (default 4: gthread workers, so a return page waiting for its webhook "
        "does not hold a whole process; 1: sync workers)",
    )
    parser.add_argument("--time-limit", type=float, help="seconds of load at most; then no new purchase starts")
    parser.add_argument("--settle-timeout", type=float, help="seconds to wait for webhook retries at most")
    parser.add_argument("--kills", type=int, help="kill -9 of a gunicorn worker, spread over the run")
    parser.add_argument("--drops", type=int, help="drops of the app's database connections, spread over the run")
    parser.add_argument("--refunds", type=int, help="batches of refunds (refund_payment) during the run")
    parser.add_argument("--seed", type=int, default=14, help="seed of the buyers' and the emulator's draws")
    parser.add_argument(
        "--task-workers",
        type=int,
        default=0,
        help="webhooks in task mode (KHAIME['WEBHOOK_PROCESSING']='task'), applied by this many db_worker processes",
    )
    parser.add_argument(
        "--emulator-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one more emulator option (its command-line flag without --), e.g. fail-rate=0.1",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SOAK_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server URL (SOAK_POSTGRES_URL); the soak creates and drops its own database there",
    )
    parser.add_argument("--report", type=Path, help="where to write the report (default benchmarks/SOAK.md)")
    args = parser.parse_args(argv)
    preset = SHORT if args.short else FULL
    faults = dict(FAULTS)
    for option in args.emulator_option:
        name, _, value = option.partition("=")
        faults[name.replace("-", "_")] = True if value == "" else value
    default_report = HERE.parent / ("SOAK-short.md" if args.short else "SOAK.md")
    return Settings(
        purchases=args.purchases or preset["purchases"],
        buyers=args.buyers or preset["buyers"],
        workers=args.workers,
        threads=args.threads,
        time_limit=args.time_limit or preset["time_limit"],
        settle_timeout=args.settle_timeout or preset["settle_timeout"],
        kills=preset["kills"] if args.kills is None else args.kills,
        drops=preset["drops"] if args.drops is None else args.drops,
        seed=args.seed,
        postgres_url=args.postgres,
        report=args.report or default_report,
        faults=faults,
        task_workers=args.task_workers,
        refunds=preset["refunds"] if args.refunds is None else args.refunds,
    )


@contextmanager
def stop_on_signals():
    """Ctrl-C and SIGTERM end the run through every ``finally`` and ``__exit__`` (SIGINT too when
    the shell started the soak in the background, where it would otherwise be ignored)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Stack:
    """The running parts, as the chaos injections and the checks see them."""

    def __init__(self, database: Database, emulator: EmulatorProcess, gunicorn: Gunicorn, env: dict[str, str]):
        self.database, self.emulator, self.gunicorn, self.env = database, emulator, gunicorn, env
        self.task_workers: list = []

    def terminate_app_connections(self) -> list[int]:
        from .ledger import terminate_connections

        return terminate_connections(APP_DB_NAME)

    def release(self) -> None:
        """Close this thread's own database connection (the chaos thread's, after an injection)."""
        from .ledger import close_connections

        close_connections()

    def checkout_client_ports(self) -> list[int]:
        from .ledger import checkout_client_ports

        return checkout_client_ports(APP_DB_NAME)

    def manage(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def has_refunds() -> bool:
    """Whether this version of the app has the refund service."""
    from importlib.util import find_spec

    return find_spec("khaime_django.services.refunds") is not None


def app_env(database_url: str, api_base_url: str, site_url: str = "", processing: str = "inline") -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KHAIME_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="benchmarks.soak.settings",
        DATABASE_URL=database_url,
        KHAIME_API_BASE_URL=api_base_url,
        KHAIME_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SECRET_KEY="soak-" + os.urandom(16).hex(),
        SOAK_DB_APPLICATION_NAME=APP_DB_NAME,
        SOAK_SITE_URL=site_url,
        KHAIME_WEBHOOK_PROCESSING=processing,
        PYTHONUNBUFFERED="1",
    )
    return env


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    from .run import run

    workdir = Path(tempfile.mkdtemp(prefix="khaime-soak-"))
    with stop_on_signals(), ExitStack() as exits:
        sock = listening_socket()
        exits.callback(sock.close)
        shop_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        database = exits.enter_context(Database(settings.postgres_url, f"soak_{os.getpid()}"))
        print(f"soak: database {database.name}, logs in {workdir}", flush=True)
        # The harness reads the ledger with the app's models, on a connection of its own name.
        os.environ.update(app_env(database.url, ""), SOAK_DB_APPLICATION_NAME=CHECK_DB_NAME)
        import django

        django.setup()
        from .ledger import close_connections

        exits.callback(close_connections)  # before the database is dropped
        emulator_options = {**settings.faults, "webhook_url": f"{shop_url}/payments/webhook/"}
        emulator_options.update(webhook_secret=WEBHOOK_SECRET, seed=settings.seed)
        emulator = exits.enter_context(
            EmulatorProcess(emulator_options, dict(os.environ), workdir / "emulator.log", IF_SUPPORTED)
        )
        processing = "task" if settings.task_workers else "inline"
        env = app_env(database.url, emulator.api_base_url, shop_url, processing)
        stack = Stack(database, emulator, None, env)  # type: ignore[arg-type]
        for command in (("migrate", "--noinput"), ("demo_setup",)):
            done = stack.manage(*command)
            if done.returncode:
                print(done.stdout + done.stderr, file=sys.stderr)
                return 2
        stack.task_workers = [
            exits.enter_context(TaskWorker(env, workdir / f"db_worker-{number + 1}.log"))
            for number in range(settings.task_workers)
        ]
        stack.gunicorn = exits.enter_context(
            Gunicorn(
                sock, settings.workers, settings.worker_timeout, env, workdir / "gunicorn.log", threads=settings.threads
            )
        )
        sock.close()  # gunicorn holds it now
        # In task mode one db_worker of several is killed too (a worker dying mid-apply).
        injections = chaos_module.plan(
            settings.kills,
            settings.drops,
            1 if settings.task_workers > 1 else 0,
            settings.refunds if has_refunds() else 0,
        )
        started = time.time()
        try:
            outcome = run(settings, stack, shop_url, injections)
        except KeyboardInterrupt:
            print("soak: interrupted; stopping everything it started", file=sys.stderr)
            return 130
        from .report import write

        write(settings.report, settings, outcome, stack, started)
        print(outcome.summary(), flush=True)
        print(f"soak: report in {settings.report}", flush=True)
        return 0 if outcome.passed else 1
    return 1

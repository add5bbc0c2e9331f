"""Faults injected into the app while buyers are in it. ``plan()`` lists them: each fires once,
when that share of the purchases has started; add one with a function and a line there.

Every firing is recorded with its time, so a buyer's dropped connection right after a worker
was killed counts as injected, not as the app's own failure.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .stack import pid_with_local_port

#: A request cut off by an injection fails within this many seconds of it.
BLAST_SECONDS = 2.0
#: How long an aimed injection looks for its target before it falls back to a random one.
CATCH_SECONDS = 5.0


@dataclass(frozen=True)
class Injection:
    name: str
    act: Callable[[object], str]  # gets the run's Stack; answers what it did
    at: float  # share of purchases started, 0-1


@dataclass(frozen=True)
class Fired:
    name: str
    at: float  # time.monotonic()
    what: str


def kill_worker(stack) -> str:
    """kill -9 one gunicorn worker, mid-request if it is busy; gunicorn starts another."""
    pids = stack.gunicorn.worker_pids()
    if not pids:
        return "no worker to kill"
    pid = random.Random(len(pids)).choice(pids)
    os.kill(pid, signal.SIGKILL)
    return f"SIGKILL to worker {pid} of {len(pids)}"


def kill_worker_mid_checkout(stack) -> str:
    """kill -9 the worker of a checkout that has INSERTed its row and waits for Khaime (as an OOM
    kill or a hard restart would find it); a random worker if none is caught within a few seconds."""
    deadline = time.monotonic() + CATCH_SECONDS
    while time.monotonic() < deadline:
        pids = stack.gunicorn.worker_pids()
        for port in stack.checkout_client_ports():
            pid = pid_with_local_port(pids, port)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                return f"SIGKILL to worker {pid}, mid-checkout (its row INSERTed, Khaime not yet answered)"
        time.sleep(0.005)
    return "no checkout caught in flight; " + kill_worker(stack)


def drop_db_connections(stack) -> str:
    """pg_terminate_backend on every connection the app's workers hold, busy or idle."""
    pids = stack.terminate_app_connections()
    return f"terminated {len(pids)} app connections"


def kill_task_worker(stack) -> str:
    """kill -9 one ``db_worker`` (task mode), busy or not; nothing restarts it, the others go on."""
    alive = [worker for worker in stack.task_workers if worker.popen is not None and worker.popen.poll() is None]
    if len(alive) < 2:
        return "not enough task workers to kill one"
    os.kill(alive[0].pid, signal.SIGKILL)
    return f"SIGKILL to db_worker {alive[0].pid} of {len(alive)}"


#: Refunds the merchant makes during the run, through the service call, in one management shell.
REFUNDS_PER_BATCH = 12
REFUND_SCRIPT = """
from collections import Counter
from khaime_django.models import Payment
from khaime_django.services.refunds import refund_payment
done = Counter()
candidates = Payment.objects.filter(refunds__isnull=True).order_by("?")[:%d]
for number, payment in enumerate(candidates):
    amount = None if number %% 2 == 0 else max(1, payment.amount // 3)
    try:
        done[refund_payment(payment, amount, reason="soak").status] += 1
    except Exception as error:
        done[type(error).__name__] += 1
print(", ".join(f"{status}: {n}" for status, n in sorted(done.items())) or "no payment to refund")
"""


def refund_some(stack) -> str:
    """The merchant refunds a few payments (every other one in full, the others a third) with
    ``khaime_django.services.refunds.refund_payment``, in a ``manage.py shell``, while buyers pay
    and Khaime's faults are on."""
    done = stack.manage("shell", "-c", REFUND_SCRIPT % REFUNDS_PER_BATCH, timeout=120)
    output = (done.stdout.strip().splitlines() or [""])[-1]
    return f"refund_payment x{REFUNDS_PER_BATCH}: {output}" + (f" (exit {done.returncode})" if done.returncode else "")


def plan(kills: int, drops: int, task_kills: int = 0, refunds: int = 0) -> list[Injection]:
    """``kills`` worker kills (every other one aimed at a checkout in flight), ``drops``
    connection drops and ``task_kills`` task worker kills, spread over the middle of the run."""
    kinds = [
        ("kill -9 a gunicorn worker mid-checkout", kill_worker_mid_checkout),
        ("kill -9 a gunicorn worker", kill_worker),
    ]
    injections = [Injection(*kinds[i % 2], (i + 1) / (kills + 1) * 0.8) for i in range(kills)]
    injections += [
        Injection("drop the app's database connections", drop_db_connections, (i + 1) / (drops + 1) * 0.8 + 0.1)
        for i in range(drops)
    ]
    injections += [Injection("kill -9 a db_worker", kill_task_worker, 0.5 + 0.1 * i) for i in range(task_kills)]
    injections += [
        Injection("the merchant refunds payments", refund_some, (i + 1) / (refunds + 1) * 0.9) for i in range(refunds)
    ]
    return sorted(injections, key=lambda injection: injection.at)


@dataclass
class Chaos:
    """Fires the injections as the run's progress (``started() / total``) passes each one."""

    stack: object
    injections: list[Injection]
    started: Callable[[], int]
    total: int
    fired: list[Fired] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="soak-chaos", daemon=True)

    def start(self) -> Chaos:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pending = list(self.injections)
        while pending and not self._stop.wait(0.05):
            if self.started() >= pending[0].at * self.total:
                injection = pending.pop(0)
                try:
                    what = injection.act(self.stack)
                except Exception as error:  # an injection that fails is reported, not fatal
                    what = f"failed: {error!r}"
                finally:
                    # When it struck: an aimed kill may look for its target for a few seconds first.
                    at = time.monotonic()
                    self.stack.release()
                self.fired.append(Fired(injection.name, at, what))

    def explains(self, at: float, seconds: float, kind: str = "") -> bool:
        """A request started at ``at`` that ended ``seconds`` later was cut off by an injection
        (whose name contains ``kind``, e.g. "kill" or "drop"): it was in flight then, and ended
        within BLAST_SECONDS of it (a request that ran on for half a minute after a kill was ended
        by something else, e.g. gunicorn's timeout)."""
        end = at + seconds
        return any(
            kind in fired.name and at <= fired.at + BLAST_SECONDS and fired.at <= end <= fired.at + BLAST_SECONDS
            for fired in self.fired
        )

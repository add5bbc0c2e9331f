"""What every measurement shares: sizes, interleaved timing, summaries, tables, sections."""

from __future__ import annotations

import gc
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BENCH_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench"


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does. ``FULL`` is ``make bench``; ``QUICK`` a smoke run."""

    checkout_rounds_0ms: int
    checkout_rounds_50ms: int
    warmup_rounds: int
    return_rounds: int
    query_samples: int
    webhook_events: int
    webhook_clients: int
    admin_sizes: tuple[int, ...]
    admin_repeats: int
    sync_sessions: int
    sync_timeout_s: float
    memory_checkpoints: tuple[int, int]
    profile_checkouts: int
    bootstrap_resamples: int


FULL = Sizes(
    checkout_rounds_0ms=400,
    checkout_rounds_50ms=100,
    warmup_rounds=20,
    return_rounds=300,
    query_samples=5,
    webhook_events=2000,
    webhook_clients=4,
    admin_sizes=(1_000, 100_000),
    admin_repeats=15,
    sync_sessions=100_000,
    sync_timeout_s=240,
    memory_checkpoints=(100, 1_000),
    profile_checkouts=300,
    bootstrap_resamples=1000,
)

QUICK = Sizes(
    checkout_rounds_0ms=30,
    checkout_rounds_50ms=8,
    warmup_rounds=3,
    return_rounds=20,
    query_samples=2,
    webhook_events=100,
    webhook_clients=4,
    admin_sizes=(100, 2_000),
    admin_repeats=3,
    sync_sessions=2_000,
    sync_timeout_s=60,
    memory_checkpoints=(20, 100),
    profile_checkouts=30,
    bootstrap_resamples=200,
)

#: For the test suite: a few iterations of everything.
SMOKE = Sizes(
    checkout_rounds_0ms=3,
    checkout_rounds_50ms=2,
    warmup_rounds=1,
    return_rounds=3,
    query_samples=1,
    webhook_events=10,
    webhook_clients=2,
    admin_sizes=(10, 20),
    admin_repeats=1,
    sync_sessions=10,
    sync_timeout_s=30,
    memory_checkpoints=(2, 4),
    profile_checkouts=3,
    bootstrap_resamples=20,
)


@dataclass
class Context:
    """What a measurement is given: sizes, the emulator, and where things run."""

    sizes: Sizes
    emulator: Any  # khaime_django.emulator.Emulator, or benchmarks.emulator_process.RemoteEmulator
    postgres: bool = False
    postgres_problem: str = ""
    database_label: str = ""
    database_url: str = ""
    env: dict[str, str] = field(default_factory=dict)  # for child processes


# --- timing ------------------------------------------------------------------------------------


class Variant:
    """One contestant of an interleaved comparison.

    ``prepare(r)`` builds the input of round ``r`` (untimed: a fresh token, a fresh email),
    ``run(prepared)`` is what is timed, ``check(result)`` validates the answer (untimed).
    """

    name: str = ""

    def prepare(self, i: int) -> Any:
        return i

    def run(self, prepared: Any) -> Any:
        raise NotImplementedError

    def check(self, result: Any) -> None:
        pass


def interleave(variants: Sequence[Variant], rounds: int, warmup: int = 0) -> dict[str, list[float]]:
    """Run the variants in turn, ``warmup + rounds`` times, rotating who goes first each round
    (A B C, B C A, C A B, ...) so neither the machine's drift nor position in the round favours
    one. Returns each variant's ``rounds`` timings in seconds, in round order (paired by index)."""
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    gc.collect()
    for r in range(warmup + rounds):
        shift = r % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            prepared = variant.prepare(r)
            started = time.perf_counter()
            result = variant.run(prepared)
            elapsed = time.perf_counter() - started
            variant.check(result)
            if r >= warmup:
                times[variant.name].append(elapsed)
    return times


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, float("nan"), float("nan"), float("nan"))
        return cls(
            len(values),
            statistics.median(values),
            percentile(values, 95),
            percentile(values, 99),
        )


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * pct / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Ratio:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.2f} ({self.low:.2f} to {self.high:.2f})"


def ratio_of_medians(a: Sequence[float], b: Sequence[float], resamples: int = 1000, seed: int = 5) -> Ratio:
    """median(a) / median(b), with a 95% bootstrap interval that resamples whole rounds (the
    samples are paired: a[i] and b[i] ran in the same round)."""
    value = statistics.median(a) / statistics.median(b)
    n = min(len(a), len(b))
    if n < 2 or resamples < 2:
        return Ratio(value, value, value)
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        ratios.append(statistics.median([a[i] for i in picks]) / statistics.median([b[i] for i in picks]))
    return Ratio(value, percentile(ratios, 2.5), percentile(ratios, 97.5))


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.2f}" if seconds < 0.1 else f"{seconds * 1000:.0f}"


# --- results -----------------------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append([str(cell) for cell in cells])

    def render(self) -> str:
        lines = [
            "| " + " | ".join(self.headers) + " |",
            "|" + "|".join(" --- " for _ in self.headers) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Target:
    """One target of the issue and where this run stands against it."""

    what: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


@dataclass
class Section:
    title: str
    method: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    skipped: str = ""  # why the measurement did not run

    def render(self) -> str:
        parts = [f"## {self.title}"]
        if self.skipped:
            parts.append(f"**Not measured:** {self.skipped}")
        if self.method:
            parts.append(self.method.strip())
        parts += [table.render() for table in self.tables]
        parts += [note.strip() for note in self.notes]
        return "\n\n".join(parts) + "\n"


def skipped(title: str, why: str, targets: Sequence[tuple[str, str]] = ()) -> Section:
    return Section(
        title,
        skipped=why,
        targets=[Target(what, target, "-", None) for what, target in targets],
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result

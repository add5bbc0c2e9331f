"""6. Memory: peak RSS of a process after N checkouts against after n (each in its own process).

Run as ``python -m benchmarks.memory VARIANT FIRST SECOND`` it is that process: it makes
checkouts through ``django.test.Client`` and prints one JSON line per checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .harness import Context, Section, Table, Target
from .peak_rss import peak_rss_kb

TITLE = "6. Memory"
GROWTH_LIMIT_MB = 5.0  # "no growth beyond the connection pool": a pool is a few sockets and buffers


def run(ctx: Context) -> Section:
    from .db import empty_tables

    first, second = ctx.sizes.memory_checkpoints
    table = Table(
        [
            "integration",
            "peak RSS after setup + 1 checkout, MB",
            f"after {first:,}, MB",
            f"after {second:,}, MB",
            f"growth {first:,}→{second:,}, MB",
            "KB per checkout",
        ]
    )
    growth = {}
    for variant in ("ours", "naive"):
        empty_tables()
        points = _measure(ctx, variant, first, second)
        base, a, b = (points[n]["peak_rss_kb"] / 1024 for n in (1, first, second))
        growth[variant] = b - a
        table.add(
            variant,
            f"{base:.1f}",
            f"{a:.1f}",
            f"{b:.1f}",
            f"{b - a:+.1f}",
            f"{(b - a) * 1024 / (second - first):.2f}",
        )
    empty_tables()
    section = Section(TITLE, method=METHOD.format(first=first, second=second), tables=[table])
    section.targets = [
        Target(
            f"memory growth {first:,}→{second:,} checkouts (ours)",
            f"none beyond the pool (≤ {GROWTH_LIMIT_MB:.0f} MB)",
            f"{growth['ours']:+.1f} MB",
            growth["ours"] <= GROWTH_LIMIT_MB,
        )
    ]
    return section


def _measure(ctx: Context, variant: str, first: int, second: int) -> dict[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", variant, str(first), str(second)],
        check=False,
        env=ctx.env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child ({variant}) failed:\n{proc.stderr[-2000:]}")
    points = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {point["checkouts"]: point for point in points}


def _child(variant: str, first: int, second: int) -> None:
    import django

    django.setup()
    from django.conf import settings

    from .checkout import Naive, Ours

    api = os.environ["BENCH_KHAIME_API_BASE_URL"]  # the parent's emulator, on loopback
    settings.KHAIME = {**settings.KHAIME, "API_BASE_URL": api}
    contestant = Ours() if variant == "ours" else Naive()
    done = 0
    for checkpoint in (1, first, second):
        while done < checkpoint:
            contestant.check(contestant.run(contestant.prepare(done)))
            done += 1
        print(
            json.dumps(
                {
                    "checkouts": done,
                    "peak_rss_kb": peak_rss_kb(),
                    "rss_kb": _current_rss_kb(),
                }
            ),
            flush=True,
        )


def _current_rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


METHOD = """
A fresh process per integration (`python -m benchmarks.memory`, Django set up as in the
benchmark) makes checkouts through `django.test.Client` against the emulator and reports its peak
RSS (`VmHWM`; not `ru_maxrss`, which a child inherits from its parent) after the first checkout,
after {first:,} and after {second:,}. `DEBUG=False`, as in production (with `DEBUG=True` Django
keeps the last 9,000 queries in memory).
"""


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))

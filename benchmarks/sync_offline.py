"""5. Reconciliation at scale: ``manage.py khaime_sync --offline`` expiring stale sessions."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from .harness import Context, Section, Table, Target, skipped
from .peak_rss import parse

TITLE = "5. khaime_sync --offline at scale"
TARGET_S = 10.0
TARGET_MB = 150.0
FRESH_SHARE = 100  # one session in this many is still valid and must be left alone
ROOT = Path(__file__).resolve().parent.parent
MANAGE_PY = ROOT / "manage.py"


def run(ctx: Context) -> Section:
    n = ctx.sizes.sync_sessions
    targets = [
        (f"khaime_sync --offline, {n:,} stale sessions", f"≤ {TARGET_S:.0f} s"),
        (f"khaime_sync --offline peak memory, {n:,} stale", f"< {TARGET_MB:.0f} MB"),
    ]
    if not ctx.postgres:
        return skipped(TITLE, f"needs PostgreSQL ({ctx.postgres_problem}).", targets)
    from django.core.management import get_commands

    if "khaime_sync" not in get_commands():
        return skipped(TITLE, "`manage.py khaime_sync` is not in this tree yet.", targets)

    from django.utils import timezone

    from khaime_django.models import PaymentSession, StatusChange

    from .db import empty_tables, insert_sessions, session_rows, vacuum_analyze

    empty_tables()
    baseline = _run_command(ctx, timeout=120)  # nothing to expire: Django's own start-up and footprint
    now = timezone.now()
    fresh = n // FRESH_SHARE
    loaded = time.perf_counter()
    insert_sessions(
        session_rows(
            n,
            now=now,
            status=lambda i: "cancelled" if i % 10 == 0 else "pending",
            age=lambda i: timedelta(days=3, minutes=i % 1440),
            expires_in=lambda i: timedelta(minutes=30),
        )
    )
    insert_sessions(session_rows(fresh, start=n, now=now, age=lambda i: timedelta(minutes=1)))
    vacuum_analyze(PaymentSession)
    loaded = time.perf_counter() - loaded
    result = _run_command(ctx, timeout=ctx.sizes.sync_timeout_s)

    expired = PaymentSession.objects.filter(status="expired").count()
    logged = StatusChange.objects.filter(to_status="expired", source="sync").count()
    untouched = PaymentSession.objects.filter(status="pending", created_at__gte=now - timedelta(minutes=2)).count()
    ok = expired == n and logged == n and untouched == fresh
    check = (
        "yes"
        if ok
        else f"**NO**: {expired:,} expired, {logged:,} log rows, {untouched:,} of {fresh:,} fresh left alone"
    )

    table = Table(
        [
            "run",
            "sessions expired",
            "wall s",
            "peak RSS MB",
            "exit",
            "all stale expired once, fresh left alone",
        ]
    )
    table.add(
        "baseline: nothing stale",
        0,
        f"{baseline['wall']:.2f}",
        f"{baseline['rss_mb']:.1f}",
        baseline["exit"],
        "-",
    )
    table.add(
        f"{n:,} stale + {fresh:,} fresh",
        f"{expired:,}",
        f"{result['wall']:.2f}" + (" (killed)" if result["killed"] else ""),
        f"{result['rss_mb']:.1f}",
        result["exit"],
        check,
    )
    section = Section(TITLE, method=METHOD.format(n=n, fresh=fresh, loaded=loaded), tables=[table])
    if result["output"]:
        section.notes.append(f"The command said: `{result['output'].strip().splitlines()[-1][:300]}`")
    empty_tables()
    section.targets = [
        Target(
            targets[0][0],
            targets[0][1],
            f"{result['wall']:.1f} s",
            result["wall"] <= TARGET_S and not result["killed"],
        ),
        Target(
            targets[1][0],
            targets[1][1],
            f"{result['rss_mb']:.0f} MB",
            result["rss_mb"] < TARGET_MB,
        ),
    ]
    return section


def _run_command(ctx: Context, timeout: float) -> dict:
    """Run the command in a child; the child reports its own peak RSS (see peak_rss.py)."""
    started = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "benchmarks.peak_rss",
        str(MANAGE_PY),
        "khaime_sync",
        "--offline",
    ]
    killed = False
    try:
        proc = subprocess.run(
            command,
            env=ctx.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )
        output, errors, exit_code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as expired:
        killed, exit_code = True, "killed"
        output, errors = _text(expired.stdout), _text(expired.stderr)
    wall = time.perf_counter() - started
    peak = parse(errors)
    if exit_code not in (0, "killed"):
        raise RuntimeError(f"khaime_sync --offline exited {exit_code}:\n{errors[-2000:]}")
    return {
        "wall": wall,
        "rss_mb": peak / 1024 if peak else float("nan"),
        "exit": exit_code,
        "killed": killed,
        "output": output,
    }


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


METHOD = """
{n:,} sessions pending or cancelled whose `expires_at` passed days ago, plus {fresh:,} fresh
pending ones that must stay (loaded with COPY and analysed in {loaded:.1f} s). `manage.py
khaime_sync --offline` runs in a child process with the benchmark's settings; wall time is
measured around the child. Peak RSS is the child's `VmHWM`, which it reads itself at exit
(`benchmarks/peak_rss.py`): a child's `ru_maxrss` inherits the parent's high-water mark across
fork and exec. The baseline run has nothing to expire: it is what Django's start-up costs.
"""

"""RESULTS.md: the run's circumstances, where we stand against the issue's targets, each section."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

from .harness import Context, Section, Table

EMULATOR_NOTE = "the offline emulator (`khaime_django.emulator`) in a separate process on 127.0.0.1; never the real API"


def render(
    sections: list[Section],
    *,
    ctx: Context,
    command: str,
    started: float,
    elapsed: float,
    load_before,
    load_after,
    quick: bool,
) -> str:
    import django
    import requests

    from khaime_django import __version__

    when = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# khaime-django benchmarks",
        "",
        (
            "Written by `make bench` (`python -m benchmarks`); do not edit by hand. Method: each "
            "section says what it does; code in `benchmarks/`."
        ),
        "",
    ]
    if quick:
        lines += [
            "> **Quick smoke run** (small sizes): shows the harness works; not numbers to compare.",
            "",
        ]
    machine = (
        f"{os.cpu_count()} CPUs ({_cpu_model()}), {platform.system()} {platform.release()}; "
        f"load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end"
    )
    software = (
        f"**Python** {platform.python_version()}, **Django** {django.get_version()}, "
        f"requests {requests.__version__}, {_psycopg()}"
    )
    database = ctx.database_label
    if ctx.postgres_problem:
        database += f" — PostgreSQL unusable: {ctx.postgres_problem}"
    lines += [
        f"- **Date:** {when}; took {elapsed:.0f} s",
        f"- **Command:** `{command}` (khaime-django {__version__}, git {_git_head()})",
        f"- **Machine:** {machine}",
        f"- {software}",
        f"- **Database:** {database}",
        f"- **Khaime:** {EMULATOR_NOTE}",
        "",
    ]
    targets = Table(["target (issue 5)", "wanted", "this run", "verdict"])
    for section in sections:
        for target in section.targets:
            targets.add(target.what, target.target, target.measured, target.verdict)
    if targets.rows:
        lines += ["## Where we stand", "", targets.render(), ""]
    for section in sections:
        lines += [section.render()]
    return "\n".join(lines).rstrip() + "\n"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _psycopg() -> str:
    try:
        import psycopg

        return f"psycopg {psycopg.__version__}"
    except ImportError:
        return "no psycopg"


def _git_head() -> str:
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "khaime_django"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ).stdout.strip()
        return head + (" + uncommitted changes in khaime_django/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"

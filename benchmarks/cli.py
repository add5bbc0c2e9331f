"""The runner: pick the database, start the emulator, run the measurements, write RESULTS.md."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .harness import FULL, QUICK, Context, Section

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "RESULTS.md"
QUICK_OUTPUT = HERE / "RESULTS-quick.md"

#: name -> module, in the order they run and are reported.
MEASUREMENTS = {
    "checkout": "benchmarks.checkout",
    "success": "benchmarks.success_return",
    "webhook": "benchmarks.webhook",
    "background": "benchmarks.background",
    "admin": "benchmarks.admin_scale",
    "sync": "benchmarks.sync_offline",
    "memory": "benchmarks.memory",
    "quota": "benchmarks.quota",
    "profile": "benchmarks.where_time_goes",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK") == "1",
        help="smoke run with small sizes (also BENCH_QUICK=1); writes RESULTS-quick.md",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated subset of: {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument("--output", type=Path, help="where to write the report")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()] or list(MEASUREMENTS)
    unknown = set(only) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    output = args.output or (QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT)
    command = "python -m benchmarks" + (
        "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    )

    database_url, postgres_problem = _choose_database()
    os.environ["BENCH_DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from . import db, report
    from .emulator_process import RemoteEmulator

    call_command("migrate", verbosity=0, interactive=False)
    started = time.time()
    load_before = os.getloadavg()
    with RemoteEmulator(port=0, webhook_url=None) as emulator:
        # Loopback only (RemoteEmulator refuses anything else); children read it from the environment.
        settings.KHAIME = {**settings.KHAIME, "API_BASE_URL": emulator.api_base_url}
        os.environ["BENCH_KHAIME_API_BASE_URL"] = emulator.api_base_url
        ctx = Context(
            sizes=sizes,
            emulator=emulator,
            postgres=not postgres_problem,
            postgres_problem=postgres_problem,
            database_label=f"{db.server_version()} at {db.safe_label(database_url)}",
            database_url=database_url,
            env={**os.environ},
        )
        sections: list[Section] = []
        for name in only:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            load = os.getloadavg()[0]
            section = _run_one(name, ctx)
            section.notes.append(
                f"<sub>Took {time.perf_counter() - t0:.0f} s; 1-minute load average "
                f"{load:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs: above "
                f"that, something else wanted them too).</sub>"
            )
            sections.append(section)
            print(
                f"[bench] {name} done in {time.perf_counter() - t0:.1f}s",
                file=sys.stderr,
                flush=True,
            )
    text = report.render(
        sections,
        ctx=ctx,
        command=command,
        started=started,
        elapsed=time.time() - started,
        load_before=load_before,
        load_after=os.getloadavg(),
        quick=args.quick,
    )
    output.write_text(text)
    print(f"[bench] wrote {output}", file=sys.stderr)
    return 0


def _run_one(name: str, ctx: Context) -> Section:
    module = importlib.import_module(MEASUREMENTS[name])
    try:
        return module.run(ctx)
    except Exception:
        # One broken measurement must not cost the others' numbers; the report shows the error.
        traceback.print_exc()
        section = Section(getattr(module, "TITLE", name))
        section.skipped = "the measurement failed:\n\n```\n" + traceback.format_exc(limit=6).strip() + "\n```"
        return section


def _choose_database() -> tuple[str, str]:
    """The bench database URL, and why PostgreSQL is unusable ("" when it is fine)."""
    from .db import postgres_problem
    from .harness import DEFAULT_BENCH_DATABASE_URL

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_BENCH_DATABASE_URL)
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        return url, f"BENCH_DATABASE_URL is not PostgreSQL ({url.split(':', 1)[0]})"
    problem = postgres_problem(url)
    if not problem:
        return url, ""
    fallback = "sqlite:///" + os.path.join(tempfile.mkdtemp(prefix="khaime-bench-"), "bench.sqlite3")
    print(
        f"\n[bench] PostgreSQL is not reachable at {url}:\n"
        f"[bench]   {problem}\n"
        "[bench] Start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) or set BENCH_DATABASE_URL.\n"
        "[bench] Continuing on SQLite: webhook, admin and sync, which the issue asks for on PostgreSQL,\n"
        "[bench] are skipped, and RESULTS.md says so.\n",
        file=sys.stderr,
    )
    return fallback, problem

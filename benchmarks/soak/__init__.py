"""``make soak``: the whole shop as production runs it, under load and faults, then a ledger check.

``python -m benchmarks.soak`` creates a fresh PostgreSQL database, starts the emulator with faults
and the demo under gunicorn (several worker processes), drives concurrent buyers through real
HTTP as browsers without JavaScript do, kills a worker and drops the app's database connections
mid-run, settles (webhook retries, one ``khaime_sync``), then checks the local ledger against the
emulator's own truth and writes ``benchmarks/SOAK.md``. It exits non-zero when an invariant fails.

One module per part, each pluggable by a list:

- ``scenarios.SCENARIOS``: what a buyer does (pay, decline, cancel, ...), with weights;
- ``chaos.plan()``: the faults injected during the run (kill -9 a worker, drop connections);
- ``invariants.INVARIANTS``: the checks of the settled ledger against the emulator's truth;
- ``truth.read_truth``: the one place that reads what the emulator knows.

Nothing here imports Django at import time except ``ledger`` (imported once the database exists).
"""

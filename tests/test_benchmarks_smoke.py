"""`make bench` must not rot silently: one cheap measurement, a few iterations, in-process.

Nothing here is timed or compared: the benchmarks report numbers, they never fail on them.
"""

import pytest

from benchmarks import success_return
from benchmarks.harness import SMOKE, Context


@pytest.mark.django_db
def test_success_return_benchmark_produces_its_table(khaime_emulator):
    section = success_return.run(Context(sizes=SMOKE, emulator=khaime_emulator))

    assert not section.skipped
    text = section.render()
    assert "| variant | n | median ms | p95 ms |" in text
    assert [row[0] for row in section.tables[0].rows] == [
        "floor",
        "ours: paid",
        "ours: still pending",
    ]
    assert all(row[1] == str(SMOKE.return_rounds) for row in section.tables[0].rows)
    assert section.targets and section.targets[0].what.startswith("SQL per success return")


@pytest.mark.django_db(transaction=True)
def test_quota_benchmark_counts_one_request_per_paid_purchase_when_webhooks_work(khaime_emulator, settings):
    from benchmarks import quota

    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_SECRETS": ["whsec_smoke"]}
    khaime_emulator.configure(webhook_url=None)
    section = quota.run(Context(sizes=SMOKE, emulator=khaime_emulator))

    assert not section.skipped
    rows = {row[0]: row for row in section.tables[0].rows}
    assert [row[3] for row in rows.values()] == ["1.00", "1.00", "2.00"]
    assert section.targets[0].met is True

"""Installed in the task worker processes of tests/integration/test_task_workers.py (through
KHAIME_TEST_JOURNAL): every khaime signal a worker sends, and every apply it starts, is appended
to the journal file as one line, so the test counts signals across processes. While the file
``<journal>.slow`` exists, each apply sleeps inside its transaction (for the test that kills a
worker mid-task)."""

from __future__ import annotations

import os
import time

from django.apps import AppConfig
from django.conf import settings


def write(line: str) -> None:
    # O_APPEND: each line lands whole, whichever worker writes it.
    fd = os.open(settings.KHAIME_TEST_JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # RQ runs each job in a forked work horse: its parent is the worker.
        os.write(fd, f"{line} {os.getpid()} {os.getppid()}\n".encode())
    finally:
        os.close(fd)


class WorkerJournal(AppConfig):
    name = "tests.worker_journal"
    label = "khaime_test_worker_journal"

    def ready(self):
        from khaime_django import signals
        from khaime_django.services import inbox

        for name in dir(signals):
            signal = getattr(signals, name)
            if isinstance(signal, signals.Signal):

                def receiver(sender, _name=name, **kwargs):
                    instance = kwargs.get("session")
                    write(f"signal {_name} {getattr(instance, 'pk', '-')}")

                signal.connect(receiver, weak=False)

        apply_payment = inbox.EVENT_HANDLERS["payment"]

        def journalled(record, event, source):
            write(f"apply {record.event_id}")
            slow = settings.KHAIME_TEST_JOURNAL + ".slow"
            while os.path.exists(slow):
                time.sleep(0.05)
            return apply_payment(record, event, source)

        inbox.EVENT_HANDLERS["payment"] = journalled

"""Races in tests: actions in real threads released together, each on its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import connection


def run_together(*actions: Callable[[], Any]) -> list:
    """Run each action in its own thread, all released at once; return their results in order
    (re-raises the first error)."""
    barrier = threading.Barrier(len(actions))
    results: list = [None] * len(actions)
    errors: list[BaseException] = []

    def run(index: int, action: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = action()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread below
            errors.append(error)
        finally:
            connection.close()  # each thread opened its own connection

    threads = [threading.Thread(target=run, args=(i, action)) for i, action in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    if errors:
        raise errors[0]
    return results


def run_at_once(count: int, action: Callable[[int], Any]) -> list:
    """``action(index)`` in ``count`` threads released together: :func:`run_together`."""
    return run_together(*(partial(action, index) for index in range(count)))

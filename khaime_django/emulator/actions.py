"""The scenario actions the control API and Python code can play, each listed once.

An action is a method of the emulator decorated with ``@session_action("name")`` or
``@subscription_action("name")``; the decorator records it here. The control API builds its
routes from these tables and calls the recorded method, so adding an action is one method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

Method = TypeVar("Method", bound=Callable)

SESSION_ACTIONS: dict[str, Callable] = {}
SUBSCRIPTION_ACTIONS: dict[str, Callable] = {}


def _recorder(table: dict[str, Callable]) -> Callable[[str], Callable[[Method], Method]]:
    def action(name: str) -> Callable[[Method], Method]:
        def record(method: Method) -> Method:
            if name in table:
                raise ValueError(f"action {name!r} is defined twice")
            table[name] = method
            return method

        return record

    return action


session_action = _recorder(SESSION_ACTIONS)
subscription_action = _recorder(SUBSCRIPTION_ACTIONS)


def pattern(table: dict[str, Callable]) -> str:
    """A regular-expression alternative of the table's action names, for a route."""
    return "|".join(sorted(table))

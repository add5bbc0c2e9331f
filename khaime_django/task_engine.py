"""The one home of the Tasks framework's imports: ``django.tasks`` on Django 6.x, the
``django-tasks`` backport (``pip install khaime-django[tasks]``) on Django 5.2.

Nothing else in khaime_django imports either, so the inline mode (the default) needs neither
installed, and the rest of the app reads the same on both Django versions. Without an engine,
:func:`task` still decorates (the function stays callable in-process); enqueueing raises
:class:`~khaime_django.exceptions.KhaimeConfigurationError`, and the system check
``khaime.E009`` reports task mode set without a usable backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .conf import khaime_settings
from .exceptions import KhaimeConfigurationError

ENGINE: str | None
try:  # Django 6.x
    from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task, task_backends  # type: ignore[import-not-found,unused-ignore]

    ENGINE = "django.tasks"
except ImportError:
    try:  # Django 5.2 with the backport
        from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task, task_backends  # type: ignore[no-redef,assignment,unused-ignore]

        ENGINE = "django_tasks"
    except ImportError:
        ENGINE = None
        DEFAULT_TASK_BACKEND_ALIAS = "default"
        task_backends = None  # type: ignore[assignment,unused-ignore]

        def task(function: Callable | None = None, **options: Any) -> Any:  # type: ignore[no-redef,misc,unused-ignore]
            """``@task`` without an engine: the function is kept, enqueueing explains what is missing."""
            if function is None:
                return lambda f: UnavailableTask(f)
            return UnavailableTask(function)


#: Backends that take a task and never run it (Django's test double).
NEVER_RUNS = frozenset({"DummyBackend"})
#: Backends whose enqueue() is an INSERT in the project's database: enqueued in the transaction
#: that records the event, both rows commit together (one commit instead of two).
ENQUEUES_IN_DATABASE = frozenset({"DatabaseBackend"})
#: Backends that run the task inside ``enqueue()``, in the request that enqueued it.
RUNS_IN_PROCESS = frozenset({"ImmediateBackend"})


class UnavailableTask:
    """What :func:`task` returns when neither ``django.tasks`` nor ``django_tasks`` is importable."""

    def __init__(self, func: Callable):
        self.func = func

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def using(self, **options: Any) -> UnavailableTask:
        return self

    def enqueue(self, *args: Any, **kwargs: Any) -> Any:
        raise KhaimeConfigurationError(missing_engine())


def missing_engine() -> str:
    return (
        "KHAIME['WEBHOOK_PROCESSING'] = 'task' needs Django's Tasks framework: Django 6.x, or on Django 5.2 "
        "`pip install khaime-django[tasks]` (the django-tasks backport) with 'django_tasks' in INSTALLED_APPS."
    )


def backend_alias() -> str:
    return str(khaime_settings.TASK_BACKEND or DEFAULT_TASK_BACKEND_ALIAS)


def get_backend(alias: str | None = None) -> Any:
    """The configured task backend khaime-django enqueues on (``KHAIME["TASK_BACKEND"]``)."""
    if task_backends is None:
        raise KhaimeConfigurationError(missing_engine())
    return task_backends[alias or backend_alias()]


def enqueue(task_: Any, *args: Any) -> Any:
    """Enqueue ``task_`` with positional JSON arguments on KHAIME's backend and queue."""
    return bound(task_).enqueue(*args)


def bound(task_: Any) -> Any:
    """``task_`` bound to KHAIME's backend and queue."""
    return _bound(task_, backend_alias(), khaime_settings.TASK_QUEUE or "")


@functools.lru_cache(maxsize=64)
def _bound(task_: Any, backend: str, queue: str) -> Any:
    """``task_.using(...)`` for a backend and queue, made once (it copies the task each time)."""
    options: dict[str, Any] = {"backend": backend}
    if queue:
        options["queue_name"] = queue
    return task_.using(**options)


def backend_problem() -> str | None:
    """Why KHAIME's task backend cannot run khaime-django's tasks in the background, or None."""
    if ENGINE is None:
        return missing_engine()
    alias = backend_alias()
    try:
        backend = get_backend(alias)
    except Exception as error:  # noqa: BLE001 - InvalidTaskBackend(Error), or whatever a backend's __init__ raises
        return f"the task backend {alias!r} cannot be loaded ({error}); configure it in settings.TASKS"
    name = type(backend).__name__
    if name in NEVER_RUNS:
        return f"the task backend {alias!r} is {name}, which stores tasks and never runs them"
    queue = khaime_settings.TASK_QUEUE
    if queue and getattr(backend, "queues", None) and queue not in backend.queues:
        queues = sorted(backend.queues)
        return f"KHAIME['TASK_QUEUE'] {queue!r} is not one of the queues of task backend {alias!r}: {queues}"
    return None


def enqueues_in_database(using: str) -> bool:
    """True when enqueueing on KHAIME's backend writes a row to database ``using`` (the database
    backend): the enqueue can then join the transaction that records the event."""
    try:
        backend = get_backend()
    except Exception:  # noqa: BLE001 - backend_problem() reports why it cannot load
        return False
    if type(backend).__name__ not in ENQUEUES_IN_DATABASE:
        return False
    from django.apps import apps
    from django.db import router

    try:
        model = apps.get_model("django_tasks_database", "DBTaskResult")
    except LookupError:
        return False
    return router.db_for_write(model) == using


def runs_in_process() -> bool:
    """True when the configured backend runs tasks inside enqueue() (no worker, no queue)."""
    try:
        return type(get_backend()).__name__ in RUNS_IN_PROCESS
    except Exception:  # noqa: BLE001 - backend_problem() reports why it cannot load
        return False

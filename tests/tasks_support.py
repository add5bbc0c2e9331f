"""Task mode in tests: which engine this Django has, and settings for a backend."""

from __future__ import annotations

from django.conf import settings

#: "django.tasks" on Django 6.x, "django_tasks" (the backport) on 5.2.
TASKS_MODULE = settings.TASKS_MODULE
IMMEDIATE = f"{TASKS_MODULE}.backends.immediate.ImmediateBackend"
DUMMY = f"{TASKS_MODULE}.backends.dummy.DummyBackend"
DATABASE = "django_tasks_db.DatabaseBackend"
RQ = "django_tasks_rq.RQBackend"


def task_mode(settings, backend: str = IMMEDIATE, **khaime):
    """Switch ``settings`` (pytest-django's fixture) to task mode on ``backend``."""
    settings.TASKS = {"default": {"BACKEND": backend, **({"QUEUES": ["default", "khaime"]} if backend == RQ else {})}}
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_PROCESSING": "task", **khaime}

"""The test suite's own settings (setup.cfg's DJANGO_SETTINGS_MODULE), independent of the demo's.

The suite drives the demo shop as a merchant site would (integration and browser tests), so its
structure (demo_project/site.py) is installed; nothing of the demo's environment or .env is
read. Khaime itself is never called: ``tests/conftest.py`` points ``KHAIME`` at a stubbed host for every test, and the
integration tests at the emulator on loopback.
"""

import environ

from demo_project.site import *  # noqa: F403 - the demo shop's apps, middleware, templates, URLs

env = environ.Env()

DEBUG = False
SECRET_KEY = "tests-only-insecure-secret-key"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

# SQLite in memory unless DATABASE_URL names another (the PostgreSQL pass, tox's postgres envs).
DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:///:memory:")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Replaced for every test by tests/conftest.py (khaime_test_settings); this is what module-level
# code sees before that fixture runs. A host nothing answers for: never the real Khaime.
KHAIME = {
    "API_KEY": "pk_sandbox_test_0123456789",
    "API_BASE_URL": "https://api.khaime.test/api/v1/partner",
    "WEBHOOK_SECRETS": ["whsec_test_secret"],
}

# Task mode's tests choose their backend per test (tests/tasks_support.py); this default runs a
# task inside enqueue(), so nothing enqueued by a test outlives it.
TASKS = {"default": {"BACKEND": f"{TASKS_MODULE}.backends.immediate.ImmediateBackend"}}  # noqa: F405
# RQ's queues, for the RQ tests: a database of the local Redis no one else uses.
KHAIME_TEST_REDIS_URL = env("KHAIME_TEST_REDIS_URL", default="redis://127.0.0.1:6379/7")
RQ_QUEUES = {"default": {"URL": KHAIME_TEST_REDIS_URL}, "khaime": {"URL": KHAIME_TEST_REDIS_URL}}

# The task worker processes of tests/integration/test_task_workers.py: their backend, and the
# journal they write their signals to (tests/worker_journal.py).
if env("KHAIME_TEST_TASKS_BACKEND", default=""):
    TASKS = {"default": {"BACKEND": env("KHAIME_TEST_TASKS_BACKEND"), "QUEUES": ["default", "khaime"]}}
KHAIME_TEST_JOURNAL = env("KHAIME_TEST_JOURNAL", default="")
if KHAIME_TEST_JOURNAL:
    INSTALLED_APPS = [*INSTALLED_APPS, "tests.worker_journal.WorkerJournal"]  # noqa: F405

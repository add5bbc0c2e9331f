"""Settings for ``make bench``: the demo site, plus the naive integration, on the bench database.

The database is ``BENCH_DATABASE_URL`` (default: PostgreSQL ``bench`` on 127.0.0.1), not
``DATABASE_URL``: the benchmarks truncate and bulk-load tables, and ``DATABASE_URL`` usually
names a database someone cares about (the demo's, or the test pass's).
"""

import os

import environ

from benchmarks.harness import DEFAULT_BENCH_DATABASE_URL
from demo_project.settings import *
from demo_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks.naive"]
ROOT_URLCONF = "benchmarks.urls"

# Production-like: no query log kept in memory (it would skew the memory measurement), cached
# template loader on.
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
DATABASES = {"default": environ.Env.db_url_config(os.environ.get("BENCH_DATABASE_URL", DEFAULT_BENCH_DATABASE_URL))}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # only the admin user is created

# Task mode (section 3b): the database backend, and RQ on the local Redis (a database of its own).
TASKS = {
    "default": {"BACKEND": "django_tasks_db.DatabaseBackend"},
    "rq": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]},
}
RQ_QUEUES = {"default": {"URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")}}

# Never the real Khaime: the runner points this at the emulator it starts on loopback (and
# refuses anything else); until then it points at a closed loopback port.
KHAIME = {
    "API_KEY": "pk_sandbox_bench_0123456789",
    "API_BASE_URL": os.environ.get("BENCH_KHAIME_API_BASE_URL", "http://127.0.0.1:9/api/v1/partner"),
    "WEBHOOK_SECRETS": ["whsec_bench_secret"],
    # The success-return section measures the return that asks Khaime (no webhook is coming in
    # the bench), so it does not first wait for one; and its thousands of returns an hour are
    # not limited by the page-load budget a shop needs against strangers.
    "RETURN_WEBHOOK_WAIT": 0,
    "REFRESH_BUDGET_PER_HOUR": 10**9,
}

# Transitions log at INFO; a console line per payment would time the terminal, not the app.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "khaime_django": {"handlers": ["console"], "level": "WARNING"},
        "django.request": {
            "handlers": ["console"],
            "level": "ERROR",
            "propagate": False,
        },
    },
}

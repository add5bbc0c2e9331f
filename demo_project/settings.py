"""Settings of the demo merchant site, read from the environment (or a .env file) with django-environ.

With no KHAIME_API_KEY set, the demo talks to the offline emulator on 127.0.0.1:8765.

Its SECRET_KEY and webhook secret have defaults published in this file, good for a developer's
machine only: with DEBUG off they must come from the environment, or the demo refuses to start
(anyone could otherwise sign a buy button at any price or forge a payment.succeeded webhook).
"""

from typing import NoReturn

import environ
from django.core.exceptions import ImproperlyConfigured

from demo_project.site import *  # noqa: F403 - apps, middleware, templates, URLs
from demo_project.site import BASE_DIR
from khaime_django.defaults import EMULATOR_WEBHOOK_SECRET

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

#: Published here, so accepted only with DEBUG on.
PUBLISHED_SECRET_KEY = "demo-only-insecure-secret-key-change-me-in-production"  # noqa: S105
PUBLISHED_WEBHOOK_SECRETS = (EMULATOR_WEBHOOK_SECRET, "whsec_demo_emulator_secret")


def _refuse_published(name: str, why: str) -> NoReturn:
    raise ImproperlyConfigured(
        f"{name} must be set in the environment (or .env) when DEBUG is off: the demo's default is "
        f"published in demo_project/settings.py, and with it {why}. Set {name}, or DEBUG=True for local development."
    )


SECRET_KEY = env("SECRET_KEY", default="") or (PUBLISHED_SECRET_KEY if DEBUG else "")
if not DEBUG and SECRET_KEY in ("", PUBLISHED_SECRET_KEY):
    _refuse_published("SECRET_KEY", "anyone can sign a buy button at any price")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Keep connections between requests, but check a kept one before a request uses it: a connection
# the server dropped meanwhile (a restart, a failover, a proxy's idle timeout) is then replaced
# instead of failing the buyer's checkout or return page.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

EMULATOR_API_BASE_URL = "http://127.0.0.1:8765/api/v1/partner"
_real_key = env("KHAIME_API_KEY", default="")
# The emulator signs with the first of these (manage.py khaime_emulator).
_webhook_secrets = env.list("KHAIME_WEBHOOK_SECRET", default=[]) or ([EMULATOR_WEBHOOK_SECRET] if DEBUG else [])
if not DEBUG and (not _webhook_secrets or set(_webhook_secrets) & set(PUBLISHED_WEBHOOK_SECRETS)):
    _refuse_published("KHAIME_WEBHOOK_SECRET", "anyone can sign a payment.succeeded webhook")
KHAIME = {
    # With a real key the demo talks to Khaime itself; without one, to the offline emulator.
    "API_KEY": _real_key or "pk_sandbox_demo_emulator_key",
    "API_BASE_URL": env(
        "KHAIME_API_BASE_URL",
        default="https://api.khaime.com/api/v1/partner" if _real_key else EMULATOR_API_BASE_URL,
    ),
    "WEBHOOK_SECRETS": _webhook_secrets,
    "TIMEOUT": (3.05, 10),
    "MAX_RETRIES": 2,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"khaime_django": {"handlers": ["console"], "level": env("KHAIME_LOG_LEVEL", default="INFO")}},
}

# `KHAIME_WEBHOOK_PROCESSING=task make demo`: webhooks are recorded and answered at once, and
# applied by a `manage.py db_worker` that demo_serve starts beside the shop (docs/background.md).
KHAIME["WEBHOOK_PROCESSING"] = env("KHAIME_WEBHOOK_PROCESSING", default="inline")
if "django_tasks_db" in TASK_APPS:  # noqa: F405 - from demo_project.site
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

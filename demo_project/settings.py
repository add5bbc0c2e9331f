"""Settings of the demo merchant site, read from the environment (or a .env file) with django-environ.

With no KHAIME_API_KEY set, the demo talks to the offline emulator on 127.0.0.1:8765.
"""

import environ

from demo_project.site import *  # noqa: F403 - apps, middleware, templates, URLs
from demo_project.site import BASE_DIR

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="demo-only-insecure-secret-key-change-me-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}

EMULATOR_API_BASE_URL = "http://127.0.0.1:8765/api/v1/partner"
_real_key = env("KHAIME_API_KEY", default="")
KHAIME = {
    # With a real key the demo talks to Khaime itself; without one, to the offline emulator.
    "API_KEY": _real_key or "pk_sandbox_demo_emulator_key",
    "API_BASE_URL": env(
        "KHAIME_API_BASE_URL",
        default="https://api.khaime.com/api/v1/partner" if _real_key else EMULATOR_API_BASE_URL,
    ),
    "WEBHOOK_SECRETS": env.list("KHAIME_WEBHOOK_SECRET", default=["whsec_demo_emulator_secret"]),
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

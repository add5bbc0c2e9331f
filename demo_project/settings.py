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
# Keep connections between requests, but check a kept one before a request uses it: a connection
# the server dropped meanwhile (a restart, a failover, a proxy's idle timeout) is then replaced
# instead of failing the buyer's checkout or return page.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

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

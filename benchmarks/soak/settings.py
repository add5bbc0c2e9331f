"""The demo's settings as a production deployment would set them, for the soak's gunicorn workers.

DEBUG off, persistent connections with health checks, errors logged to the worker's stderr.
The database comes from DATABASE_URL (the soak's own database); SOAK_DB_APPLICATION_NAME names
the connections, so the soak can tell the app's connections from its own when it drops them.
"""

import os

from demo_project.settings import *  # noqa: F403
from demo_project.settings import DATABASES, KHAIME

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

DATABASES["default"]["CONN_MAX_AGE"] = 60
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = os.environ.get(
    "SOAK_DB_APPLICATION_NAME", "khaime-soak-app"
)

# Production names its own address rather than trusting each request's Host header.
KHAIME = {**KHAIME, "SITE_URL": os.environ.get("SOAK_SITE_URL", "")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        "khaime_django": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}

"""The demo shop's structure: apps, middleware, templates, URLs. No environment is read here,
so both the demo's settings and the test suite's (tests/settings.py) build on it."""

from importlib.util import find_spec
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "khaime_django",
    "demo_project.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "demo_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "demo_project.shop.context_processors.khaime_mode",
            ]
        },
    }
]
WSGI_APPLICATION = "demo_project.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# The demo has no profile page: after logging in without a ?next=, go to the products.
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# Django's Tasks framework, when installed (khaime-django[tasks]; docs/background.md): the
# django-tasks backport's app on Django 5.2 (Django 6 has django.tasks built in), the database
# backend's app (its table and `manage.py db_worker`) and django-rq's (RQ workers). Absent, the
# demo and the suite run inline, as a merchant without the extra does.
_HAS_DJANGO_TASKS = find_spec("django.tasks") is not None
TASK_APPS = [
    app
    for app, present in (
        ("django_tasks", not _HAS_DJANGO_TASKS and find_spec("django_tasks") is not None),
        ("django_tasks_db", find_spec("django_tasks_db") is not None),
        ("django_rq", find_spec("django_rq") is not None),
    )
    if present
]
INSTALLED_APPS += TASK_APPS
TASKS_MODULE = "django.tasks" if _HAS_DJANGO_TASKS else "django_tasks"

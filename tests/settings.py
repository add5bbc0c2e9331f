"""The test suite's own settings (setup.cfg's DJANGO_SETTINGS_MODULE), independent of the demo's.

The suite drives the demo shop as a merchant site would (integration and browser tests), so its
app and URLs are installed; everything else is the minimum khaime-django needs. Khaime itself is
never called: ``tests/conftest.py`` points ``KHAIME`` at a stubbed host for every test, and the
integration tests at the emulator on loopback.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = False
SECRET_KEY = "tests-only-insecure-secret-key"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

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

# SQLite in memory unless DATABASE_URL names another (the PostgreSQL pass, tox's postgres envs).
DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:///:memory:")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Replaced for every test by tests/conftest.py (khaime_test_settings); this is what module-level
# code sees before that fixture runs. A host nothing answers for: never the real Khaime.
KHAIME = {
    "API_KEY": "pk_sandbox_test_0123456789",
    "API_BASE_URL": "https://api.khaime.test/api/v1/partner",
    "WEBHOOK_SECRETS": ["whsec_test_secret"],
}

# Appended to the settings.py that `django-admin startproject shop` wrote, by .ci/wheel-check:
# what the README's Install section tells a merchant to add, and nothing from this repository.

INSTALLED_APPS += ["khaime_django"]  # noqa: F821 - defined by the settings this is appended to
TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]  # noqa: F821
STATIC_ROOT = BASE_DIR / "staticfiles"  # noqa: F821

KHAIME = {
    "API_KEY": "pk_sandbox_wheel_check",
    "WEBHOOK_SECRETS": ["whsec_wheel_check"],
}

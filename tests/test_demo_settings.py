"""The demo's published secrets are refused outside DEBUG (issue 10, item 12): each case starts
the demo's settings in a fresh interpreter with only the environment it names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from khaime_django.defaults import EMULATOR_WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED_SECRET_KEY = "demo-only-insecure-secret-key-change-me-in-production"
OWN = {"SECRET_KEY": "a-long-random-production-secret-key-0123456789", "KHAIME_WEBHOOK_SECRET": "whsec_own"}
SHOW = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.SECRET_KEY); print(settings.KHAIME['WEBHOOK_SECRETS'])"
)


def start_demo(code: str = SHOW, **environment: str) -> subprocess.CompletedProcess:
    kept = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env = {**kept, "DJANGO_SETTINGS_MODULE": "demo_project.settings", "DATABASE_URL": "sqlite:///:memory:"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**env, **environment}, capture_output=True, text=True, timeout=60
    )


def test_with_debug_on_the_published_defaults_are_used():
    started = start_demo(DEBUG="True")
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines() == [PUBLISHED_SECRET_KEY, str([EMULATOR_WEBHOOK_SECRET])]


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"KHAIME_WEBHOOK_SECRET": "whsec_own"}, "SECRET_KEY"),
        ({"SECRET_KEY": PUBLISHED_SECRET_KEY, "KHAIME_WEBHOOK_SECRET": "whsec_own"}, "SECRET_KEY"),
        ({"SECRET_KEY": OWN["SECRET_KEY"]}, "KHAIME_WEBHOOK_SECRET"),
        ({"SECRET_KEY": OWN["SECRET_KEY"], "KHAIME_WEBHOOK_SECRET": EMULATOR_WEBHOOK_SECRET}, "KHAIME_WEBHOOK_SECRET"),
        (
            {"SECRET_KEY": OWN["SECRET_KEY"], "KHAIME_WEBHOOK_SECRET": "whsec_demo_emulator_secret"},
            "KHAIME_WEBHOOK_SECRET",
        ),
    ],
    ids=["no-secret-key", "published-secret-key", "no-webhook-secret", "emulator-secret", "old-demo-secret"],
)
def test_with_debug_off_a_missing_or_published_secret_stops_the_start(environment, named):
    started = start_demo(DEBUG="False", KHAIME_API_KEY="pk_live_0123456789", **environment)
    assert started.returncode != 0
    assert "ImproperlyConfigured" in started.stderr
    assert f"{named} must be set in the environment" in started.stderr


def test_with_debug_off_and_own_secrets_the_demo_starts():
    started = start_demo(DEBUG="False", **OWN)
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines() == [OWN["SECRET_KEY"], "['whsec_own']"]


def test_live_key_on_the_emulator_base_url_fails_manage_py_check():
    started = start_demo(
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--tag', 'khaime'])",
        DEBUG="False",
        KHAIME_API_KEY="pk_live_0123456789",
        KHAIME_API_BASE_URL="http://127.0.0.1:8765/api/v1/partner",
        **OWN,
    )
    assert started.returncode != 0
    assert "khaime.E010" in started.stderr

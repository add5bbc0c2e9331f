"""pytest plugin: the ``khaime_emulator`` fixture.

Registered as a ``pytest11`` entry point, so pytest loads it in every project that installs
khaime-django. It therefore imports nothing from Django at import time; Django is touched only
inside the fixture, and only when pytest-django is active with configured settings.

One emulator serves the whole test session (starting one per test would cost a port and two
threads each time); ``reset()`` before and after every test gives each test a fresh one.
"""

from __future__ import annotations

import os
import sys

import pytest

from .server import Emulator

TEST_API_KEY = "pk_sandbox_emulator_test_key"


@pytest.fixture(scope="session")
def khaime_emulator_server():
    """The session-wide emulator behind ``khaime_emulator``; use that fixture instead."""
    emulator = Emulator(webhook_retry_delay=0.05, webhook_timeout=5.0, refund_delay=0.05)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def khaime_emulator(request, khaime_emulator_server):
    """A running, freshly reset ``Emulator``; Django's ``KHAIME`` settings point at it.

    Every scenario is a method of it: ``complete(session_id)``, ``renew_subscription(id)``,
    ``next_refund("hang")``, ``dashboard_refund(transaction_id)``, ``truth()``... (see
    docs/emulator.md for the full list).

    With pytest-django, ``settings.KHAIME`` gets the emulator's API base URL, a sandbox key and
    its webhook secret. When the test also uses ``live_server``, webhooks go to that server's
    ``khaime:webhook`` URL.
    """
    emulator = khaime_emulator_server
    emulator.reset()
    django_settings = _pytest_django_settings(request)
    if django_settings is not None:
        django_settings.KHAIME = {
            **(getattr(django_settings, "KHAIME", None) or {}),
            "API_BASE_URL": emulator.api_base_url,
            "API_KEY": TEST_API_KEY,
            "WEBHOOK_SECRETS": [emulator.config.webhook_secret],
        }
        from khaime_django.client import clear_holds

        clear_holds()  # a fresh Khaime: an earlier test's 429 holds nothing
        if "live_server" in request.fixturenames:
            from django.urls import reverse

            live_server = request.getfixturevalue("live_server")
            emulator.configure(webhook_url=live_server.url + reverse("khaime:webhook"))
    yield emulator
    # Drop deliveries still queued for this test, so they never reach the next test's server.
    emulator.reset()


def _pytest_django_settings(request):
    """pytest-django's ``settings`` fixture, or None when Django is not in play."""
    if not request.config.pluginmanager.hasplugin("django"):
        return None
    # pytest-django's own test: a settings module named, or settings configured in code.
    # Without either its `settings` fixture would skip the test instead of running it.
    django_conf = sys.modules.get("django.conf")
    configured = bool(os.environ.get("DJANGO_SETTINGS_MODULE")) or (
        django_conf is not None and django_conf.settings.configured
    )
    return request.getfixturevalue("settings") if configured else None

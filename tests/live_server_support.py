"""Fixtures for tests against the live demo shop: ``live_shop`` and ``webhook_gate``.

``live_shop`` is ``live_server`` made safe for concurrent requests on SQLite in memory.

With an in-memory SQLite test database, pytest-django hands the live server's request threads
the test's own database connection (the only way they can see the same database). One connection
cannot serve two requests at once: a webhook landing while the buyer's return page runs
interleaves their transactions ("cannot release savepoint - SQL statements in progress"). There,
and only there, requests are answered one at a time. On PostgreSQL nothing changes, so that
pass still runs webhooks and return pages concurrently, as production does.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.urls import reverse

from .webhook_receiver import WebhookReceiver


class _OneRequestAtATime:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # The whole body is built, and the response closed, inside the lock.
            response = self.app(environ, start_response)
            try:
                return list(response)
            finally:
                if hasattr(response, "close"):
                    response.close()


@pytest.fixture(name="live_shop")
def live_shop_fixture(live_server):
    """``live_server``, answering one request at a time when the test database is SQLite in memory."""
    shares_connection = any(conn.vendor == "sqlite" and conn.is_in_memory_db() for conn in connections.all())
    httpd = live_server.thread.httpd
    if shares_connection and not isinstance(httpd.get_app(), _OneRequestAtATime):
        # live_server lives for the whole session: wrap it once.
        httpd.set_app(_OneRequestAtATime(httpd.get_app()))
    return live_server


class WebhookGate(WebhookReceiver):
    """Stands between the emulator and the shop's webhook URL. Open, it passes each delivery on
    byte for byte and answers with the shop's answer; held, it keeps deliveries waiting until
    ``release()``, so a test decides whether the webhook lands before or after the buyer returns.
    """

    # Below the emulator's webhook timeout (5 s in the plugin), so a forgotten hold fails the
    # delivery instead of letting the emulator retry behind our back.
    MAX_HOLD = 4.0

    def __init__(self, target_url: str):
        super().__init__(forward_to=target_url, max_hold=self.MAX_HOLD, path="/webhook/")


@pytest.fixture(name="webhook_gate")
def webhook_gate_fixture(live_shop, khaime_emulator):
    """Route the emulator's webhooks through a ``WebhookGate`` to the shop's webhook URL."""
    gate = WebhookGate(live_shop.url + reverse("khaime:webhook"))
    khaime_emulator.configure(webhook_url=gate.url)
    yield gate
    gate.close()

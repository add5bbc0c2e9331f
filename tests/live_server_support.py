"""``live_server`` made safe for concurrent requests on SQLite in memory.

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
        httpd.set_app(_OneRequestAtATime(httpd.get_app()))  # live_server is per session: wrap once
    return live_server

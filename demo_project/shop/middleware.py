"""The demo's answer to a database connection dropped in the middle of one of its own pages."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from khaime_django.views import DATABASE_DROPPED

logger = logging.getLogger(__name__)

#: Seconds a browser or a monitor is told to wait before trying the page again.
RETRY_AFTER = 2


class DatabaseDroppedMiddleware:
    """A shop page whose database connection dropped mid-request (a restarted or failed-over
    server, a proxy's idle timeout) answers 503 with ``Retry-After`` and a "try again" page, as
    khaime_django's own pages do, instead of Django's bare 500. The next request gets a fresh
    connection (``CONN_HEALTH_CHECKS``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_DROPPED):
            return None
        logger.error("%s failed on the database: %s", request.path, exception)
        response = render(request, "shop/unavailable.html", {"reload_url": request.get_full_path()}, status=503)
        response["Retry-After"] = str(RETRY_AFTER)
        return response

"""The emulator's HTTP server: ``Emulator`` is the state of ``state.py`` served over HTTP.

Three areas share one port: Khaime's Partner API, the hosted checkout page, and the emulator's
own ``/_emulator`` control API. Each answers through the same ``EmulatorState`` methods that
Python code calls directly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qsl, urlsplit

from . import checkout, control_api, partner_api
from .routing import Request, Response, failure
from .state import EmulatorState

logger = logging.getLogger("khaime_django.emulator")

MAX_BODY_BYTES = 1024 * 1024

_AREAS = (
    (partner_api.PREFIX + "/", partner_api.handle),
    (checkout.PREFIX + "/", checkout.handle),
    (control_api.PREFIX + "/", control_api.handle),
)


class Emulator(EmulatorState):
    """An offline, stateful Khaime Partner API on a local port. Options: see ``EmulatorConfig``."""

    _server: _Server | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        config = self._config
        self._server = _Server((config.host, config.port), self)
        # A wildcard bind address is not one a browser can open: links use loopback instead.
        host = "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host
        self._base_url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="khaime-emulator-http",
            daemon=True,
        )
        self._thread.start()
        self._dispatcher.start(config.webhook_workers)
        self._running = True
        return self

    def stop(self) -> None:
        """Stop serving and delivering; queued webhooks and pending refunds are dropped.
        Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_idle_connections()
        server.server_close()
        if thread is not None:
            thread.join()
        with self._lock:
            self._cancel_timers()
            self._generation += 1
        self._dispatcher.stop()
        self._server = self._thread = None
        self._running = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def api_base_url(self) -> str:
        return self.base_url + partner_api.PREFIX


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, emulator: EmulatorState):
        self.emulator = emulator
        self.closing = False
        # Kept-alive connections and whether each is answering a request right now.
        self.connections: dict[socket.socket, bool] = {}
        self.connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def close_idle_connections(self) -> None:
        """After shutdown(): hang up on kept-alive connections waiting for their next request
        (one mid-request gets its answer, then is closed by _dispatch)."""
        self.closing = True
        with self.connections_lock:
            idle = [sock for sock, busy in self.connections.items() if not busy]
        for sock in idle:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone


class _RequestHandler(BaseHTTPRequestHandler):
    server_version = "KhaimeEmulator/1.0"
    # Keep-alive, like Khaime's own servers: a client's pooled connection is reused instead of a
    # new TCP connection per call. Every answer carries a Content-Length, which HTTP/1.1 needs.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm holds the
    # body back until the client's delayed ACK (~40 ms) on a reused connection.
    disable_nagle_algorithm = True
    # An idle kept-alive connection gives its thread back after this many seconds.
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections[self.connection] = False

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.pop(self.connection, None)
        super().finish()

    def _busy(self, busy: bool) -> None:
        with self.server.connections_lock:
            if self.connection in self.server.connections:
                self.server.connections[self.connection] = busy

    def do_GET(self):
        self._busy(True)
        try:
            self._dispatch()
        finally:
            if self.server.closing:
                self.close_connection = True
            self._busy(False)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        started = time.monotonic()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            # The unread body must not be taken for the next request on this connection.
            self.close_connection = True
            response = failure(400 if length < 0 else 413)
        else:
            url = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=url.path,
                query=dict(parse_qsl(url.query)),
                headers=self.headers,
                body=self.rfile.read(length) if length else b"",
            )
            try:
                response = _route(self.server.emulator, request)
            except Exception:
                logger.exception("emulator error on %s %s", self.command, self.path)
                response = failure(500, "Emulator error")
        if response.delay:
            time.sleep(response.delay)
        if response.drop:
            self.close_connection = True  # hang up: the client sees the connection close unanswered
        else:
            self._send(response)
        logger.info(
            '%s "%s %s" %d %dms',
            self.client_address[0],
            self.command,
            self.path,
            response.status,
            round((time.monotonic() - started) * 1000),
        )

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except ConnectionError:
            pass  # the client went away; nothing left to tell it

    def log_message(self, format, *args) -> None:
        # The one-line access log is written by _dispatch; keep http.server's own lines quiet.
        logger.debug(format, *args)


def _route(emulator: EmulatorState, request: Request) -> Response:
    for prefix, handle in _AREAS:
        if request.path.startswith(prefix) or request.path == prefix.rstrip("/"):
            return handle(emulator, request)
    return failure(404, "Not found")

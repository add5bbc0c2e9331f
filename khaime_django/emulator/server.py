"""The emulator: state, scenario actions, and the HTTP server that exposes them.

One ``Emulator`` owns the sessions, the events and the webhook dispatcher. All state changes go
through its methods under one lock, whether they come from the buyer's checkout page, the
``/_emulator`` control API or Python code, so each path behaves the same way.

``reset()`` restores the configuration the emulator was constructed with (not the library
defaults), so a server shared between tests keeps the options it was built for.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlsplit

from . import checkout, control_api, partner_api
from .config import BINDING_OPTIONS, EmulatorConfig, InvalidConfig
from .routing import Request, Response, failure
from .sessions import Session, SessionRequest, UnknownSession
from .timestamps import utcnow
from .webhooks import Event, WebhookDispatcher, payment_event

logger = logging.getLogger("khaime_django.emulator")

MAX_BODY_BYTES = 1024 * 1024

# action -> (event type, payment status in the event); "expire" sends no webhook.
_ACTION_EVENTS = {
    "complete": ("payment.succeeded", "succeeded"),
    "fail": ("payment.failed", "failed"),
    "refund": ("payment.refunded", "refunded"),
    "dispute": ("payment.disputed", "disputed"),
    "expire": None,
}

_AREAS = (
    (partner_api.PREFIX + "/", partner_api.handle),
    (checkout.PREFIX + "/", checkout.handle),
    (control_api.PREFIX + "/", control_api.handle),
)


@dataclass(frozen=True)
class Fault:
    """What the simulated faults decided for one Partner API request."""

    latency_ms: int = 0
    status: int | None = None
    message: str | None = None


class Emulator:
    """An offline, stateful Khaime Partner API. Options: see ``EmulatorConfig``."""

    def __init__(self, **options):
        self._initial_config = EmulatorConfig(**options)
        self._config = self._initial_config
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._events: list[Event] = []
        self._random = random.Random(self._config.seed)
        self._rate_second = 0
        self._rate_count = 0
        self._dispatcher = WebhookDispatcher(self._config.seed)
        self._server: _Server | None = None
        self._base_url: str | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

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
        self._dispatcher.start()
        return self

    def stop(self) -> None:
        """Stop serving and delivering; queued webhooks are dropped. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_idle_connections()
        server.server_close()
        if thread is not None:
            thread.join()
        self._dispatcher.stop()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Where the emulator listens; kept after stop() for requests still being answered."""
        if self._base_url is None:
            raise RuntimeError("the emulator has not been started; call start() first")
        return self._base_url

    @property
    def api_base_url(self) -> str:
        return self.base_url + partner_api.PREFIX

    # --- configuration ---

    @property
    def config(self) -> EmulatorConfig:
        return self._config

    def configure(self, **options) -> None:
        """Change options at run time; sessions already created keep their fees and expiry."""
        with self._lock:
            new = self._config.replace(**options)
            if self._server is not None:
                moved = {name for name in BINDING_OPTIONS if getattr(new, name) != getattr(self._config, name)}
                if moved:
                    raise InvalidConfig({name: "cannot change while the server is running" for name in moved})
            self._config = new
            if "seed" in options:
                self._random.seed(new.seed)
                self._dispatcher.reseed(new.seed)

    def reset(self) -> None:
        """Forget sessions, events and deliveries; restore the constructor's configuration."""
        with self._lock:
            self._sessions.clear()
            self._events.clear()
            self._config = self._initial_config
            self._random.seed(self._config.seed)
            self._rate_second = self._rate_count = 0
            self._dispatcher.reset(self._config.seed)

    # --- inspection (every answer is a copy) ---

    def sessions(self) -> list[dict]:
        with self._lock:
            now = utcnow()
            return [session.snapshot(now) for session in self._sessions.values()]

    def session(self, session_id: str) -> dict:
        with self._lock:
            return self._get(session_id).snapshot(utcnow())

    def events(self) -> list[dict]:
        with self._lock:
            return [event.envelope() for event in self._events]

    def deliveries(self) -> list[dict]:
        """Every webhook delivery attempt, in the order they were made."""
        return self._dispatcher.attempts()

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> None:
        """Block until ``count`` deliveries finished (succeeded, or used their last attempt).

        A delivery is one copy of one event: with ``duplicate_webhooks`` each event makes two.
        Raises ``TimeoutError`` when they have not finished within ``timeout`` seconds.
        """
        self._dispatcher.wait_for_finished(count, timeout)

    # --- scenario actions: the buyer's or Khaime's side of a session ---

    def complete(self, session_id: str) -> dict:
        return self._act(session_id, "complete")

    def fail(self, session_id: str) -> dict:
        return self._act(session_id, "fail")

    def expire(self, session_id: str) -> dict:
        return self._act(session_id, "expire")

    def refund(self, session_id: str) -> dict:
        return self._act(session_id, "refund")

    def dispute(self, session_id: str) -> dict:
        return self._act(session_id, "dispute")

    # --- used by the Partner API ---

    def create_session(self, request: SessionRequest, mode: str) -> dict:
        with self._lock:
            session = Session.create(
                request,
                mode=mode,
                base_url=self.base_url,
                config=self._config,
                now=utcnow(),
            )
            self._sessions[session.session_id] = session
            return session.created_response()

    def retrieve_session(self, session_id: str) -> dict:
        with self._lock:
            return self._get(session_id).retrieved_response(utcnow())

    def draw_fault(self) -> Fault:
        """Decide the simulated latency and failure of one Partner API request."""
        with self._lock:
            config = self._config
            limit = config.rate_limit_per_second
            if limit is not None:
                second = int(time.time())
                if second != self._rate_second:
                    self._rate_second, self._rate_count = second, 0
                self._rate_count += 1
                if self._rate_count > limit:
                    return Fault(config.latency_ms, 429, "Rate limit exceeded")
            # Draw only when failures are on, so a seed gives the same sequence whatever else ran.
            if config.fail_rate and self._random.random() < config.fail_rate:
                return Fault(
                    config.latency_ms,
                    config.fail_status,
                    "Simulated failure (emulator fail_rate)",
                )
            return Fault(config.latency_ms)

    # --- internals ---

    def _get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownSession(session_id) from None

    def _act(self, session_id: str, action: str) -> dict:
        with self._lock:
            session = self._get(session_id)
            now = utcnow()
            # Raises TransitionNotAllowed, having changed nothing, when not allowed now.
            getattr(session, action)(now)
            announced = _ACTION_EVENTS[action]
            if announced is not None:
                event_type, payment_status = announced
                self._emit(payment_event(session, event_type, payment_status, now))
            return session.snapshot(now)

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        if self._config.webhook_url:
            self._dispatcher.enqueue(event, self._config)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, emulator: Emulator):
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
            request = Request(
                method=self.command,
                path=urlsplit(self.path).path,
                headers=self.headers,
                body=self.rfile.read(length) if length else b"",
            )
            try:
                response = _route(self.server.emulator, request)
            except Exception:
                logger.exception("emulator error on %s %s", self.command, self.path)
                response = failure(500, "Emulator error")
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


def _route(emulator: Emulator, request: Request) -> Response:
    for prefix, handle in _AREAS:
        if request.path.startswith(prefix) or request.path == prefix.rstrip("/"):
            return handle(emulator, request)
    return failure(404, "Not found")

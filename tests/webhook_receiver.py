"""The one hand-written webhook endpoint the tests use: a loopback HTTP server (port 0) that
records every POST and either answers it itself (with the statuses queued by ``answer_with``,
200 once they run out) or forwards it byte for byte to ``forward_to`` and answers with that
answer. ``hold()`` keeps deliveries waiting until ``release()`` (at most ``max_hold`` seconds;
a forwarded one held longer is answered 504), so a test decides when a webhook lands. No Django
needed: tests/emulator/conftest.py can use it as its receiver too.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

#: The headers Khaime's webhook carries, passed on when forwarding.
FORWARDED = (
    "Content-Type",
    "User-Agent",
    "X-Khaime-Signature",
    "X-Khaime-Event",
    "X-Khaime-Event-Id",
    "X-Khaime-Api-Version",
)


class WebhookReceiver:
    def __init__(self, *, forward_to: str | None = None, max_hold: float = 5.0, path: str = "/payments/webhook/"):
        self.forward_to = forward_to
        self.max_hold = max_hold
        self.path = path
        self.received: list[dict] = []
        self._statuses: list[int] = []
        self._cond = threading.Condition()
        self._gate = threading.Event()
        self._gate.set()
        self._http = requests.Session()
        self._http.trust_env = False  # loopback only: never through a proxy from the environment
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, content_type, payload = receiver._answer(dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()

    def _answer(self, headers: dict, body: bytes) -> tuple[int, str, bytes]:
        with self._cond:
            self.received.append({"headers": headers, "body": body})
            status = self._statuses.pop(0) if self._statuses else 200
            self._cond.notify_all()
        released = self._gate.wait(self.max_hold)
        if self.forward_to is None:
            return status, "application/json", b'{"received": true}'
        if not released:
            # Forwarding late would let the sender retry behind the test's back: fail it instead.
            return 504, "text/plain", b"held too long by the test's WebhookReceiver"
        forwarded = {name: headers[name] for name in FORWARDED if name in headers}
        answer = self._http.post(self.forward_to, data=body, headers=forwarded, timeout=10)
        return answer.status_code, answer.headers.get("Content-Type", "text/plain"), answer.content

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def answer_with(self, *statuses: int) -> None:
        with self._cond:
            self._statuses.extend(statuses)

    def hold(self) -> None:
        """Keep every answer back until ``release()`` (at most ``max_hold`` seconds)."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout):
                raise TimeoutError(f"{len(self.received)} of {count} webhooks received")

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._http.close()

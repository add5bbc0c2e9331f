"""A stand-in for Khaime on loopback that answers as slowly as a test asks: it waits before the
headers, or sends the body one byte at a time, and counts the requests it got. Real HTTP on a
real socket (port 0), so the client's timeouts and deadlines are exercised as in production."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlowKhaime:
    """``SlowKhaime(status="completed", delay=6)``: every GET of a session answers ``status``
    after ``delay`` seconds (before the headers), dripping the body ``drip`` seconds a byte;
    every POST (a create) waits ``create_delay`` seconds and answers ``create_answer``."""

    def __init__(
        self,
        *,
        status: str = "pending",
        delay: float = 0.0,
        drip: float = 0.0,
        create_delay: float = 0.0,
        create_answer: dict | None = None,
    ):
        self.status, self.delay, self.drip = status, delay, drip
        self.create_delay, self.create_answer = create_delay, create_answer
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                owner._count("GET", self.path)
                time.sleep(owner.delay)
                session_id = self.path.rstrip("/").rsplit("/", 1)[-1]
                body = {"success": True, "data": {"session_id": session_id, "status": owner.status}}
                self._answer(200, body, owner.drip)

            def do_POST(self):
                owner._count("POST", self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(owner.create_delay)
                self._answer(201, owner.create_answer or {"success": False, "error": "no"}, 0)

            def _answer(self, status, payload, drip):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if not drip:
                        self.wfile.write(data)
                        return
                    for index in range(len(data)):
                        self.wfile.write(data[index : index + 1])
                        self.wfile.flush()
                        time.sleep(drip)
                except OSError:
                    pass  # the client gave up: that is what the tests want to see

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _count(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    @property
    def api_base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/api/v1/partner"

    def count(self, method: str = "GET") -> int:
        with self._lock:
            return sum(1 for m, _ in self.requests if m == method)

    def __enter__(self) -> SlowKhaime:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

"""How long the emulator takes to deliver a burst of webhooks to a receiver that answers in
100 ms, with one sender thread and with the default pool.

    .venv/bin/python benchmarks/emulator_webhook_pool.py [events]
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from khaime_django.emulator import Emulator
from khaime_django.emulator.sessions import parse_session_request

RECEIVER_SECONDS = 0.1


class SlowReceiver(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(RECEIVER_SECONDS)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def burst(workers: int, events: int, url: str) -> float:
    body = {"amount": 5000, "currency": "USD", "product_name": "Guide", "customer": {"email": "a@example.com"}}
    with Emulator(webhook_url=url, webhook_workers=workers) as emulator:
        ids = [emulator.create_session(parse_session_request(body), "sandbox")["session_id"] for _ in range(events)]
        started = time.monotonic()
        for session_id in ids:
            emulator.complete(session_id)
        emulator.wait_for_deliveries(events, timeout=events * RECEIVER_SECONDS * 2 + 10)
        return time.monotonic() - started


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowReceiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook/"
    for workers in (1, 4):
        seconds = burst(workers, events, url)
        print(f"{events} events, receiver {RECEIVER_SECONDS * 1000:.0f} ms, {workers} sender(s): {seconds:.2f} s")
    server.shutdown()


if __name__ == "__main__":
    main()

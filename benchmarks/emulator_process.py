"""The emulator in a process of its own, driven through its Python API over a pipe.

Khaime is another machine: run in the benchmark's own process, the emulator's request threads
would take the GIL from the code being measured (and its memory would count in the memory
measurement). ``RemoteEmulator`` offers the part of ``Emulator``'s API the benchmarks use:
``api_base_url``, ``configure()``, ``complete()``, ``reset()``, ``stop()``.
"""

from __future__ import annotations

import multiprocessing
from typing import Self
from urllib.parse import urlsplit


class RemoteEmulator:
    def __init__(self, **options):
        self._options = options
        self._conn = None
        self._process = None
        self.api_base_url = ""
        self.base_url = ""

    def start(self) -> RemoteEmulator:
        context = multiprocessing.get_context("spawn")  # nothing of Django or its connections is inherited
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child, self._options),
            name="khaime-emulator",
            daemon=True,
        )
        self._process.start()
        child.close()
        try:
            ok, value = self._conn.recv()
        except EOFError:
            ok, value = False, "its process exited"
        if not ok:
            raise RuntimeError(f"the emulator did not start: {value}")
        self.api_base_url, self.base_url = value
        if urlsplit(self.api_base_url).hostname != "127.0.0.1":
            raise RuntimeError(f"the emulator is not on loopback: {self.api_base_url}")
        return self

    @property
    def pid(self) -> int:
        return self._process.pid

    def _call(self, method: str, *args, **kwargs):
        self._conn.send((method, args, kwargs))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"emulator.{method}: {value}")
        return value

    def configure(self, **options) -> None:
        self._call("configure", **options)

    def complete(self, session_id: str) -> dict:
        return self._call("complete", session_id)

    def events(self) -> list[dict]:
        """Every event the emulator has made (envelopes), oldest first."""
        return self._call("events")

    def reset(self) -> None:
        self._call("reset")

    def stop(self) -> None:
        if self._process is None:
            return
        try:
            self._call("stop")
        except (EOFError, BrokenPipeError, RuntimeError):
            pass
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _serve(conn, options: dict) -> None:
    import logging

    logging.getLogger("khaime_django.emulator").setLevel(logging.WARNING)
    try:
        from khaime_django.emulator import Emulator

        emulator = Emulator(**options).start()
    except Exception as error:
        conn.send((False, repr(error)))
        return
    conn.send((True, (emulator.api_base_url, emulator.base_url)))
    while True:
        try:
            method, args, kwargs = conn.recv()
        except EOFError:  # the parent is gone
            emulator.stop()
            return
        if method == "stop":
            emulator.stop()
            conn.send((True, None))
            return
        try:
            conn.send((True, getattr(emulator, method)(*args, **kwargs)))
        except Exception as error:
            conn.send((False, repr(error)))

"""``python -m khaime_django.emulator`` as a real process: what it prints, its access log,
and a clean exit on SIGTERM and Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


class EmulatorProcess:
    """A child process running the emulator; its stdout is read line by line in a thread."""

    def __init__(self, args: list[str]):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout: float = 15.0) -> str:
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line starting {prefix!r}; saw {seen}") from None
            seen.append(line)
            if line.startswith(prefix):
                return line

    def api_base_url(self) -> str:
        return self.wait_for_line('    "API_BASE_URL": ').split('"')[3]

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(signum)
        try:
            returncode = self.process.wait(timeout=10)
        finally:
            self.process.kill()
        return returncode, self.process.stderr.read()


@pytest.fixture
def run_emulator():
    started = []

    def run(*args: str) -> EmulatorProcess:
        child = EmulatorProcess(list(args))
        started.append(child)
        return child

    yield run
    for child in started:
        child.process.kill()
        child.process.wait()
        child.process.stdout.close()
        child.process.stderr.close()


def test_cli_prints_where_it_listens_and_stops_cleanly_on_sigterm(run_emulator, http):
    child = run_emulator("-m", "khaime_django.emulator", "--port", "0")

    api_base_url = child.api_base_url()
    response = http.get(f"{api_base_url}/account", headers={"X-API-Key": "pk_sandbox_cli"}, timeout=5)
    returncode, stderr = child.stop(signal.SIGTERM)

    assert api_base_url.startswith("http://127.0.0.1:") and api_base_url.endswith("/api/v1/partner")
    assert response.status_code == 200
    assert returncode == 0
    assert '"GET /api/v1/partner/account" 200' in stderr  # one access-log line per request


def test_cli_stops_cleanly_on_ctrl_c(run_emulator):
    child = run_emulator("-m", "khaime_django.emulator", "--port", "0")
    child.api_base_url()

    returncode, stderr = child.stop(signal.SIGINT)

    assert returncode == 0
    assert "Traceback" not in stderr

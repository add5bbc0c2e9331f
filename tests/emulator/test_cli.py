"""``python -m khaime_django.emulator`` and ``manage.py khaime_emulator`` as real processes."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from khaime_django.emulator.cli import DEFAULT_DJANGO_WEBHOOK_URL, django_defaults

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
                raise AssertionError(
                    f"no line starting {prefix!r}; saw {seen}"
                ) from None
            seen.append(line)
            if line.startswith(prefix):
                return line

    def api_base_url(self) -> str:
        return self.wait_for_line("KHAIME_API_BASE_URL=").split("=", 1)[1]

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
    response = http.get(
        f"{api_base_url}/account", headers={"X-API-Key": "pk_sandbox_cli"}, timeout=5
    )
    returncode, stderr = child.stop(signal.SIGTERM)

    assert api_base_url.startswith("http://127.0.0.1:") and api_base_url.endswith(
        "/api/v1/partner"
    )
    assert response.status_code == 200
    assert returncode == 0
    assert (
        '"GET /api/v1/partner/account" 200' in stderr
    )  # one access-log line per request


def test_cli_stops_cleanly_on_ctrl_c(run_emulator):
    child = run_emulator("-m", "khaime_django.emulator", "--port", "0")
    child.api_base_url()

    returncode, stderr = child.stop(signal.SIGINT)

    assert returncode == 0
    assert "Traceback" not in stderr


def test_cli_options_reach_the_emulator(run_emulator, http):
    child = run_emulator(
        "-m", "khaime_django.emulator", "--port", "0",
        "--webhook-url", "http://127.0.0.1:9/hook/", "--webhook-secret", "whsec_cli",
        "--session-ttl", "60", "--merchant-pays-fees", "--latency-ms", "5",
        "--fail-rate", "0.25", "--fail-status", "503", "--rate-limit-per-second", "40",
        "--duplicate-webhooks", "--webhook-order", "shuffled", "--webhook-attempts", "5",
        "--webhook-retry-delay", "0.5",
    )  # fmt: skip
    base_url = child.api_base_url().removesuffix("/api/v1/partner")

    config = http.get(f"{base_url}/_emulator/config", timeout=5).json()["data"]
    child.stop()

    assert {key: config[key] for key in (
        "webhook_url", "webhook_secret", "session_ttl", "customer_pays_fees", "latency_ms", "fail_rate",
        "fail_status", "rate_limit_per_second", "duplicate_webhooks", "webhook_order", "webhook_attempts",
        "webhook_retry_delay",
    )} == {
        "webhook_url": "http://127.0.0.1:9/hook/", "webhook_secret": "whsec_cli", "session_ttl": 60,
        "customer_pays_fees": False, "latency_ms": 5, "fail_rate": 0.25, "fail_status": 503,
        "rate_limit_per_second": 40, "duplicate_webhooks": True, "webhook_order": "shuffled",
        "webhook_attempts": 5, "webhook_retry_delay": 0.5,
    }  # fmt: skip


def test_cli_refuses_an_invalid_option_value(run_emulator):
    child = run_emulator(
        "-m", "khaime_django.emulator", "--port", "0", "--fail-rate", "3"
    )

    assert child.process.wait(timeout=10) == 2
    assert "fail_rate" in child.wait_for_line("Invalid option")


def test_cli_reports_a_port_in_use(run_emulator):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        child = run_emulator("-m", "khaime_django.emulator", "--port", str(port))

        assert child.process.wait(timeout=10) == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in child.wait_for_line("Cannot listen")


def test_management_command_takes_its_defaults_from_the_khaime_settings(
    run_emulator, http, tmp_path
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "run_command.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import django
            from django.conf import settings
            from django.core.management import call_command

            settings.configure(KHAIME={{
                "API_BASE_URL": "http://127.0.0.1:{port}/api/v1/partner",
                "WEBHOOK_SECRETS": ["whsec_from_settings", "whsec_older"],
                "EMULATOR_WEBHOOK_URL": "http://127.0.0.1:8001/shop/webhook/",
            }})
            django.setup()
            from khaime_django.management.commands.khaime_emulator import Command

            call_command(Command())
            """
        )
    )
    child = run_emulator(str(script))

    api_base_url = child.api_base_url()
    config = http.get(
        api_base_url.replace("/api/v1/partner", "/_emulator/config"), timeout=5
    ).json()["data"]
    returncode, _ = child.stop()

    assert api_base_url == f"http://127.0.0.1:{port}/api/v1/partner"
    assert config["webhook_secret"] == "whsec_from_settings"
    assert config["webhook_url"] == "http://127.0.0.1:8001/shop/webhook/"
    assert returncode == 0


def test_django_defaults_without_emulator_settings_use_the_documented_fallbacks():
    defaults = django_defaults(
        {"API_BASE_URL": "https://api.khaime.com/api/v1/partner"}
    )

    assert defaults == {"port": 8765, "webhook_url": DEFAULT_DJANGO_WEBHOOK_URL}
    assert DEFAULT_DJANGO_WEBHOOK_URL == "http://127.0.0.1:8000/payments/webhook/"


@pytest.mark.parametrize(
    ("api_base_url", "port"),
    [
        ("http://localhost:9000/api/v1/partner", 9000),
        ("http://127.0.0.1:8766/api/v1/partner", 8766),
        ("http://localhost/api/v1/partner", 8765),
        ("http://khaime.internal:9000/api/v1/partner", 8765),
        (None, 8765),
    ],
)
def test_django_default_port_comes_from_a_local_api_base_url(api_base_url, port):
    assert django_defaults({"API_BASE_URL": api_base_url})["port"] == port

"""The emulator's command line in-process: options, defaults from the KHAIME settings for
``manage.py khaime_emulator``, and the exits for bad options. ``serve()`` is stopped the way
a person stops it, by SIGTERM to this process (see ``ServeOutput``); the real process is
tested in test_cli_process.py."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import threading
from types import SimpleNamespace

import pytest
import requests
from django.core.management import call_command

from khaime_django.emulator import cli
from khaime_django.management.commands import khaime_emulator

OPTION_NAMES = (
    "webhook_url", "session_ttl", "customer_pays_fees", "latency_ms",
    "fail_rate", "fail_status", "rate_limit_per_second", "duplicate_webhooks",
    "webhook_order", "webhook_attempts", "webhook_retry_delay", "webhook_timeout", "webhook_workers",
    "refund_delay", "refund_answer_delay", "seed",
)  # fmt: skip


class ServeOutput:
    """The stream ``serve()`` prints to. Once the banner is out, a thread reads the running
    emulator's configuration over its control API and then sends SIGTERM, which serve()
    answers by stopping; the test then looks at ``text`` and ``config``."""

    def __init__(self):
        self.text = ""
        self.config: dict | None = None
        self.api_base_url: str | None = None
        self.webhook_secret: str | None = None

    def write(self, text: str) -> None:
        self.text += text
        found = re.search(r'^    "API_BASE_URL": "([^"]+)",$', text, re.MULTILINE)
        if found:
            self.api_base_url = found.group(1)
            secret = re.search(r'^    "WEBHOOK_SECRETS": \["([^"]+)"\],$', text, re.MULTILINE)
            self.webhook_secret = secret.group(1) if secret else None
            threading.Thread(target=self._inspect_then_stop).start()

    def flush(self) -> None:
        pass

    def _inspect_then_stop(self) -> None:
        try:
            http = requests.Session()
            http.trust_env = False
            config_url = self.api_base_url.replace("/api/v1/partner", "/_emulator/config")
            self.config = http.get(config_url, timeout=5).json()["data"]
        finally:
            os.kill(os.getpid(), signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def run_main(monkeypatch):
    """``cli.main(argv)`` printing to a ``ServeOutput``; answers (exit status, output)."""

    def run(*argv: str) -> tuple[int, ServeOutput]:
        output = ServeOutput()
        # Set here, not at fixture setup: pytest's capture re-takes sys.stdout for the test call.
        monkeypatch.setattr(sys, "stdout", output)
        return cli.main(list(argv)), output

    return run


def test_every_option_reaches_the_emulator(run_main):
    status, output = run_main(
        "--port", "0", "--webhook-url", "http://127.0.0.1:9/hook/",
        "--webhook-secret", "whsec_cli", "--session-ttl", "60", "--merchant-pays-fees",
        "--latency-ms", "5", "--fail-rate", "0.25", "--fail-status", "503",
        "--rate-limit-per-second", "40", "--duplicate-webhooks", "--webhook-order", "shuffled",
        "--webhook-attempts", "5", "--webhook-retry-delay", "0.5", "--webhook-timeout", "3",
        "--webhook-workers", "2", "--refund-delay", "0.2", "--refund-answer-delay", "4", "--seed", "11",
    )  # fmt: skip

    assert status == 0
    assert output.webhook_secret == "whsec_cli"
    assert {name: output.config[name] for name in OPTION_NAMES} == {
        "webhook_url": "http://127.0.0.1:9/hook/",
        "session_ttl": 60, "customer_pays_fees": False, "latency_ms": 5, "fail_rate": 0.25,
        "fail_status": 503, "rate_limit_per_second": 40, "duplicate_webhooks": True,
        "webhook_order": "shuffled", "webhook_attempts": 5, "webhook_retry_delay": 0.5,
        "webhook_timeout": 3, "webhook_workers": 2, "refund_delay": 0.2, "refund_answer_delay": 4,
        "seed": 11,
    }  # fmt: skip


def test_allow_remote_webhooks_is_a_start_up_flag(run_main):
    status, output = run_main("--port", "0", "--webhook-url", "http://192.0.2.1:9/hook/")
    assert status == 2
    assert "webhook_url" in output.text

    status, output = run_main("--port", "0", "--webhook-url", "http://192.0.2.1:9/hook/", "--allow-remote-webhooks")
    assert status == 0
    assert output.config["allow_remote_webhooks"] is True


def test_banner_warns_loudly_when_nothing_answers_at_the_webhook_url(run_main):
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        answering = f"http://127.0.0.1:{listening.getsockname()[1]}/payments/webhook/"
        _, quiet = run_main("--port", "0", "--webhook-url", answering)
    _, loud = run_main("--port", "0", "--webhook-url", f"http://127.0.0.1:{free_port()}/payments/webhook/")

    assert "WARNING: nothing answers at" not in quiet.text
    assert "WARNING: nothing answers at http://127.0.0.1:" in loud.text
    assert "!" * 78 in loud.text


def test_banner_tells_where_to_point_the_app(run_main):
    _, output = run_main("--port", "0")

    base_url = output.api_base_url.removesuffix("/api/v1/partner")
    assert f"Khaime emulator listening on {base_url}" in output.text
    assert "not delivered (no --webhook-url)" in output.text
    assert (
        "KHAIME = {\n"
        '    "API_KEY": "pk_sandbox_emulator",\n'
        f'    "API_BASE_URL": "{output.api_base_url}",\n'
        '    "WEBHOOK_SECRETS": ["whsec_emulator"],\n'
        "}\n"
    ) in output.text
    assert "KHAIME_API_BASE_URL" not in output.text


def test_serve_restores_the_signal_handlers_it_replaced(run_main):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    run_main("--port", "0")

    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_invalid_option_value_exits_2_naming_the_option(run_main):
    status, output = run_main("--port", "0", "--fail-rate", "3")

    assert status == 2
    assert "fail_rate" in output.text


def test_port_in_use_exits_1_with_a_clear_line(run_main):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        status, output = run_main("--port", str(port))

    assert status == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in output.text


def test_management_command_takes_its_defaults_from_the_khaime_settings(monkeypatch):
    port = free_port()
    khaime = {
        "API_BASE_URL": f"http://127.0.0.1:{port}/api/v1/partner",
        "WEBHOOK_SECRETS": ["whsec_from_settings", "whsec_older"],
        "EMULATOR_WEBHOOK_URL": "http://127.0.0.1:8001/shop/webhook/",
    }
    monkeypatch.setattr(khaime_emulator, "settings", SimpleNamespace(KHAIME=khaime))
    output = ServeOutput()

    call_command(khaime_emulator.Command(), stdout=output)

    assert output.api_base_url == khaime["API_BASE_URL"]
    assert output.webhook_secret == "whsec_from_settings"
    assert output.config["webhook_url"] == "http://127.0.0.1:8001/shop/webhook/"


def test_management_command_options_win_over_the_settings(monkeypatch):
    khaime = {
        "WEBHOOK_SECRETS": ["whsec_from_settings"],
        "API_BASE_URL": "https://api.khaime.com/api/v1/partner",
    }
    monkeypatch.setattr(khaime_emulator, "settings", SimpleNamespace(KHAIME=khaime))
    output = ServeOutput()

    call_command(
        khaime_emulator.Command(),
        "--port", "0", "--webhook-url", "http://127.0.0.1:9/other/", "--webhook-secret", "whsec_option",
        stdout=output,
    )  # fmt: skip

    assert output.webhook_secret == "whsec_option"
    assert output.config["webhook_url"] == "http://127.0.0.1:9/other/"
    assert "settings.KHAIME['API_BASE_URL'] is 'https://api.khaime.com/api/v1/partner'" in output.text


def test_django_defaults_without_emulator_settings_use_the_documented_fallbacks():
    defaults = khaime_emulator.django_defaults({"API_BASE_URL": "https://api.khaime.com/api/v1/partner"})

    assert defaults == {
        "port": 8765,
        "webhook_url": "http://127.0.0.1:8000/payments/webhook/",
    }


@pytest.mark.parametrize(
    ("api_base_url", "port"),
    [
        ("http://localhost:9000/api/v1/partner", 9000),
        ("http://127.0.0.1:8766/api/v1/partner", 8766),
        ("http://localhost/api/v1/partner", 8765),
        ("http://[::1]:9001/api/v1/partner", 9001),
        ("http://khaime.internal:9000/api/v1/partner", 8765),
        (None, 8765),
    ],
)
def test_django_default_port_comes_from_a_local_api_base_url(api_base_url, port):
    assert khaime_emulator.django_defaults({"API_BASE_URL": api_base_url})["port"] == port


def test_management_command_help_tells_where_the_port_comes_from(capsys):
    with pytest.raises(SystemExit):
        call_command("khaime_emulator", "--help")
    text = " ".join(capsys.readouterr().out.split())

    assert "the port of KHAIME['API_BASE_URL'] when that is on loopback, else 8765" in text
    assert "KHAIME['EMULATOR_WEBHOOK_URL'], else http://127.0.0.1:8000/payments/webhook/" in text

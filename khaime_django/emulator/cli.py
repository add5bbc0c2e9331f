"""Command-line front end shared by ``python -m khaime_django.emulator`` and
``manage.py khaime_emulator``: the options, the banner, and serving until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from .config import WEBHOOK_ORDERS, InvalidConfig
from .server import Emulator

DEFAULT_PORT = 8765
DEFAULT_DJANGO_WEBHOOK_URL = "http://127.0.0.1:8000/payments/webhook/"

# Options that map one-to-one onto Emulator keywords (flag --a-b -> keyword a_b).
_VALUE_OPTIONS = (
    "host",
    "port",
    "webhook_url",
    "webhook_secret",
    "session_ttl",
    "latency_ms",
    "fail_rate",
    "fail_status",
    "rate_limit_per_second",
    "webhook_order",
    "webhook_attempts",
    "webhook_retry_delay",
    "webhook_timeout",
    "seed",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options; an option left out stays None and takes its default later."""
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        help=f"port to listen on, 0 for any free port (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--webhook-url",
        help="where to POST signed webhooks (none: events are only recorded)",
    )
    parser.add_argument("--webhook-secret", help="secret that signs webhooks (whsec_...)")
    parser.add_argument(
        "--session-ttl",
        type=float,
        metavar="SECONDS",
        help="session lifetime (default 1800)",
    )
    parser.add_argument(
        "--merchant-pays-fees",
        action="store_true",
        help="the merchant absorbs fees: total = base price",
    )
    parser.add_argument("--latency-ms", type=int, metavar="N", help="delay every Partner API answer")
    parser.add_argument(
        "--fail-rate",
        type=float,
        metavar="F",
        help="share of Partner API requests that fail (0-1)",
    )
    parser.add_argument(
        "--fail-status",
        type=int,
        metavar="S",
        help="status of those failures (default 500)",
    )
    parser.add_argument(
        "--rate-limit-per-second",
        type=int,
        metavar="N",
        help="answer 429 past N requests a second",
    )
    parser.add_argument("--duplicate-webhooks", action="store_true", help="deliver every webhook twice")
    parser.add_argument("--webhook-order", choices=WEBHOOK_ORDERS, help="deliver in order, or shuffled")
    parser.add_argument(
        "--webhook-attempts",
        type=int,
        metavar="N",
        help="attempts per webhook (default 3)",
    )
    parser.add_argument(
        "--webhook-retry-delay",
        type=float,
        metavar="S",
        help="seconds between attempts (default 2)",
    )
    parser.add_argument(
        "--webhook-timeout",
        type=float,
        metavar="S",
        help="seconds per attempt (default 10)",
    )
    parser.add_argument("--seed", type=int, help="seed for fail_rate draws and shuffled delivery")


def options_from_args(args: argparse.Namespace, defaults: Mapping | None = None) -> dict:
    """Emulator keywords from parsed options; ``defaults`` fill the options not given."""
    options = dict(defaults or {})
    options.update({name: getattr(args, name) for name in _VALUE_OPTIONS if getattr(args, name) is not None})
    if args.merchant_pays_fees:
        options["customer_pays_fees"] = False
    if args.duplicate_webhooks:
        options["duplicate_webhooks"] = True
    return options


def django_defaults(khaime: Mapping) -> dict:
    """Defaults for ``manage.py khaime_emulator`` taken from the ``KHAIME`` settings dict."""
    defaults = {
        "port": port_from_api_base_url(khaime.get("API_BASE_URL")),
        "webhook_url": khaime.get("EMULATOR_WEBHOOK_URL") or DEFAULT_DJANGO_WEBHOOK_URL,
    }
    secrets = khaime.get("WEBHOOK_SECRETS") or []
    if isinstance(secrets, str):
        secrets = [secrets]
    if secrets:
        defaults["webhook_secret"] = secrets[0]
    return defaults


def port_from_api_base_url(url: str | None) -> int:
    """The port of a local API base URL (the emulator is meant to answer there), else 8765."""
    parts = urlsplit(url or "")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.hostname in ("127.0.0.1", "localhost") and port:
        return port
    return DEFAULT_PORT


def serve(options: Mapping, out, expected_api_base_url: str | None = None) -> int:
    """Run an emulator until SIGINT or SIGTERM; answer the process exit status."""
    try:
        emulator = Emulator(**options)
    except InvalidConfig as exc:
        out.write(f"Invalid option: {exc}\n")
        return 2
    stop_requested = threading.Event()
    previous_handlers = {
        signum: signal.signal(signum, lambda *_: stop_requested.set()) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    log_handler = _log_requests_to_stderr()
    try:
        emulator.start()
    except OSError as exc:
        config = emulator.config
        out.write(f"Cannot listen on {config.host}:{config.port}: {exc}\n")
        return 1
    else:
        out.write("".join(f"{line}\n" for line in _banner(emulator, expected_api_base_url)))
        out.flush()
        stop_requested.wait()
        out.write("Stopping the Khaime emulator.\n")
        out.flush()
        return 0
    finally:
        emulator.stop()  # nothing to do when it never started
        _restore(previous_handlers, log_handler)


def _banner(emulator: Emulator, expected_api_base_url: str | None) -> list[str]:
    config = emulator.config
    lines = [
        f"Khaime emulator listening on {emulator.base_url}",
        f"  Partner API:  {emulator.api_base_url}",
        f"  Control API:  {emulator.base_url}/_emulator/",
        f"  Webhooks:     {config.webhook_url or 'not delivered (no --webhook-url); see /_emulator/events'}",
        f"  Signed with:  {config.webhook_secret}",
    ]
    if expected_api_base_url is not None and expected_api_base_url.rstrip("/") != emulator.api_base_url:
        lines.append(f"  Note: settings.KHAIME['API_BASE_URL'] is {expected_api_base_url!r}, not this emulator.")
    lines.append("Point the app at it with:")
    lines.append(f"KHAIME_API_BASE_URL={emulator.api_base_url}")
    return lines


def _log_requests_to_stderr() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("khaime_django.emulator")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def _restore(previous_handlers: dict, log_handler: logging.Handler) -> None:
    for signum, handler in previous_handlers.items():
        signal.signal(signum, handler)
    logger = logging.getLogger("khaime_django.emulator")
    logger.removeHandler(log_handler)
    logger.propagate = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m khaime_django.emulator",
        description="Offline emulator of the Khaime Partner API, with a hosted checkout page and signed webhooks.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return serve(options_from_args(args, {"port": DEFAULT_PORT}), sys.stdout)

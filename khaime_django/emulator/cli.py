"""Command-line front end shared by ``python -m khaime_django.emulator`` and
``manage.py khaime_emulator``: the options, the banner, and serving until Ctrl-C or SIGTERM.

Nothing here knows Django: ``manage.py khaime_emulator`` turns the ``KHAIME`` settings into
defaults for these options itself.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..defaults import EMULATOR_PORT
from .config import WEBHOOK_ORDERS, InvalidConfig
from .server import Emulator

DEFAULT_PORT = EMULATOR_PORT

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
    "webhook_workers",
    "refund_delay",
    "refund_answer_delay",
    "seed",
)


def add_arguments(
    parser: argparse.ArgumentParser,
    port_default: str = str(DEFAULT_PORT),
    webhook_url_default: str = "none: events are only recorded",
) -> None:
    """Add the emulator's options; an option left out stays None and takes its default later.
    The two defaults are worded by the caller, which decides them."""
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        help=f"port to listen on, 0 for any free port (default: {port_default})",
    )
    parser.add_argument(
        "--webhook-url",
        help=f"where to POST signed webhooks, loopback only (default: {webhook_url_default})",
    )
    parser.add_argument(
        "--allow-remote-webhooks",
        action="store_true",
        help="let --webhook-url point at another machine (the control API can never change this)",
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
    parser.add_argument(
        "--webhook-workers",
        type=int,
        metavar="N",
        help="webhook sender threads delivering concurrently (default 4)",
    )
    parser.add_argument(
        "--refund-delay",
        type=float,
        metavar="S",
        help="seconds from POST /refunds to refund.completed (default 0.5)",
    )
    parser.add_argument(
        "--refund-answer-delay",
        type=float,
        metavar="S",
        help="how long the 'timeout' refund fault holds the answer back (default 15)",
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
    if args.allow_remote_webhooks:
        options["allow_remote_webhooks"] = True
    return options


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
        f"  Control API:  {emulator.base_url}/_emulator/ (loopback only)",
        f"  Webhooks:     {config.webhook_url or 'not delivered (no --webhook-url); see /_emulator/events'}",
        f"  Senders:      {config.webhook_workers} threads, {config.webhook_attempts} attempts "
        f"{config.webhook_retry_delay:g} s apart",
    ]
    if expected_api_base_url is not None and expected_api_base_url.rstrip("/") != emulator.api_base_url:
        lines.append(f"  Note: settings.KHAIME['API_BASE_URL'] is {expected_api_base_url!r}, not this emulator.")
    lines += [
        "Point the Django project at it with these settings (any pk_sandbox_ key works offline):",
        "KHAIME = {",
        '    "API_KEY": "pk_sandbox_emulator",',
        f'    "API_BASE_URL": "{emulator.api_base_url}",',
        f'    "WEBHOOK_SECRETS": ["{config.webhook_secret}"],',
    ]
    if config.webhook_url:
        lines.append(f'    "EMULATOR_WEBHOOK_URL": "{config.webhook_url}",')
    lines.append("}")
    lines += _unanswered_webhook_url_warning(config.webhook_url)
    return lines


def _unanswered_webhook_url_warning(url: str | None, timeout: float = 1.0) -> list[str]:
    """A loud warning when nothing accepts connections where webhooks are to go."""
    if not url:
        return []
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return []
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    bar = "!" * 78
    return [
        bar,
        f"WARNING: nothing answers at {url} ({reason}).",
        "Signed webhooks will fail there: start the Django site first, or set",
        "KHAIME['EMULATOR_WEBHOOK_URL'] (or --webhook-url) to the URL of your runserver's",
        "khaime:webhook view, e.g. http://127.0.0.1:8001/payments/webhook/ for runserver 8001.",
        bar,
    ]


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

"""The emulator's run-time options, as one immutable value.

A configuration is replaced as a whole (``dataclasses.replace``) under the emulator's lock, so a
request thread that read ``emulator.config`` once sees one consistent set of options even while
another thread calls ``configure()``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..defaults import EMULATOR_WEBHOOK_SECRET, LOOPBACK_HOSTS

WEBHOOK_ORDERS = ("in-order", "shuffled")

# Options fixed while the server runs: the socket it binds and its pool of webhook senders.
BINDING_OPTIONS = frozenset({"host", "port", "webhook_workers"})

# Options the control API may neither read nor change (over HTTP, anyone on the machine could
# aim the emulator's webhooks at another host, or read the secret that signs them).
SECRET_OPTIONS = frozenset({"webhook_secret"})
STARTUP_ONLY_OPTIONS = frozenset({"allow_remote_webhooks"})


class InvalidConfig(ValueError):
    """One or more options are unknown or out of range; ``details`` maps each to the reason."""

    def __init__(self, details: dict[str, str]):
        self.details = details
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in details.items()))


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    webhook_url: str | None = None
    allow_remote_webhooks: bool = False
    webhook_secret: str = EMULATOR_WEBHOOK_SECRET
    session_ttl: float = 1800
    customer_pays_fees: bool = True
    fee_bps: int = 600
    fee_fixed: int = 20
    latency_ms: int = 0
    fail_rate: float = 0.0
    fail_status: int = 500
    rate_limit_per_second: int | None = None
    duplicate_webhooks: bool = False
    webhook_order: str = "in-order"
    webhook_attempts: int = 3
    webhook_retry_delay: float = 2.0
    webhook_timeout: float = 10.0
    webhook_workers: int = 4
    refund_delay: float = 0.5
    refund_answer_delay: float = 15.0
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise InvalidConfig(problems)

    def replace(self, **options) -> EmulatorConfig:
        unknown = sorted(set(options) - set(option_names()))
        if unknown:
            raise InvalidConfig({name: "unknown option" for name in unknown})
        return dataclasses.replace(self, **options)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def public_dict(self) -> dict:
        """The options as the control API shows them: never the webhook secret."""
        return {name: value for name, value in self.as_dict().items() if name not in SECRET_OPTIONS}


def option_names() -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(EmulatorConfig))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _problems(config: EmulatorConfig) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not isinstance(config.host, str) or not config.host:
        problems["host"] = "must be a non-empty string"
    if not _is_int(config.port) or not 0 <= config.port <= 65535:
        problems["port"] = "must be an integer between 0 and 65535"
    if config.webhook_url is not None:
        parts = urlsplit(config.webhook_url) if isinstance(config.webhook_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            problems["webhook_url"] = "must be an absolute http(s) URL or None"
        elif parts.hostname not in LOOPBACK_HOSTS and config.allow_remote_webhooks is not True:
            problems["webhook_url"] = (
                "must be on loopback (127.0.0.1, localhost, ::1) unless allow_remote_webhooks is on"
            )
    if not isinstance(config.allow_remote_webhooks, bool):
        problems["allow_remote_webhooks"] = "must be true or false"
    if not isinstance(config.webhook_secret, str) or not config.webhook_secret:
        problems["webhook_secret"] = "must be a non-empty string"
    if not _is_number(config.session_ttl) or config.session_ttl < 0:
        problems["session_ttl"] = "must be a number of seconds >= 0"
    if not isinstance(config.customer_pays_fees, bool):
        problems["customer_pays_fees"] = "must be true or false"
    if not _is_int(config.fee_bps) or config.fee_bps < 0:
        problems["fee_bps"] = "must be an integer >= 0"
    if not _is_int(config.fee_fixed) or config.fee_fixed < 0:
        problems["fee_fixed"] = "must be an integer >= 0"
    if not _is_int(config.latency_ms) or config.latency_ms < 0:
        problems["latency_ms"] = "must be an integer >= 0"
    if not _is_number(config.fail_rate) or not 0 <= config.fail_rate <= 1:
        problems["fail_rate"] = "must be a number between 0 and 1"
    if not _is_int(config.fail_status) or not 400 <= config.fail_status <= 599:
        problems["fail_status"] = "must be an HTTP error status (400-599)"
    if config.rate_limit_per_second is not None and (
        not _is_int(config.rate_limit_per_second) or config.rate_limit_per_second < 1
    ):
        problems["rate_limit_per_second"] = "must be an integer >= 1 or None"
    if not isinstance(config.duplicate_webhooks, bool):
        problems["duplicate_webhooks"] = "must be true or false"
    if config.webhook_order not in WEBHOOK_ORDERS:
        problems["webhook_order"] = f"must be one of {', '.join(WEBHOOK_ORDERS)}"
    if not _is_int(config.webhook_attempts) or config.webhook_attempts < 1:
        problems["webhook_attempts"] = "must be an integer >= 1"
    if not _is_number(config.webhook_retry_delay) or config.webhook_retry_delay < 0:
        problems["webhook_retry_delay"] = "must be a number of seconds >= 0"
    if not _is_number(config.webhook_timeout) or config.webhook_timeout <= 0:
        problems["webhook_timeout"] = "must be a number of seconds > 0"
    if not _is_int(config.webhook_workers) or not 1 <= config.webhook_workers <= 64:
        problems["webhook_workers"] = "must be an integer between 1 and 64"
    if not _is_number(config.refund_delay) or config.refund_delay < 0:
        problems["refund_delay"] = "must be a number of seconds >= 0"
    if not _is_number(config.refund_answer_delay) or config.refund_answer_delay < 0:
        problems["refund_answer_delay"] = "must be a number of seconds >= 0"
    if config.seed is not None and not _is_int(config.seed):
        problems["seed"] = "must be an integer or None"
    return problems

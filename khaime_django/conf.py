"""The ``KHAIME`` settings dict: defaults, validation, read lazily on every access.

Nothing here is copied at import time, so ``override_settings(KHAIME=...)`` and pytest-django's
``settings`` fixture take effect at once::

    from khaime_django.conf import khaime_settings
    khaime_settings.API_KEY
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings

from .defaults import EMULATOR_WEBHOOK_URL, LOOPBACK_HOSTS

DEFAULT_API_BASE_URL = "https://api.khaime.com/api/v1/partner"

DEFAULTS: dict[str, object] = {
    # Partner API key: pk_sandbox_... (test) or pk_live_... (production).
    "API_KEY": "",
    "API_BASE_URL": DEFAULT_API_BASE_URL,
    # Secrets of the webhook endpoint; more than one while rotating.
    "WEBHOOK_SECRETS": [],
    # (connect, read) seconds for every call to Khaime.
    "TIMEOUT": (3.05, 10),
    # A shorter timeout for the call the buyer waits on when returning to the success page.
    "RETURN_TIMEOUT": (2, 5),
    # Retries after the first attempt (only where safe, see client/transport.py), and their backoff.
    "MAX_RETRIES": 2,
    "BACKOFF_BASE": 0.5,
    "BACKOFF_MAX": 5.0,
    # How long a signed buy-button price stays valid, in seconds.
    "TOKEN_MAX_AGE": 24 * 3600,
    # The status page re-asks Khaime at most this often per session, in seconds.
    "STATUS_REFRESH_INTERVAL": 5,
    # Khaime requests that page loads (success page, status endpoint) may start per API key and
    # hour, counted in the database across processes; the rest of the quota stays for checkouts.
    "REFRESH_BUDGET_PER_HOUR": 600,
    # Seconds the success page first waits for the webhook to land (reading only the database)
    # before it asks Khaime, on the buyer's first return; 0 asks at once.
    "RETURN_WEBHOOK_WAIT": 1.5,
    # How long after creation a `failed` or `expired` session is still asked about (it may have
    # been paid after all: a declined card retried on the same page, a webhook lost).
    "RECHECK_LOOKBACK": timedelta(days=3),
    # Longest a Buy waits, in seconds, for a session another request is creating for the same
    # purchase before answering "still being created, try again" (503).
    "IN_FLIGHT_WAIT": 3.0,
    # Largest webhook body accepted, in bytes.
    "WEBHOOK_MAX_BODY": 1024 * 1024,
    # khaime_sync: leave sessions alone this long after creation; expire offline this long past expires_at.
    "SYNC_GRACE": timedelta(minutes=10),
    # khaime_prune_events redacts the customer's personal data from webhook payloads this old
    # (a timedelta, or a number of days); None keeps payloads whole.
    "WEBHOOK_PAYLOAD_RETENTION": timedelta(days=90),
    # Absolute origin ("https://shop.example") for return URLs when no request is at hand.
    "SITE_URL": "",
    # Extra origins the checkout may redirect buyers to besides https URLs (say, an emulator).
    "ALLOWED_PAYMENT_ORIGINS": [],
    # How long a subscription whose renewal failed (`due`) keeps access past its next_payment_date.
    "SUBSCRIPTION_GRACE": timedelta(days=3),
    # "inline": apply each webhook event in the request; "task": record it, answer at once and
    # apply it in a task of Django's Tasks framework (docs/background.md).
    "WEBHOOK_PROCESSING": "inline",
    # Task mode: an event still `received` this long after it arrived is applied by khaime_sync
    # (and the apply_waiting_events task): a lost enqueue or a crashed worker loses nothing.
    "WEBHOOK_RECOVERY_DELAY": timedelta(minutes=5),
    # The alias in settings.TASKS and the queue khaime-django's tasks go to ("" = the backend's default).
    "TASK_BACKEND": "default",
    "TASK_QUEUE": "",
    # Where `manage.py khaime_emulator` delivers webhooks by default.
    "EMULATOR_WEBHOOK_URL": EMULATOR_WEBHOOK_URL,
}


class KhaimeSettings:
    """Attribute access to ``settings.KHAIME`` merged over ``DEFAULTS``, read on every access."""

    def _user_settings(self) -> dict:
        value = getattr(settings, "KHAIME", None) or {}
        if not isinstance(value, dict):
            from .exceptions import KhaimeConfigurationError

            raise KhaimeConfigurationError("settings.KHAIME must be a dict.")
        return value

    def __getattr__(self, name: str):
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown KHAIME setting: {name!r}")
        value = self._user_settings().get(name, DEFAULTS[name])
        return _normalise(name, value)

    def unknown_keys(self) -> list[str]:
        return sorted(set(self._user_settings()) - set(DEFAULTS))

    @property
    def mode(self) -> str:
        """``live`` for a pk_live_ key, ``sandbox`` otherwise."""
        return "live" if str(self.API_KEY).startswith("pk_live_") else "sandbox"

    @property
    def api_is_loopback(self) -> bool:
        return urlsplit(self.API_BASE_URL).hostname in LOOPBACK_HOSTS

    def allowed_payment_origins(self) -> set[str]:
        """Non-https origins a payment_url may point at: the configured ones, plus the API's own
        origin when it is on this machine (the emulator)."""
        origins = {origin.rstrip("/") for origin in self.ALLOWED_PAYMENT_ORIGINS}
        if self.api_is_loopback:
            parts = urlsplit(self.API_BASE_URL)
            origins.add(f"{parts.scheme}://{parts.netloc}")
        return origins


def _normalise(name: str, value):
    if name == "API_BASE_URL":
        return str(value).rstrip("/")
    if name == "WEBHOOK_SECRETS" and isinstance(value, str):
        return [value] if value else []
    if name in ("TIMEOUT", "RETURN_TIMEOUT") and isinstance(value, (int, float)):
        return (value, value)
    if name in ("TIMEOUT", "RETURN_TIMEOUT") and isinstance(value, list):
        return tuple(value)  # requests takes (connect, read) only as a tuple; a list raises ValueError
    if name in ("SYNC_GRACE", "RECHECK_LOOKBACK", "SUBSCRIPTION_GRACE", "WEBHOOK_RECOVERY_DELAY") and isinstance(
        value, (int, float)
    ):
        return timedelta(seconds=value)
    if name == "WEBHOOK_PAYLOAD_RETENTION" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(days=value)
    return value


khaime_settings = KhaimeSettings()

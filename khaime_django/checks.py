"""System checks (`manage.py check`) for the KHAIME settings."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .conf import khaime_settings

KEY_PATTERN = re.compile(r"^pk_(sandbox|live)_[A-Za-z0-9_\-]+$")


@register(Tags.security, "khaime")
def check_khaime_settings(app_configs=None, **kwargs):
    messages: list[CheckMessage] = []
    raw = getattr(settings, "KHAIME", None)
    if raw is not None and not isinstance(raw, dict):
        return [Error("settings.KHAIME must be a dict.", id="khaime.E000")]
    key = khaime_settings.API_KEY
    if not key:
        messages.append(
            Error(
                "KHAIME['API_KEY'] is not set.",
                hint="Create a key in the Khaime dashboard (Settings > API & Integrations); pk_sandbox_... for tests.",
                id="khaime.E001",
            )
        )
    elif not KEY_PATTERN.match(str(key)):
        messages.append(
            Error(
                "KHAIME['API_KEY'] does not look like a Khaime key.",
                hint="Khaime keys start with pk_sandbox_ or pk_live_.",
                id="khaime.E002",
            )
        )
    elif str(key).startswith("pk_live_") and settings.DEBUG:
        messages.append(
            Warning(
                "A live Khaime key is configured while DEBUG=True.",
                hint="Use a pk_sandbox_ key for development, or set DEBUG=False.",
                id="khaime.W001",
            )
        )
    base = urlsplit(khaime_settings.API_BASE_URL)
    if base.scheme != "https" and not khaime_settings.api_is_loopback:
        messages.append(
            Error(
                "KHAIME['API_BASE_URL'] is not an https URL.",
                hint="Only the emulator on 127.0.0.1/localhost may be reached over plain http.",
                id="khaime.E003",
            )
        )
    secrets = khaime_settings.WEBHOOK_SECRETS
    if not secrets:
        messages.append(
            Warning(
                "KHAIME['WEBHOOK_SECRETS'] is empty: the webhook endpoint refuses every event.",
                hint="Copy the whsec_... secret from the Khaime dashboard (Settings > API).",
                id="khaime.W002",
            )
        )
    elif not isinstance(secrets, (list, tuple)) or not all(isinstance(s, str) and s for s in secrets):
        messages.append(Error("KHAIME['WEBHOOK_SECRETS'] must be a list of strings.", id="khaime.E004"))
    # RETURN_TIMEOUT too: requests raises ValueError (not a KhaimeError) on a bad one, so the
    # success page would answer 500 instead of "processing".
    for name in ("TIMEOUT", "RETURN_TIMEOUT"):
        timeout = getattr(khaime_settings, name)
        if not (
            isinstance(timeout, (tuple, list))
            and len(timeout) == 2
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in timeout)
        ):
            messages.append(
                Error(f"KHAIME[{name!r}] must be (connect, read) seconds, both positive.", id="khaime.E005")
            )
    retries = khaime_settings.MAX_RETRIES
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        messages.append(Error("KHAIME['MAX_RETRIES'] must be an integer from 0 to 10.", id="khaime.E006"))
    for name in khaime_settings.unknown_keys():
        messages.append(Warning(f"Unknown KHAIME setting {name!r} is ignored.", id="khaime.W003"))
    return messages

"""System checks (`manage.py check`) for the KHAIME settings, the URLs and the site's origin.

Every id here is documented with its fix in ``docs/troubleshooting.md`` (a test keeps it so).
"""

from __future__ import annotations

import difflib
import re
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.urls import NoReverseMatch, reverse

from . import task_engine
from .conf import DEFAULT_API_BASE_URL, DEFAULTS, khaime_settings
from .defaults import EMULATOR_WEBHOOK_SECRET
from .return_urls import is_loopback_host

KEY_PATTERN = re.compile(r"^pk_(sandbox|live)_[A-Za-z0-9_\-]+$")
KEY_HINT = (
    "Create a key in the Khaime dashboard (Settings > API & Integrations). Offline with the emulator any "
    "pk_sandbox_... string works, e.g. 'pk_sandbox_local'."
)


@register(Tags.security, "khaime")
def check_khaime_settings(app_configs=None, **kwargs):
    messages: list[CheckMessage] = []
    raw = getattr(settings, "KHAIME", None)
    if raw is not None and not isinstance(raw, dict):
        return [Error("settings.KHAIME must be a dict.", id="khaime.E000")]
    key = khaime_settings.API_KEY
    if not key:
        # A warning, not an error: migrate, makemigrations and collectstatic run without a key
        # (a container build, a first `migrate`); only paying needs one. `check --deploy` makes
        # it the error khaime.E001.
        messages.append(
            Warning(
                "KHAIME['API_KEY'] is not set: every checkout will fail until it is.",
                hint=KEY_HINT,
                id="khaime.W004",
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
                hint="Set the webhook URL and copy its whsec_... secret in the Khaime dashboard (Settings > API).",
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
    messages.extend(_live_key_with_emulator_settings())
    messages.extend(_unknown_settings())
    messages.extend(_site_url_checks())
    messages.extend(_processing_checks())
    return messages


PROCESSING_MODES = ("inline", "task")


def _processing_checks() -> list[CheckMessage]:
    """Task mode needs a task backend that really runs tasks somewhere else."""
    mode = khaime_settings.WEBHOOK_PROCESSING
    if mode not in PROCESSING_MODES:
        return [
            Error(
                f"KHAIME['WEBHOOK_PROCESSING'] is {mode!r}; it must be 'inline' or 'task'.",
                id="khaime.E012",
            )
        ]
    if mode != "task":
        return []
    problem = task_engine.backend_problem()
    if problem:
        return [
            Error(
                f"KHAIME['WEBHOOK_PROCESSING'] is 'task' but {problem}.",
                hint=(
                    "Configure settings.TASKS with a backend that runs tasks in a worker (django-tasks-db's "
                    "DatabaseBackend with `manage.py db_worker`, django-tasks-rq's RQBackend, ...), or set "
                    "KHAIME['WEBHOOK_PROCESSING'] = 'inline'. See docs/background.md."
                ),
                id="khaime.E011",
            )
        ]
    delay = khaime_settings.WEBHOOK_RECOVERY_DELAY
    messages: list[CheckMessage] = []
    if not hasattr(delay, "total_seconds") or delay.total_seconds() < 0:
        messages.append(
            Error("KHAIME['WEBHOOK_RECOVERY_DELAY'] must be a timedelta or seconds, not negative.", id="khaime.E013")
        )
    if task_engine.runs_in_process():
        messages.append(
            Warning(
                "KHAIME['WEBHOOK_PROCESSING'] is 'task' but the task backend runs each task inside the request "
                "that enqueues it (ImmediateBackend): webhooks are acknowledged no faster than inline.",
                hint="Use a backend with workers (django-tasks-db, django-tasks-rq) in production.",
                id="khaime.W007",
            )
        )
    return messages


def _live_key_with_emulator_settings() -> list[CheckMessage]:
    """A live key beside the emulator's published webhook secret lets anyone forge
    ``payment.succeeded``; beside a loopback API it means settings meant for development."""
    if not str(khaime_settings.API_KEY).startswith("pk_live_"):
        return []
    messages: list[CheckMessage] = []
    secrets = khaime_settings.WEBHOOK_SECRETS
    if isinstance(secrets, (list, tuple)) and EMULATOR_WEBHOOK_SECRET in secrets:
        messages.append(
            Error(
                f"A live Khaime key is configured with the emulator's published webhook secret "
                f"({EMULATOR_WEBHOOK_SECRET!r}): anyone can sign a payment.succeeded webhook.",
                hint="Set KHAIME['WEBHOOK_SECRETS'] to the whsec_... secret of your webhook in the Khaime dashboard.",
                id="khaime.E009",
            )
        )
    if is_loopback_host(urlsplit(khaime_settings.API_BASE_URL).hostname):
        messages.append(
            Error(
                "A live Khaime key is configured with KHAIME['API_BASE_URL'] on this machine (the emulator): "
                "the live key would be sent to whatever listens there, and no real payment would be made.",
                hint=f"Remove KHAIME['API_BASE_URL'] (default: {DEFAULT_API_BASE_URL}), or use a pk_sandbox_ key.",
                id="khaime.E010",
            )
        )
    return messages


def closest_setting(name: str) -> str | None:
    """The known KHAIME setting ``name`` was probably meant to be, or ``None``."""
    known = {known.upper(): known for known in DEFAULTS}
    matches = difflib.get_close_matches(str(name).upper(), list(known), n=1, cutoff=0.6)
    return known[matches[0]] if matches else None


def _unknown_settings() -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    configured = set(khaime_settings._user_settings())
    for name in khaime_settings.unknown_keys():
        meant = closest_setting(name)
        if meant == "API_BASE_URL" and "API_BASE_URL" not in configured:
            # The one misspelling that changes where money goes: without API_BASE_URL the app
            # talks to the real Khaime API, not the emulator or sandbox host that was meant.
            messages.append(
                Error(
                    f"Unknown KHAIME setting {name!r}: did you mean 'API_BASE_URL'? Without it, "
                    f"khaime-django talks to the live Khaime API ({DEFAULT_API_BASE_URL}).",
                    hint=f"Rename KHAIME[{name!r}] to KHAIME['API_BASE_URL'].",
                    id="khaime.E008",
                )
            )
            continue
        suggestion = f" Did you mean {meant!r}?" if meant else ""
        messages.append(
            Warning(
                f"Unknown KHAIME setting {name!r} is ignored.{suggestion}",
                hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
                id="khaime.W003",
            )
        )
    return messages


def _site_url_checks() -> list[CheckMessage]:
    """Without SITE_URL the return URLs come from the request: in production (DEBUG off) or with
    ALLOWED_HOSTS=["*"] that is whatever Host and scheme reached Django."""
    if khaime_settings.SITE_URL:
        return []
    messages: list[CheckMessage] = []
    if not settings.DEBUG:
        messages.append(
            Warning(
                "DEBUG is False and KHAIME['SITE_URL'] is not set: Khaime's success and cancel URLs are "
                "built from each request's Host and scheme.",
                hint=(
                    "Set KHAIME['SITE_URL'] = 'https://shop.example'. Behind a TLS proxy, also set "
                    "SECURE_PROXY_SSL_HEADER (and USE_X_FORWARDED_HOST if the proxy rewrites Host), or "
                    "buyers are sent back to http:// or 127.0.0.1."
                ),
                id="khaime.W005",
            )
        )
    if "*" in (settings.ALLOWED_HOSTS or []):
        messages.append(
            Warning(
                "ALLOWED_HOSTS contains '*' and KHAIME['SITE_URL'] is not set: any Host header a client "
                "sends becomes the address Khaime returns the buyer to.",
                hint="Set KHAIME['SITE_URL'] = 'https://shop.example', or list your hosts in ALLOWED_HOSTS.",
                id="khaime.W006",
            )
        )
    return messages


@register(Tags.security, "khaime", deploy=True)
def check_khaime_deploy(app_configs=None, **kwargs):
    """``manage.py check --deploy``: a site that takes payments needs its key."""
    if khaime_settings.API_KEY:
        return []
    return [Error("KHAIME['API_KEY'] is not set.", hint=KEY_HINT, id="khaime.E001")]


URL_NAMES = {
    "khaime:checkout": {},
    "khaime:success": {"reference": uuid.UUID(int=0)},
    "khaime:cancel": {"reference": uuid.UUID(int=0)},
    "khaime:webhook": {},
}


@register(Tags.urls, "khaime")
def check_khaime_urls(app_configs=None, **kwargs):
    """The buy button, the checkout and Khaime's webhooks need the app's URLs under the ``khaime``
    namespace; without them ``check`` would pass and the product page would fail with
    NoReverseMatch."""
    missing = []
    for name, kwargs_ in URL_NAMES.items():
        try:
            reverse(name, kwargs=kwargs_ or None)
        except NoReverseMatch:
            missing.append(name)
    if not missing:
        return []
    return [
        Error(
            f"The khaime_django URLs are not installed: {', '.join(missing)} cannot be reversed.",
            hint=(
                f'Add path("payments/", include("khaime_django.urls")) to urlpatterns in '
                f"{settings.ROOT_URLCONF} (the app's URL names live in the 'khaime' namespace)."
            ),
            id="khaime.E007",
        )
    ]

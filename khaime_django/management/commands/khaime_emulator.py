"""``manage.py khaime_emulator``: run the Khaime emulator wired to this project's settings.

Same options as ``python -m khaime_django.emulator``; what is not given comes from
``settings.KHAIME``: the first of ``WEBHOOK_SECRETS`` signs webhooks, ``EMULATOR_WEBHOOK_URL``
receives them, and the port is the one of ``API_BASE_URL`` when that points at this machine
(else 8765). This module is the only place that turns Django settings into emulator options.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand

from khaime_django.defaults import EMULATOR_PORT, EMULATOR_WEBHOOK_URL, LOOPBACK_HOSTS
from khaime_django.emulator.cli import add_arguments, options_from_args, serve


def django_defaults(khaime: Mapping) -> dict:
    """Emulator options taken from the ``KHAIME`` settings dict."""
    defaults = {
        "port": port_from_api_base_url(khaime.get("API_BASE_URL")),
        "webhook_url": khaime.get("EMULATOR_WEBHOOK_URL") or EMULATOR_WEBHOOK_URL,
    }
    secrets = khaime.get("WEBHOOK_SECRETS") or []
    if isinstance(secrets, str):
        secrets = [secrets]
    if secrets:
        defaults["webhook_secret"] = secrets[0]
    return defaults


def port_from_api_base_url(url: str | None) -> int:
    """The port of a loopback API base URL (the emulator is meant to answer there), else 8765."""
    parts = urlsplit(url or "")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.hostname in LOOPBACK_HOSTS and port:
        return port
    return EMULATOR_PORT


class Command(BaseCommand):
    help = "Run the offline Khaime Partner API emulator, delivering signed webhooks to this site."
    requires_system_checks = ()  # the emulator serves even while the KHAIME settings are incomplete

    def add_arguments(self, parser):
        add_arguments(
            parser,
            port_default=f"the port of KHAIME['API_BASE_URL'] when that is on loopback, else {EMULATOR_PORT}",
            webhook_url_default=f"KHAIME['EMULATOR_WEBHOOK_URL'], else {EMULATOR_WEBHOOK_URL}",
        )

    def handle(self, *args, **options):
        khaime = getattr(settings, "KHAIME", None) or {}
        emulator_options = options_from_args(argparse.Namespace(**options), django_defaults(khaime))
        status = serve(emulator_options, self.stdout, expected_api_base_url=khaime.get("API_BASE_URL"))
        if status:
            raise SystemExit(status)

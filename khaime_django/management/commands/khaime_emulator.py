"""``manage.py khaime_emulator``: run the Khaime emulator wired to this project's settings.

Same options as ``python -m khaime_django.emulator``; what is not given comes from
``settings.KHAIME``: the first of ``WEBHOOK_SECRETS`` signs webhooks, ``EMULATOR_WEBHOOK_URL``
(default http://127.0.0.1:8000/payments/webhook/) receives them, and the port is the one of
``API_BASE_URL`` when that points at this machine (else 8765).
"""

import argparse

from django.conf import settings
from django.core.management.base import BaseCommand

from khaime_django.emulator.cli import (
    add_arguments,
    django_defaults,
    options_from_args,
    serve,
)


class Command(BaseCommand):
    help = "Run the offline Khaime Partner API emulator, delivering signed webhooks to this site."
    requires_system_checks = ()  # the emulator serves even while the KHAIME settings are incomplete

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, **options):
        khaime = getattr(settings, "KHAIME", None) or {}
        emulator_options = options_from_args(argparse.Namespace(**options), django_defaults(khaime))
        status = serve(
            emulator_options,
            self.stdout,
            expected_api_base_url=khaime.get("API_BASE_URL"),
        )
        if status:
            raise SystemExit(status)

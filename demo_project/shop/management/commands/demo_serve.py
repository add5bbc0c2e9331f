"""Serves the demo shop, and the offline Khaime emulator beside it when no real key is set.

Ctrl-C stops both.
"""

from django.conf import settings
from django.core.management import BaseCommand, call_command

from khaime_django.conf import khaime_settings


class Command(BaseCommand):
    help = "Run the demo shop on 127.0.0.1:8000 with the Khaime emulator (unless KHAIME_API_KEY is set)."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, addrport, **options):
        emulator = None
        site = f"http://{addrport}"
        if khaime_settings.api_is_loopback:
            from khaime_django.emulator import Emulator
            from khaime_django.management.commands.khaime_emulator import django_defaults

            config = django_defaults(settings.KHAIME)
            config["webhook_url"] = f"{site}/payments/webhook/"
            emulator = Emulator(**config)
            emulator.start()
            self.stdout.write(f"Khaime emulator: {emulator.api_base_url} (webhooks -> {config['webhook_url']})")
            self.stdout.write(f"  its control API: {emulator.base_url}/_emulator/sessions")
        else:
            self.stdout.write(f"Talking to the real Khaime API at {khaime_settings.API_BASE_URL}")
        self.stdout.write(f"Shop:  {site}/")
        self.stdout.write(f"Admin: {site}/admin/")
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            if emulator is not None:
                emulator.stop()

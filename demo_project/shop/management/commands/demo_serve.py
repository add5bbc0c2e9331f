"""Serves the demo shop, and the offline Khaime emulator beside it when no real key is set. In
task mode (``KHAIME_WEBHOOK_PROCESSING=task make demo``) it also starts a ``manage.py db_worker``
that applies the webhooks the shop records.

Ctrl-C stops them all.
"""

import subprocess
import sys

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
        worker = self.start_worker()
        self.stdout.write(f"Shop:  {site}/")
        self.stdout.write(f"Admin: {site}/admin/")
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            if worker is not None:
                worker.terminate()
                try:
                    worker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.kill()
            if emulator is not None:
                emulator.stop()

    def start_worker(self):
        """Task mode: the database backend's worker, in its own process (it shares the terminal, so
        Ctrl-C reaches it too; the ``finally`` above makes sure it is gone)."""
        if khaime_settings.WEBHOOK_PROCESSING != "task":
            return None
        if "django_tasks_db" not in settings.INSTALLED_APPS:
            self.stderr.write("KHAIME_WEBHOOK_PROCESSING=task needs django-tasks-db (pip install -r requirements.txt).")
            raise SystemExit(1)
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--no-reload"], cwd=settings.BASE_DIR
        )
        self.stdout.write(f"Webhooks: task mode, applied by `manage.py db_worker` (pid {worker.pid})")
        return worker

"""Loads the demo products and an admin login (idempotent: safe to run again)."""

import os

from django.contrib.auth import get_user_model
from django.core.management import BaseCommand, call_command


class Command(BaseCommand):
    help = "Load the demo shop's products and create an admin user."

    def handle(self, *args, **options):
        call_command("loaddata", "demo_products", verbosity=0)
        username = os.environ.get("DEMO_ADMIN_USER", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=username, defaults={"email": "admin@example.com", "is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(f"Admin login: {username} / {password}")
        else:
            self.stdout.write(f"Admin login: {username} (already exists; password unchanged)")
        self.stdout.write("Products loaded.")

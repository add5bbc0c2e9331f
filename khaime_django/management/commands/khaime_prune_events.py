"""``manage.py khaime_prune_events --older-than 30d``: keep the webhook inbox small.

Deletes applied, ignored and duplicate events received before the cutoff, in batches. Events
that ended in error or unmatched (or never finished) are kept for a human unless
``--include-failed`` is given. Every run (with or without ``--older-than``) also redacts the
customer's personal data from payloads older than ``KHAIME["WEBHOOK_PAYLOAD_RETENTION"]``.
A daily cron line::

    30 3 * * *  cd /srv/shop && .venv/bin/python manage.py khaime_prune_events --older-than 30d
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from khaime_django import services
from khaime_django.conf import khaime_settings
from khaime_django.management.durations import describe, duration


class Command(BaseCommand):
    help = (
        "Delete old processed webhook events (applied, ignored, duplicate) in batches, and redact personal data "
        "from payloads older than KHAIME['WEBHOOK_PAYLOAD_RETENTION']."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=duration("d", units="hdw"),
            default=None,
            help='Age of the events to delete: days, or "36h", "30d", "4w". Without it, only redact.',
        )
        parser.add_argument(
            "--include-failed",
            action="store_true",
            help="Also delete events that ended in error or unmatched.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing.",
        )

    def handle(self, *args, older_than, include_failed, dry_run, **options):
        verb = "would delete" if dry_run else "deleted"
        if older_than is not None:
            count = services.prune_webhook_events(older_than=older_than, include_failed=include_failed, dry_run=dry_run)
            kept = "" if include_failed else "; error and unmatched events kept"
            self.stdout.write(
                f"khaime_prune_events: {verb} {count} webhook events older than {describe(older_than)}{kept}"
            )
        retention = khaime_settings.WEBHOOK_PAYLOAD_RETENTION
        if retention is None:
            if older_than is None:
                self.stdout.write("khaime_prune_events: nothing to do (no --older-than, no payload retention)")
            return
        if not isinstance(retention, timedelta) or retention <= timedelta(0):
            raise CommandError(
                "KHAIME['WEBHOOK_PAYLOAD_RETENTION'] must be a positive timedelta, a number of days, or None."
            )
        redacted = services.redact_webhook_payloads(older_than=retention, dry_run=dry_run)
        verb = "would redact" if dry_run else "redacted"
        self.stdout.write(
            f"khaime_prune_events: {verb} personal data in {redacted} webhook payloads older than {describe(retention)}"
        )

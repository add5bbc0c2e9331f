"""``manage.py khaime_prune_events --older-than 30d``: keep the webhook inbox small.

Deletes applied, ignored and duplicate events received before the cutoff, in batches. Events
that ended in error or unmatched (or never finished) are kept for a human unless
``--include-failed`` is given. A daily cron line::

    30 3 * * *  cd /srv/shop && .venv/bin/python manage.py khaime_prune_events --older-than 30d
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from khaime_django import services
from khaime_django.management.durations import describe, duration


class Command(BaseCommand):
    help = "Delete old processed webhook events (applied, ignored, duplicate) in batches."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=duration("d", units="hdw"),
            required=True,
            help='Age of the events to delete: days, or "36h", "30d", "4w".',
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
        count = services.prune_webhook_events(older_than=older_than, include_failed=include_failed, dry_run=dry_run)
        kept = "" if include_failed else "; error and unmatched events kept"
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"khaime_prune_events: {verb} {count} webhook events older than {describe(older_than)}{kept}")

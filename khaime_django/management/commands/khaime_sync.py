"""``manage.py khaime_sync``: reconcile sessions with Khaime when webhooks were missed.

Run it from cron, e.g. every 10 minutes (asks Khaime, within the request budget) and hourly with
``--offline`` (expires sessions long past ``expires_at`` without a request)::

    */10 * * * *  cd /srv/shop && .venv/bin/python manage.py khaime_sync --budget 100
    5 * * * *     cd /srv/shop && .venv/bin/python manage.py khaime_sync --offline

Both also apply webhook events still waiting (``received``) after KHAIME["WEBHOOK_RECOVERY_DELAY"]:
in task mode, what a lost enqueue or a crashed worker left behind.

Exits non-zero only when Khaime could not be used at all (no request got an answer, or the API
key was refused), so cron mail or monitoring hears about outages and not about single errors.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from khaime_django import services
from khaime_django.exceptions import KhaimeConfigurationError
from khaime_django.management.durations import duration
from khaime_django.services.subscriptions import SubscriptionSyncReport, sells_subscriptions, sync_subscriptions


class Command(BaseCommand):
    help = (
        "Ask Khaime about sessions still pending or cancelled after a grace period and apply the "
        "answers (at most --budget requests, stopping at a 429); with --offline, expire sessions past "
        "expires_at without asking Khaime. Both modes move sessions abandoned while being created to error."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--budget",
            type=int,
            default=100,
            help="Most requests to Khaime this run (default 100; Khaime allows 1,000 an hour per key).",
        )
        parser.add_argument(
            "--grace",
            type=duration("m"),
            default=None,
            help="Leave sessions this young alone; expire offline only this long past expires_at. "
            'Minutes, or "30s", "10m", "2h" (default KHAIME["SYNC_GRACE"], 10 minutes).',
        )
        parser.add_argument(
            "--offline",
            action="store_true",
            help="Do not call Khaime: expire sessions whose expires_at is past by the grace.",
        )
        parser.add_argument(
            "--skip-subscriptions",
            action="store_true",
            help="Do not reconcile subscriptions (by default they share what the sessions left of --budget).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would change; change nothing.",
        )

    def handle(self, *args, budget, grace, offline, dry_run, verbosity, **options):
        if budget < 0:
            raise CommandError("--budget cannot be negative.")
        # Both modes: a row left in `created` by a request that died needs no request to Khaime.
        abandoned = services.abandon_stale_created(dry_run=dry_run)
        if offline:
            report = services.SyncReport(dry_run=dry_run, offline=True)
            report.expired_offline = services.expire_stale(grace=grace, dry_run=dry_run)
        else:

            def show(session, before, after):
                if dry_run or verbosity >= 2:
                    verb = "would change" if dry_run else "changed"
                    self.stdout.write(f"{session.reference} ({session.session_id}): {verb} {before} -> {after}")

            try:
                report = services.sync_sessions(budget=budget, grace=grace, dry_run=dry_run, on_change=show)
            except KhaimeConfigurationError as error:
                raise CommandError(f"{error} (--offline needs no API key)") from None
            if (
                not (report.stopped or report.unreachable or options.get("skip_subscriptions"))
                and sells_subscriptions()
            ):
                self.sync_subscriptions(budget - report.requests, dry_run=dry_run, verbosity=verbosity)
        report.abandoned = abandoned
        self.stdout.write(format_report(report))
        self.apply_waiting_events(dry_run=dry_run)
        if report.unreachable:
            raise CommandError("Khaime could not be reached (or refused the API key); nothing was synced.")

    def apply_waiting_events(self, *, dry_run: bool) -> None:
        """Webhook events recorded but still not applied after KHAIME["WEBHOOK_RECOVERY_DELAY"]
        (a lost enqueue, a crashed worker) are applied here; no request to Khaime."""
        count = services.apply_waiting_events(dry_run=dry_run)
        if count:
            verb = "would apply" if dry_run else "applied"
            self.stdout.write(f"khaime_sync: {verb} {count} webhook events still waiting after the recovery delay")

    def sync_subscriptions(self, budget: int, *, dry_run: bool, verbosity: int) -> None:
        def show(subscription_id, before, after):
            if dry_run or verbosity >= 2:
                verb = "would change" if dry_run else "changed"
                self.stdout.write(f"{subscription_id}: {verb} {before} -> {after}")

        report = sync_subscriptions(budget=budget, dry_run=dry_run, on_change=show)
        self.stdout.write(format_subscription_report(report))


def format_subscription_report(report: SubscriptionSyncReport) -> str:
    """The subscriptions line of a khaime_sync run."""
    verb = "would change" if report.dry_run else "changed"
    line = (
        f"khaime_sync subscriptions: listed {report.listed}, fetched {report.fetched}, {verb} {report.changed}, "
        f"renewals found {report.renewals}, errors {report.errors}, requests {report.requests}"
    )
    if report.stopped:
        line += f"; stopped early: {report.stopped}"
    return line


def format_report(report: services.SyncReport) -> str:
    """The last line a khaime_sync run prints."""
    if report.offline:
        verb = "would expire" if report.dry_run else "expired"
        return (
            f"khaime_sync --offline: {verb} {report.expired_offline} sessions past expires_at"
            + _abandoned(report)
            + ", requests 0"
        )
    verb = "would change" if report.dry_run else "changed"
    changed = sum(report.changed.values())
    per_status = ", ".join(f"{status} {count}" for status, count in sorted(report.changed.items()))
    parts = [
        f"checked {report.checked}",
        f"{verb} {changed}" + (f" ({per_status})" if per_status else ""),
        f"errors {report.errors}",
        f"requests {report.requests}",
    ]
    line = "khaime_sync: " + ", ".join(parts) + _abandoned(report)
    if report.stopped:
        line += f"; stopped early: {report.stopped}"
    return line + (" (dry run: nothing was changed)" if report.dry_run else "")


def _abandoned(report: services.SyncReport) -> str:
    if not report.abandoned:
        return ""
    verb = "would move" if report.dry_run else "moved"
    return f", {verb} {report.abandoned} abandoned while creating to error"

"""The webhook inbox in the Django admin: the events Khaime sent, read-only, the "Apply again"
action for those that failed on our side or matched no session, and the warnings about failed
deliveries that the inbox and the payment session pages show."""

from __future__ import annotations

import json
from collections import Counter

from django.contrib import admin, messages
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import services
from ..conf import khaime_settings
from ..models import PaymentSession, WebhookEvent, WebhookOutcome
from .base import pasted_reference


def failed_deliveries():
    """Webhook events whose last delivery failed on our side. Khaime stops retrying after three
    attempts, and reconciliation cannot recover a refund or dispute (Khaime's session still says
    completed), so each needs an operator: fix the cause, then "Apply again"."""
    return WebhookEvent.objects.filter(outcome=WebhookOutcome.ERROR)


def warn_about_failed_deliveries(request, site_name: str) -> None:
    count = failed_deliveries().count()
    if count:
        url = reverse(f"{site_name}:khaime_django_webhookevent_changelist") + "?outcome__exact=error"
        text = ngettext(
            "%(n)d webhook delivery ended in error and changed nothing",
            "%(n)d webhook deliveries ended in error and changed nothing",
            count,
        ) % {"n": count}
        messages.warning(
            request,
            format_html('{}: <a href="{}">{}</a>', text, url, _('review them, fix the cause, then "Apply again"')),
        )


def warn_about_session_deliveries(request, site_name: str, session: PaymentSession) -> None:
    """Name the failed deliveries about ``session`` (linked, or naming its reference)."""
    events = failed_deliveries().filter(
        Q(session=session) | Q(payload__data__metadata__reference=str(session.reference))
    )
    links = [
        (reverse(f"{site_name}:khaime_django_webhookevent_change", args=[event.pk]), event.event_type, event.event_id)
        for event in events.order_by("-received_at")[:10]
    ]
    if links:
        messages.warning(
            request,
            format_html(
                "{} {}",
                _("Khaime's news about this session ended in error and was not applied; it may be out of date:"),
                format_html_join(", ", '<a href="{}">{} {}</a>', links),
            ),
        )


def describe_wait(age) -> str:
    seconds = int(age.total_seconds()) if age is not None else 0
    if seconds < 120:
        return ngettext("%(n)d second", "%(n)d seconds", seconds) % {"n": seconds}
    if seconds < 7200:
        return ngettext("%(n)d minute", "%(n)d minutes", seconds // 60) % {"n": seconds // 60}
    return ngettext("%(n)d hour", "%(n)d hours", seconds // 3600) % {"n": seconds // 3600}


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    """The webhook inbox. Read-only: events are what Khaime sent. An event that failed on our
    side or matched no session can be applied again, through the same service as the webhook."""

    list_display = (
        "event_id",
        "event_type",
        "outcome",
        "is_live",
        "received_at",
        "processed_at",
        "deliveries",
        "session_link",
    )
    list_filter = ("event_type", "outcome", "is_live", "received_at")
    search_fields = ("event_id", "session__session_id")
    search_help_text = _("Event id (evt_…), Khaime session id (sess_…), or payment session reference.")
    date_hierarchy = "received_at"
    ordering = ("-received_at",)
    list_select_related = ("session",)
    show_full_result_count = False
    list_per_page = 50
    actions = ("apply_again",)
    fields = (
        "event_id",
        "event_type",
        "api_version",
        "is_live",
        "outcome",
        "detail",
        "error",
        "session_link",
        "received_at",
        "processed_at",
        "deliveries",
        "redacted_at",
        "pretty_payload",
    )
    readonly_fields = fields

    #: Outcomes "Apply again" acts on: our own failure, no session found, or an interrupted apply.
    APPLICABLE_AGAIN = (WebhookOutcome.ERROR, WebhookOutcome.UNMATCHED, WebhookOutcome.RECEIVED)

    def has_add_permission(self, request):
        return False  # events come from Khaime, signed

    def has_delete_permission(self, request, obj=None):
        # The stored event_id is what refuses a replay; a deleted event would be accepted again.
        # Old events go through manage.py khaime_prune_events, which keeps that guarantee.
        return False

    def changelist_view(self, request, extra_context=None):
        """Says how many events wait to be applied (task mode's queue, or an interrupted apply)
        and for how long the oldest has: a stuck worker shows here before buyers notice; and how
        many deliveries ended in error."""
        warn_about_failed_deliveries(request, self.admin_site.name)
        count, oldest = services.waiting_summary()
        if count:
            delay = khaime_settings.WEBHOOK_RECOVERY_DELAY
            late = oldest is not None and oldest > delay
            self.message_user(
                request,
                ngettext(
                    "%(n)d event waits to be applied; it has waited %(age)s.",
                    "%(n)d events wait to be applied; the oldest has waited %(age)s.",
                    count,
                )
                % {"n": count, "age": describe_wait(oldest)}
                + (" " + str(_("Past the recovery delay: is a task worker running, and khaime_sync?")) if late else ""),
                messages.WARNING if late else messages.INFO,
            )
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("payment session"), ordering="session")
    def session_link(self, obj):
        if obj.session_id is None:
            return "—"
        url = reverse(f"{self.admin_site.name}:khaime_django_paymentsession_change", args=[obj.session_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.session.reference)[:8])

    @admin.display(description=_("payload"))
    def pretty_payload(self, obj):
        text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    def get_search_results(self, request, queryset, search_term):
        """Exact, indexed look-ups for what people paste: an event id, a session id, a reference."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if (reference := pasted_reference(term)) is not None:
            return queryset.filter(session__reference=reference), False
        if term.startswith("sess_"):
            return queryset.filter(session__session_id=term), False
        return queryset.filter(event_id=term), False

    @admin.action(description=_("Apply again"), permissions=["change"])
    def apply_again(self, request, queryset):
        outcomes: Counter[str] = Counter()
        skipped = queryset.exclude(outcome__in=self.APPLICABLE_AGAIN).count()
        for record in queryset.filter(outcome__in=self.APPLICABLE_AGAIN).iterator():
            outcomes[services.apply_webhook_event_again(record)] += 1
        parts = [f"{WebhookOutcome(outcome).label.lower()} {count}" for outcome, count in sorted(outcomes.items())]
        if skipped:
            parts.append(_("%(n)d skipped (already processed)") % {"n": skipped})
        self.message_user(
            request,
            _("Applied again: %(summary)s.") % {"summary": ", ".join(parts) or _("nothing to do")},
            messages.WARNING
            if outcomes[WebhookOutcome.ERROR] or outcomes[WebhookOutcome.UNMATCHED]
            else messages.SUCCESS,
        )

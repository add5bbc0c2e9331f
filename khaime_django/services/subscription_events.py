"""Subscriptions in webhook events: ``subscription.*`` events (``EVENT_HANDLERS["subscription"]``),
and the subscription side of a ``payment.*`` event that names one (``ledger``'s handler calls
it). Each event becomes one report, applied by ``subscription_reports``, as of the event's
``occurred_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from .. import signals
from ..models import Payment, PaymentSession, Subscription, WebhookEvent, WebhookOutcome
from ..subscription_statuses import EVENT_SUBSCRIPTION_STATUS, SubscriptionStatus
from ..timestamps import parse_timestamp
from ..webhooks import KhaimeEvent
from .events import Applied
from .subscription_payloads import status_of, subscription_id_of
from .subscription_reports import ReportResult, apply_subscription_report, on_commit_send

#: Statuses a received payment moves to ``active`` (when the payment is the newest report).
PAYABLE_STATUSES = (SubscriptionStatus.PENDING, SubscriptionStatus.DUE)


def apply_subscription_event(record: WebhookEvent, event: KhaimeEvent, source: str) -> Applied:
    """``EVENT_HANDLERS["subscription"]``: apply a ``subscription.*`` event's subscription object."""
    data = event.data
    kind = data.get("object")
    if kind is not None and kind != "subscription":
        return Applied(
            WebhookOutcome.IGNORED, detail=f"{event.event_type} carries a {kind!r} object, not a subscription"
        )
    if subscription_id_of(data, "id", "subscription_id") is None:
        return Applied(WebhookOutcome.IGNORED, detail=f"{event.event_type} names no subscription id")
    status = status_of(data) or EVENT_SUBSCRIPTION_STATUS.get(event.event_type)
    if event.event_type == "subscription.trial_ending" and status is None:
        status = SubscriptionStatus.TRIALING
    result = apply_subscription_report(
        data,
        status=status,
        occurred_at=_occurred_at(event, record),
        is_live=event.is_live,
        source=source,
        detail=f"{event.event_type} {event.event_id}",
    )
    if event.event_type == "subscription.trial_ending" and _claim_trial_ending(result.subscription):
        on_commit_send(signals.subscription_trial_ending, subscription=result.subscription)
        result.fields_changed = True
    outcome = WebhookOutcome.APPLIED if result.changed else WebhookOutcome.DUPLICATE
    if not result.newest and not result.payments_recorded:
        outcome = WebhookOutcome.IGNORED
    return Applied(outcome, result.subscription.session, result.describe())


def subscription_id_of_payment(event: KhaimeEvent) -> str | None:
    """The ``sub_...`` id a payment event names (``data.subscription_id``), or None."""
    subscription_id = subscription_id_of(event.data, "subscription_id")
    if subscription_id is None:
        nested = event.data.get("subscription")
        subscription_id = subscription_id_of(nested, "id") if isinstance(nested, Mapping) else None
    return subscription_id


def apply_subscription_payment(
    record: WebhookEvent,
    event: KhaimeEvent,
    source: str,
    payment: Payment | None,
    session: PaymentSession | None,
    claimed: tuple[Subscription, bool],
) -> ReportResult:
    """The subscription side of a ``payment.*`` event that names ``data.subscription_id``
    (``claimed`` is its row, locked by ``claim_subscription`` before the payment was
    recorded): link the payment, send ``subscription_renewed`` once if it is a renewal; a newer
    ``payment.failed`` makes the subscription ``due``, a newer payment makes a pending or due
    one ``active``."""
    subscription_id = claimed[0].subscription_id
    failed = event.event_type == "payment.failed"
    # A payment received for a subscription still pending or due (its subscription.created or
    # .renewed lost or late) makes it active; for any other status it says nothing new.
    paid = not failed and payment is not None and claimed[0].status in PAYABLE_STATUSES
    report = {"id": subscription_id}
    if session is not None:
        report["session_id"] = session.session_id or ""
    return apply_subscription_report(
        report,
        status=SubscriptionStatus.DUE if failed else SubscriptionStatus.ACTIVE if paid else None,
        occurred_at=_occurred_at(event, record),
        is_live=event.is_live,
        source=source,
        detail=f"{event.event_type} {event.event_id}",
        session=session,
        payment=payment,
        state=failed or paid,
        strictly_newer=True,
        claimed=claimed,
    )


def _occurred_at(event: KhaimeEvent, record: WebhookEvent) -> datetime:
    return parse_timestamp(event.payload.get("occurred_at")) or record.received_at


def _claim_trial_ending(subscription: Subscription) -> bool:
    """Claim the one ``subscription_trial_ending`` of the subscription's current trial end."""
    ends = subscription.trial_ends_at or subscription.started_at or subscription.created_at
    return bool(
        Subscription.objects.filter(pk=subscription.pk)
        .exclude(trial_ending_notified_for=ends)
        .update(trial_ending_notified_for=ends)
    )

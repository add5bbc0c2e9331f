"""``subscription.*`` webhook events, and the subscription side of payment events and
reconciliation: one :class:`~khaime_django.models.Subscription` per Khaime ``sub_...`` id, kept
as new as the newest report about it.

Every report (an event's subscription object, a ``GET /subscriptions`` item, a payment event
naming a subscription) goes through :func:`apply_subscription_report`:

1. the row is upserted by ``subscription_id`` (a ``renewed`` before ``created`` creates it);
2. every payment in ``payment_history`` is recorded in the ledger, by transaction id, whether or
   not the report is the newest: payments are facts, not state;
3. the report's state (status, next payment date, ...) is applied only when it is not older than
   the newest one applied: by ``occurred_at``; within one second (Khaime's resolution) by the
   number of payments it lists, then by how far along its status is (``STATUS_RANK``);
4. payments are classified: the oldest of ``payment_history`` is the checkout's, every other one a
   renewal; each renewal sends ``subscription_renewed`` once (a conditional UPDATE claims it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import signals
from ..client import get_client
from ..conf import khaime_settings
from ..exceptions import KhaimeAuthenticationError, KhaimeError, KhaimeRateLimitError
from ..models import Mode, Payment, PaymentSession, Source, Subscription, WebhookEvent, WebhookOutcome
from ..subscription_statuses import EVENT_SUBSCRIPTION_STATUS, STATUS_RANK, SubscriptionStatus
from ..timestamps import parse_timestamp
from ..transitions import ReceiverErrorHook, current_receiver_error_hook, send_robust, transition
from ..webhooks import KhaimeEvent
from . import ledger
from .events import Applied
from .subscription_payloads import (  # noqa: F401  (the constants are re-exported)
    MAX_SUBSCRIPTION_ID,
    MONEY_RECEIVED,
    payment_history,
    reported_fields,
    starting_session,
    status_of,
    subscription_id_of,
)

logger = logging.getLogger(__name__)

#: Statuses a received payment moves to ``active`` (when the payment is the newest report).
PAYABLE_STATUSES = (SubscriptionStatus.PENDING, SubscriptionStatus.DUE)


@dataclass
class ReportResult:
    """What applying one report did."""

    subscription: Subscription
    created: bool = False
    newest: bool = True
    status_changed: bool = False
    fields_changed: bool = False
    payments_recorded: list[str] = field(default_factory=list)
    renewals: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.created or self.status_changed or self.fields_changed or bool(self.payments_recorded)

    def describe(self) -> str:
        sub = self.subscription
        parts = []
        if self.created:
            parts.append(f"subscription {sub.subscription_id} recorded")
        if self.status_changed:
            parts.append(f"subscription is now {sub.status}")
        elif self.fields_changed:
            parts.append("subscription updated")
        if not self.newest:
            parts.append(f"an older report than the one applied ({sub.status}): state kept")
        if self.payments_recorded:
            parts.append("recorded payment " + ", ".join(self.payments_recorded))
        if self.renewals:
            parts.append("renewal " + ", ".join(self.renewals))
        return "; ".join(parts) or f"subscription {sub.subscription_id} was already {sub.status}"


# -- the webhook handlers --------------------------------------------------------------------------


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
        _on_commit_send(signals.subscription_trial_ending, subscription=result.subscription)
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
    (``claimed`` is its row, locked by :func:`claim_subscription` before the payment was
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


# -- one report ------------------------------------------------------------------------------------


def apply_subscription_report(
    data: Mapping[str, Any],
    *,
    status: str | None,
    occurred_at: datetime,
    source: str,
    detail: str,
    is_live: bool | None = None,
    session: PaymentSession | None = None,
    payment: Payment | None = None,
    state: bool = True,
    strictly_newer: bool = False,
    claimed: tuple[Subscription, bool] | None = None,
) -> ReportResult:
    """Apply what ``data`` (a subscription object, or part of one) says, as of ``occurred_at``.
    ``status`` is the status it implies (None: it says nothing about the status). ``payment``
    is a ledger row the report is about (a payment event's). ``state=False``: the report says
    nothing about the subscription's state (a ``payment.succeeded``): only payments and links
    are recorded. ``strictly_newer``: a report of the same second as the newest applied one
    changes nothing (a ``payment.failed``, which lists no payments to order it by). ``claimed``:
    what :func:`claim_subscription` answered, when the caller already locked the row. Call inside
    a transaction."""
    subscription_id = subscription_id_of(data, "id", "subscription_id")
    if subscription_id is None:
        raise ValueError("the report names no subscription id")
    if session is None:
        session = starting_session(data)
    history = payment_history(data)
    with transaction.atomic():
        subscription, created = claimed or claim_subscription(subscription_id, session=session, is_live=is_live)
        result = ReportResult(subscription, created=created)
        first = history[0][0].transaction_id if history else ""
        if first and not subscription.first_transaction_id:
            _update(subscription, first_transaction_id=first)
        # One query for the payments already linked, so a long history costs no INSERT per entry.
        linked = set(
            Payment.objects.filter(
                transaction_id__in=[facts.transaction_id for facts, _status in history], subscription__isnull=False
            ).values_list("transaction_id", flat=True)
        )
        for facts, _status in history:
            if facts.transaction_id in linked:
                continue
            recorded, new = ledger.record_payment(facts, session=subscription.session, subscription=subscription)
            if new and recorded is not None:
                result.payments_recorded.append(recorded.transaction_id)
        if payment is not None and payment.subscription_id is None:
            Payment.objects.filter(pk=payment.pk).update(subscription=subscription)
            payment.subscription = subscription
        if state:
            result.newest = _is_newest(subscription, occurred_at, len(history) if history else None, status)
            last = subscription.last_event_at
            if strictly_newer and last is not None and occurred_at <= last:
                result.newest = False
        if state and result.newest:
            result.fields_changed = _apply_fields(subscription, data, session, occurred_at, len(history) or None)
            if status is not None and status != subscription.status:
                result.status_changed = transition(subscription, status, source=source, detail=detail)
        result.renewals = _send_renewals(subscription)
    return result


def claim_subscription(
    subscription_id: str, *, session: PaymentSession | None, is_live: bool | None
) -> tuple[Subscription, bool]:
    """The row of ``subscription_id``, inserted if new (``subscription_created`` then goes out on
    commit), locked until the transaction ends. Every path locks the subscription before it
    records any of its payments, so two reports of one renewal cannot deadlock."""
    subscription, created = ledger.insert_or_get(
        Subscription, {"subscription_id": subscription_id}, _initial_fields(session, is_live)
    )
    if created:
        _on_commit_send(signals.subscription_created, subscription=subscription)
    return subscription, created


def _is_newest(subscription: Subscription, occurred_at: datetime, payments: int | None, status: str | None) -> bool:
    """Is a report of ``occurred_at`` listing ``payments`` payments and implying ``status`` at
    least as new as the newest applied to ``subscription``?"""
    if subscription.last_event_at is None:
        return True
    if occurred_at != subscription.last_event_at:
        return occurred_at > subscription.last_event_at
    if payments is not None and payments != subscription.last_payment_count:
        return payments > subscription.last_payment_count
    if status is None:
        return True
    return STATUS_RANK[status] >= STATUS_RANK[subscription.status]


def _initial_fields(session: PaymentSession | None, is_live: bool | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"session": session, "user": session.user if session is not None else None}
    if is_live is not None:
        fields["mode"] = Mode.LIVE if is_live else Mode.SANDBOX
    elif session is not None:
        fields["mode"] = session.mode
    if session is not None:
        fields.update(
            customer_email=session.customer_email,
            product_id=session.product_id,
            product_name=session.product_name,
            frequency=session.subscription_frequency_key,
            currency=session.currency,
            amount=session.total_amount if session.total_amount is not None else session.amount,
        )
    return fields


def _apply_fields(
    subscription: Subscription,
    data: Mapping[str, Any],
    session: PaymentSession | None,
    occurred_at: datetime,
    payments: int | None,
) -> bool:
    """Copy what the report says onto the row (the status aside). True when something Khaime
    reports changed (our own bookkeeping does not count)."""
    reported = reported_fields(data)
    if session is not None and subscription.session_id is None:
        reported["session"] = session
        if subscription.user_id is None and session.user_id is not None:
            reported["user_id"] = session.user_id
    changed = {name: value for name, value in reported.items() if getattr(subscription, name) != value}
    bookkeeping: dict[str, Any] = {"last_event_at": occurred_at}
    if payments is not None:
        bookkeeping["last_payment_count"] = payments
    _update(subscription, **changed, **bookkeeping)
    return bool(changed)


def _update(subscription: Subscription, **fields: Any) -> None:
    if not fields:
        return
    Subscription.objects.filter(pk=subscription.pk).update(updated_at=timezone.now(), **fields)
    for name, value in fields.items():
        setattr(subscription, name, value)


def _send_renewals(subscription: Subscription) -> list[str]:
    """Classify the subscription's unclassified payments once its first one is known, and send
    ``subscription_renewed`` once per renewal (the conditional UPDATE is the claim)."""
    first = subscription.first_transaction_id
    if first:
        unknown = Payment.objects.filter(subscription=subscription, is_renewal__isnull=True)
        unknown.filter(transaction_id=first).update(is_renewal=False)
        unknown.exclude(transaction_id=first).update(is_renewal=True)
    sent = []
    pending = Payment.objects.filter(subscription=subscription, is_renewal=True, renewal_signalled_at__isnull=True)
    for payment in pending.order_by("paid_at", "pk"):
        if Payment.objects.filter(pk=payment.pk, renewal_signalled_at__isnull=True).update(
            renewal_signalled_at=timezone.now()
        ):
            _on_commit_send(signals.subscription_renewed, subscription=subscription, payment=payment)
            sent.append(payment.transaction_id)
    return sent


def _claim_trial_ending(subscription: Subscription) -> bool:
    """Claim the one ``subscription_trial_ending`` of the subscription's current trial end."""
    ends = subscription.trial_ends_at or subscription.started_at or subscription.created_at
    return bool(
        Subscription.objects.filter(pk=subscription.pk)
        .exclude(trial_ending_notified_for=ends)
        .update(trial_ending_notified_for=ends)
    )


def _on_commit_send(signal, **kwargs: Any) -> None:
    transaction.on_commit(partial(_send, signal, current_receiver_error_hook(), kwargs))


def _send(signal, hook: ReceiverErrorHook | None, kwargs: dict[str, Any]) -> None:
    errors = send_robust(signal, sender=Subscription, **kwargs)
    if errors and hook is not None:
        hook(errors)


def _occurred_at(event: KhaimeEvent, record: WebhookEvent) -> datetime:
    return parse_timestamp(event.payload.get("occurred_at")) or record.received_at


# -- reconciliation --------------------------------------------------------------------------------

#: ``GET /subscriptions`` page size: Khaime's largest.
SYNC_PAGE_SIZE = 100


@dataclass
class SubscriptionSyncReport:
    """What the subscription part of one khaime_sync run did."""

    dry_run: bool = False
    requests: int = 0
    listed: int = 0
    fetched: int = 0
    changed: int = 0
    renewals: int = 0
    errors: int = 0
    stopped: str = ""
    unreachable: bool = False


def sync_subscriptions(
    *,
    budget: int = 100,
    dry_run: bool = False,
    client: Any = None,
    on_change: Any = None,
) -> SubscriptionSyncReport:
    """Bring every subscription up to date with Khaime, spending at most ``budget`` requests and
    stopping at the first 429: ``GET /subscriptions`` 100 a page (oldest first), and
    ``GET /subscriptions/{id}`` only for one the list cannot settle: unknown here, or whose
    ``next_payment_date`` moved (a renewal: its payment is only in ``payment_history``). A status
    change alone is applied from the list. Each page's details are fetched before the next page
    is asked for, so a small budget settles some subscriptions fully rather than many partly.
    ``on_change(subscription_id, before, after)`` is called for every change (or would-be change).
    """
    report = SubscriptionSyncReport(dry_run=dry_run)
    client = client or get_client(max_retries=0)
    is_live = khaime_settings.mode == Mode.LIVE
    offset = 0

    def ask(call, *args, stop_on_error: bool = True, **kwargs) -> dict | None:
        report.requests += 1
        try:
            return call(*args, **kwargs)
        except KhaimeRateLimitError:
            report.stopped = "Khaime rate limit (429)"
        except KhaimeAuthenticationError as error:
            report.errors += 1
            report.stopped = "Khaime refused the API key"
            report.unreachable = True
            logger.error("khaime_sync: %s", error)
        except KhaimeError as error:
            report.errors += 1
            logger.warning("khaime_sync: subscriptions: %s", error)
            if stop_on_error:  # a page we cannot read: the offsets after it mean nothing
                report.stopped = f"Khaime failed: {error}"
        return None

    while report.requests < budget and not report.stopped:
        page = ask(client.list_subscriptions, limit=SYNC_PAGE_SIZE, offset=offset)
        if page is None:
            break
        items = [item for item in page["subscriptions"] if subscription_id_of(item, "id")]
        report.listed += len(items)
        for item in items:
            if report.stopped:
                break
            local = Subscription.objects.filter(subscription_id=subscription_id_of(item, "id")).first()
            data: Mapping[str, Any] = item
            if _needs_detail(local, item):
                if report.requests >= budget:
                    report.stopped = "budget spent"
                    break
                detail = ask(client.get_subscription, item["id"], stop_on_error=False)
                if detail is None:
                    continue  # one subscription Khaime could not answer about; the next run asks again
                report.fetched += 1
                data = detail
            _reconcile_one(report, local, data, is_live=is_live, on_change=on_change)
        offset += len(page["subscriptions"])
        total = page.get("total")
        if not page["subscriptions"] or (isinstance(total, int) and offset >= total):
            break
    if report.requests and report.errors == report.requests:
        report.unreachable = True
    return report


def sells_subscriptions() -> bool:
    """Has this shop ever sold a subscription? khaime_sync asks Khaime about subscriptions only
    then, so a shop without any spends no request on them."""
    return Subscription.objects.exists() or PaymentSession.objects.exclude(subscription_frequency_key="").exists()


def _needs_detail(local: Subscription | None, item: Mapping[str, Any]) -> bool:
    if local is None:
        return True
    if isinstance(item.get("payment_history"), list):
        return False  # the list already carries what a detail would
    return parse_timestamp(item.get("next_payment_date")) != local.next_payment_date


def _reconcile_one(
    report: SubscriptionSyncReport, local: Subscription | None, data: Mapping[str, Any], *, is_live: bool, on_change
) -> None:
    status = status_of(data)
    before = local.status if local is not None else None
    if report.dry_run:
        if local is None or (status is not None and status != local.status) or _needs_detail(local, data):
            report.changed += 1
            if on_change:
                on_change(data.get("id"), before, status)
        return
    with transaction.atomic():
        result = apply_subscription_report(
            data,
            status=status,
            # Khaime's timestamps have whole seconds; see docs/subscriptions.md, "Ordering".
            occurred_at=timezone.now().replace(microsecond=0),
            is_live=is_live,
            source=Source.SYNC,
            detail="khaime_sync",
        )
        _update(result.subscription, last_checked_at=timezone.now())
    if result.changed:
        report.changed += 1
        if on_change:
            on_change(result.subscription.subscription_id, before, result.subscription.status)
    report.renewals += len(result.renewals)


def refresh_subscription(subscription: Subscription, *, source: str, client: Any = None) -> ReportResult:
    """Ask Khaime about one subscription now (``GET /subscriptions/{id}``) and apply the answer
    (the admin's "Refresh from Khaime"). Raises the client's ``KhaimeError``."""
    client = client or get_client()
    data = client.get_subscription(subscription.subscription_id)
    with transaction.atomic():
        result = apply_subscription_report(
            data,
            status=status_of(data),
            occurred_at=timezone.now().replace(microsecond=0),
            is_live=subscription.mode == Mode.LIVE,
            source=source,
            detail="refreshed from Khaime",
        )
        _update(result.subscription, last_checked_at=timezone.now())
    return result

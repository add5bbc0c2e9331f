"""Applying one report about a subscription: one :class:`~khaime_django.models.Subscription` per
Khaime ``sub_...`` id, kept as new as the newest report about it.

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import signals
from ..models import Mode, Payment, PaymentSession, Subscription
from ..subscription_statuses import STATUS_RANK
from ..transitions import ReceiverErrorHook, current_receiver_error_hook, send_robust, transition
from . import ledger
from .subscription_payloads import payment_history, reported_fields, starting_session, subscription_id_of


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
            update_subscription(subscription, first_transaction_id=first)
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
        on_commit_send(signals.subscription_created, subscription=subscription)
    return subscription, created


def update_subscription(subscription: Subscription, **fields: Any) -> None:
    """Write ``fields`` (and ``updated_at``) to the row and to ``subscription``."""
    if not fields:
        return
    Subscription.objects.filter(pk=subscription.pk).update(updated_at=timezone.now(), **fields)
    for name, value in fields.items():
        setattr(subscription, name, value)


def on_commit_send(signal, **kwargs: Any) -> None:
    """Send ``signal`` (sender ``Subscription``) once the transaction commits; a receiver's error
    goes to the receiver-error hook current now (the inbox's, which records it on the event)."""
    transaction.on_commit(partial(_send, signal, current_receiver_error_hook(), kwargs))


def _send(signal, hook: ReceiverErrorHook | None, kwargs: dict[str, Any]) -> None:
    errors = send_robust(signal, sender=Subscription, **kwargs)
    if errors and hook is not None:
        hook(errors)


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
    update_subscription(subscription, **changed, **bookkeeping)
    return bool(changed)


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
            on_commit_send(signals.subscription_renewed, subscription=subscription, payment=payment)
            sent.append(payment.transaction_id)
    return sent

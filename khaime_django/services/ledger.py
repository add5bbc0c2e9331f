"""The ledger: one :class:`~khaime_django.models.Payment` per money movement Khaime reports.

A payment is identified by its transaction id wherever it appears (``data.transaction_id``, else
``data.id``, of a payment event; an entry of a subscription's ``payment_history``). The unique
``transaction_id`` column, not a read-then-write, decides which of two concurrent reports inserts
the row: the other one's INSERT waits for that transaction, fails, and reads the row it committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import models
from django.utils import timezone

from ..inserts import insert_unless_conflict
from ..models import Mode, Payment, PaymentSession, Subscription, WebhookEvent, WebhookOutcome
from ..money import is_amount
from ..webhooks import KhaimeEvent
from . import payments, subscription_events, subscription_reports
from .events import Applied

logger = logging.getLogger(__name__)

#: Payment events that report money Khaime received (``payment.failed`` reports none).
MONEY_RECEIVED_EVENTS = frozenset({"payment.succeeded", "payment.refunded", "payment.disputed"})

M = TypeVar("M", bound=models.Model)

#: The longest transaction id stored (``Payment.transaction_id``); a longer one is malformed.
MAX_TRANSACTION_ID = 255


def insert_or_get(model: type[M], lookup: dict[str, Any], defaults: dict[str, Any]) -> tuple[M, bool]:
    """INSERT ``lookup | defaults``, or, when a unique constraint on ``lookup`` refuses it, the
    existing row, locked (FOR UPDATE) until the transaction ends. Returns ``(row, created)``.
    Call inside a transaction. Safe under concurrency where ``get_or_create``'s SELECT-then-INSERT
    is not: the INSERT comes first and the database decides."""
    row = model(**lookup, **defaults)
    if insert_unless_conflict(row):
        return row, True
    return model._default_manager.select_for_update().get(**lookup), False


@dataclass(frozen=True)
class PaymentFacts:
    """What a report says about one payment."""

    transaction_id: str
    amount: int | None
    currency: str
    paid_at: datetime | None
    amounts: dict[str, Any]
    is_live: bool | None


def transaction_id_of(data: Any) -> str | None:
    """The transaction id of a payment object or ``payment_history`` entry, or None."""
    if not isinstance(data, dict):
        return None
    for key in ("transaction_id", "id"):
        value = data.get(key)
        if isinstance(value, str) and value.strip() and len(value) <= MAX_TRANSACTION_ID:
            return value.strip()
    return None


def payment_facts(event: KhaimeEvent) -> PaymentFacts | None:
    """The payment a ``payment.*`` event reports, or None when it names no transaction."""
    transaction_id = transaction_id_of(event.data)
    if transaction_id is None:
        return None
    paid = event.paid
    amounts = event.data.get("amounts")
    return PaymentFacts(
        transaction_id=transaction_id,
        amount=paid[0] if paid else None,
        currency=paid[1] if paid else "",
        paid_at=event.paid_at,
        amounts=amounts if isinstance(amounts, dict) else {},
        is_live=event.is_live,
    )


def record_payment(
    facts: PaymentFacts,
    *,
    session: PaymentSession | None = None,
    subscription: Subscription | None = None,
) -> tuple[Payment | None, bool]:
    """The ledger row of ``facts.transaction_id``, inserted if new; ``(payment, created)``.

    A row already there keeps its amount (the first report wins) and gains what it lacked: the
    session, the subscription, the ``amounts`` breakdown, and the time Khaime says it was paid
    when that is earlier than the one stored (which was then the time of recording). An amount the report does
    not give is taken from the session or subscription it belongs to; with neither, nothing can
    be recorded and ``(None, False)`` is returned. Call inside a transaction.
    """
    amount, currency = facts.amount, facts.currency
    if not is_amount(amount) or not currency:
        # No amount, or one no payment can have: the session's review flags the event; the ledger
        # records what was asked for.
        amount, currency = _expected_amount(session, subscription)
        if amount is None:
            logger.warning("Payment %s reports no amount and matches nothing that has one", facts.transaction_id)
            return None, False
    is_live = facts.is_live
    if is_live is None:
        owner = session or subscription
        is_live = owner is not None and owner.mode == Mode.LIVE
    payment, created = insert_or_get(
        Payment,
        {"transaction_id": facts.transaction_id},
        {
            "session": session,
            "subscription": subscription,
            "amount": amount,
            "currency": currency.upper()[:3],
            "amounts": facts.amounts,
            "paid_at": facts.paid_at or timezone.now(),
            "is_live": is_live,
        },
    )
    if not created:
        missing: dict[str, Any] = {}
        if payment.session_id is None and session is not None:
            missing["session"] = session
        if payment.subscription_id is None and subscription is not None:
            missing["subscription"] = subscription
        if not payment.amounts and facts.amounts:
            missing["amounts"] = facts.amounts
        if facts.paid_at is not None and facts.paid_at < payment.paid_at:
            # A row recorded from a report without the time (a refund that overtook its payment)
            # is dated when it was recorded, never before the money came: the earlier time is Khaime's.
            missing["paid_at"] = facts.paid_at
        if missing:
            Payment.objects.filter(pk=payment.pk).update(**missing)
            for name, value in missing.items():
                setattr(payment, name, value)
    return payment, created


def _expected_amount(session: PaymentSession | None, subscription: Subscription | None) -> tuple[int | None, str]:
    if subscription is not None and subscription.amount is not None and subscription.currency:
        return subscription.amount, subscription.currency
    if session is not None:
        return (session.total_amount if session.total_amount is not None else session.amount), session.currency
    return None, ""


def apply_payment_event(record: WebhookEvent, event: KhaimeEvent, source: str) -> Applied:
    """``EVENT_HANDLERS["payment"]``: the session's status (``payments.apply_payment_event``),
    then the ledger: an event that reports money received records its Payment once, by
    transaction id. ``payment.refunded`` and ``payment.disputed`` count: Khaime refunds and
    disputes only money it received, so when they overtake ``payment.succeeded`` the payment is
    recorded from them."""
    applied = payments.apply_payment_event(record, event, source)
    payment = None
    claimed = None
    subscription_id = subscription_events.subscription_id_of_payment(event)
    if subscription_id is not None and event.event_type in ("payment.succeeded", "payment.failed"):
        # The subscription is locked before its payment is recorded, as on every other path.
        claimed = subscription_reports.claim_subscription(
            subscription_id, session=applied.session, is_live=event.is_live
        )
    if event.event_type in MONEY_RECEIVED_EVENTS:
        facts = payment_facts(event)
        if facts is None:
            applied = _with_note(applied, "no transaction id: no payment recorded")
        else:
            subscription = claimed[0] if claimed is not None else None
            payment, created = record_payment(facts, session=applied.session, subscription=subscription)
            if payment is None:
                applied = _with_note(applied, f"payment {facts.transaction_id} has no amount: not recorded")
            elif not created:
                applied = _with_note(applied, f"payment {payment.transaction_id} was already recorded")
            else:
                # The outcome stays the session's: a payment.succeeded after the return page
                # completed the session is still a "duplicate" of that news; the detail says the
                # ledger gained the row.
                applied = _with_note(applied, f"recorded payment {payment.transaction_id} ({payment.display_amount})")
    if claimed is not None:
        result = subscription_events.apply_subscription_payment(
            record, event, source, payment, applied.session, claimed
        )
        outcome = applied.outcome
        if result.status_changed or result.created or result.renewals:
            outcome = WebhookOutcome.APPLIED
        return Applied(
            outcome, applied.session or result.subscription.session, _join(applied.detail, result.describe())
        )
    return applied


def _with_note(applied: Applied, note: str) -> Applied:
    return Applied(applied.outcome, applied.session, _join(applied.detail, note))


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)

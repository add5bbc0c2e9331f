"""What Khaime holds after a buyer paid: payments, subscriptions and refunds, and their JSON views.

A *payment* is one charge with its own transaction id (``txn_...``): the first payment of a
session, or one renewal of a subscription. Refunds and disputes happen to a payment. Amounts are
integers in the currency's minor unit; a payment's ``amount`` is what the buyer paid.
"""

from __future__ import annotations

import calendar
import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .sessions import Session
from .timestamps import iso_millis, iso_seconds

SUBSCRIPTION_STATUSES = ("pending", "active", "due", "cancelled", "paused", "expired")
# Refunds that hold part of the payment: one in flight may still complete.
_HOLDING_REFUND_STATUSES = frozenset({"processing", "completed"})


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def one_period_after(moment: datetime, frequency: str) -> datetime:
    """``moment`` plus one billing period; a month-end day is clamped (Jan 31 -> Feb 28)."""
    if frequency == "daily":
        return moment + timedelta(days=1)
    if frequency == "weekly":
        return moment + timedelta(weeks=1)
    months = {"monthly": 1, "quarterly": 3, "yearly": 12}[frequency]
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass
class Payment:
    transaction_id: str
    session: Session
    paid_at: datetime
    subscription_id: str | None = None
    disputed_at: datetime | None = None
    refunds: list[Refund] = field(default_factory=list)

    @property
    def amount(self) -> int:
        return self.session.total_amount

    @property
    def currency(self) -> str:
        return self.session.currency

    @property
    def is_live(self) -> bool:
        return self.session.mode == "live"

    @property
    def refunded_amount(self) -> int:
        return sum(refund.amount for refund in self.refunds if refund.status == "completed")

    @property
    def refundable_amount(self) -> int:
        """What a new refund may still take: the amount less refunds completed or in flight."""
        held = sum(refund.amount for refund in self.refunds if refund.status in _HOLDING_REFUND_STATUSES)
        return self.amount - held

    @property
    def status(self) -> str:
        if self.refunded_amount >= self.amount:
            return "refunded"
        return "disputed" if self.disputed_at is not None else "succeeded"

    def event_data(self, status: str | None = None) -> dict:
        """``data`` of a ``payment.*`` event (the 2026-03-27 payment object)."""
        session, request = self.session, self.session.request
        fee = session.transaction_fee

        def money(amount: int) -> dict:
            return {"amount": amount, "currency": self.currency}

        return {
            "object": "payment",
            "id": self.transaction_id,
            "transaction_id": self.transaction_id,
            "session_id": session.session_id,
            "subscription_id": self.subscription_id,
            "status": status or self.status,
            "payment_type": request.payment_type,
            "gateway": "stripe",
            # The buyer paid `amount`; that is the merchant's gross, and Khaime keeps `fee` of it.
            "amounts": {
                "customer_paid": money(self.amount),
                "merchant_gross": money(self.amount),
                "merchant_net": money(self.amount - fee),
                "fees": money(fee),
            },
            "refunded_amount": self.refunded_amount,
            "customer": copy.deepcopy(request.customer),
            "product": {"id": request.product_id, "title": request.product_title, "type": "digital"},
            "metadata": copy.deepcopy(request.metadata),
            "paid_at": iso_seconds(self.paid_at),
        }

    def history_entry(self) -> dict:
        """One entry of a subscription's ``payment_history``."""
        return {
            "id": self.transaction_id,
            "transaction_id": self.transaction_id,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "refunded_amount": self.refunded_amount,
            "paid_at": iso_millis(self.paid_at),
        }

    def truth(self) -> dict:
        return {
            **self.history_entry(),
            "session_id": self.session.session_id,
            "subscription_id": self.subscription_id,
            "is_live": self.is_live,
            "refundable_amount": self.refundable_amount,
            "disputed_at": iso_millis(self.disputed_at),
        }


@dataclass
class Subscription:
    subscription_id: str
    session: Session
    frequency: str
    created_at: datetime
    next_payment_date: datetime
    status: str = "active"
    payments: list[Payment] = field(default_factory=list)
    cancelled_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def is_live(self) -> bool:
        return self.session.mode == "live"

    def summary(self) -> dict:
        """One item of ``GET /subscriptions``."""
        request = self.session.request
        return {
            "object": "subscription",
            "id": self.subscription_id,
            "product_id": request.product_id,
            "product_title": request.product_title,
            "customer_email": request.customer.get("email"),
            "amount": self.session.total_amount,
            "currency": self.session.currency,
            "frequency": self.frequency,
            "status": self.status,
            "next_payment_date": iso_millis(self.next_payment_date),
            "created_at": iso_millis(self.created_at),
            "cancelled_at": iso_millis(self.cancelled_at),
            "ended_at": iso_millis(self.ended_at),
            "session_id": self.session.session_id,
            "metadata": copy.deepcopy(request.metadata),
        }

    def as_object(self) -> dict:
        """``GET /subscriptions/{id}``, and the ``data`` of every ``subscription.*`` event."""
        return {**self.summary(), "payment_history": [payment.history_entry() for payment in self.payments]}


@dataclass
class Refund:
    refund_id: str
    payment: Payment
    amount: int
    reason: str | None
    created_at: datetime
    source: str  # "api" (POST /refunds) or "dashboard" (made at Khaime)
    status: str = "processing"
    completed_at: datetime | None = None

    def created_response(self) -> dict:
        """``data`` of ``POST /refunds``."""
        return {
            "refund_id": self.refund_id,
            "status": self.status,
            "amount": self.amount,
            "currency": self.payment.currency,
        }

    def as_object(self) -> dict:
        """The refund object: ``data`` of ``refund.completed``."""
        payment = self.payment
        return {
            "object": "refund",
            "id": self.refund_id,
            "refund_id": self.refund_id,
            "transaction_id": payment.transaction_id,
            "amount": self.amount,
            "currency": payment.currency,
            "status": self.status,
            "reason": self.reason,
            "session_id": payment.session.session_id,
            "subscription_id": payment.subscription_id,
            "metadata": copy.deepcopy(payment.session.request.metadata),
            "created_at": iso_seconds(self.created_at),
            "completed_at": iso_seconds(self.completed_at),
        }

    def truth(self) -> dict:
        return {**self.as_object(), "source": self.source, "is_live": self.payment.is_live}

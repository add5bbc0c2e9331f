"""Subscriptions: created when a session with a frequency key is paid, then renewed, failed,
paused, resumed, cancelled or expired by the scenario actions (Khaime's scheduler in real life).

Each action changes the status, then sends its signed event(s); the ``data`` of every
``subscription.*`` event is the subscription object as ``GET /subscriptions/{id}`` returns it.
``subscription.paused`` and ``subscription.resumed`` are not in Khaime's published list of event
types; Khaime says new types may appear, and receivers must accept (and may ignore) them.
"""

from __future__ import annotations

from datetime import datetime

from .actions import subscription_action
from .core import StateCore, UnknownSubscription
from .events import make_event
from .records import SUBSCRIPTION_STATUSES, Payment, Subscription, new_id, one_period_after
from .sessions import TransitionNotAllowed
from .timestamps import utcnow

SORT_FIELDS = {
    "created_at": lambda subscription: subscription.created_at,
    "next_payment": lambda subscription: subscription.next_payment_date,
    "actual_price": lambda subscription: subscription.session.total_amount,
    "payment_status": lambda subscription: subscription.status,
}
SORT_ORDERS = ("asc", "desc")


class InvalidListQuery(ValueError):
    """A ``GET /subscriptions`` parameter is out of range; ``details`` names each."""

    def __init__(self, details: dict[str, str]):
        self.details = details
        super().__init__("Validation failed")


class SubscriptionActions(StateCore):
    # --- reading ---

    def subscriptions(self) -> list[dict]:
        """Every subscription, both modes, oldest first, each with its payment history."""
        with self._lock:
            return [subscription.as_object() for subscription in self._subscriptions.values()]

    def subscription(self, subscription_id: str, mode: str | None = None) -> dict:
        """One subscription; with ``mode``, one made with a key of that mode (else not found)."""
        with self._lock:
            return self._subscription_in_mode(subscription_id, mode).as_object()

    def list_subscriptions(
        self,
        *,
        mode: str,
        status: str | None = None,
        product_id: int | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> dict:
        """``data`` of ``GET /subscriptions``: one page of the ``mode``'s subscriptions."""
        details = {}
        if status is not None and status not in SUBSCRIPTION_STATUSES:
            details["status"] = f"must be one of {', '.join(SUBSCRIPTION_STATUSES)}"
        if not 1 <= limit <= 100:
            details["limit"] = "must be between 1 and 100"
        if offset < 0:
            details["offset"] = "must be 0 or more"
        if sort_by not in SORT_FIELDS:
            details["sort_by"] = f"must be one of {', '.join(SORT_FIELDS)}"
        if sort_order not in SORT_ORDERS:
            details["sort_order"] = "must be asc or desc"
        if details:
            raise InvalidListQuery(details)
        with self._lock:
            chosen = [
                subscription
                for subscription in self._subscriptions.values()
                if subscription.session.mode == mode
                and (status is None or subscription.status == status)
                and (product_id is None or subscription.session.request.product_id == product_id)
            ]
            chosen.sort(key=SORT_FIELDS[sort_by], reverse=sort_order == "desc")
            return {
                "subscriptions": [subscription.summary() for subscription in chosen[offset : offset + limit]],
                "total": len(chosen),
                "limit": limit,
                "offset": offset,
            }

    # --- the actions ---

    @subscription_action("renew")
    def renew_subscription(self, subscription_id: str) -> dict:
        """A renewal charge succeeded: a new payment (new transaction id), the period moves on;
        sends ``subscription.renewed`` then ``payment.succeeded`` (with ``subscription_id``)."""
        with self._lock:
            subscription, now = self._subscription(subscription_id), utcnow()
            self._require(subscription, "renew", ("active", "due"))
            payment = self._record_payment(subscription, now)
            subscription.status = "active"
            subscription.next_payment_date = one_period_after(subscription.next_payment_date, subscription.frequency)
            self._announce(subscription, "subscription.renewed", now)
            self._emit(make_event("payment.succeeded", payment.event_data(), is_live=payment.is_live, occurred_at=now))
            return subscription.as_object()

    @subscription_action("fail_payment")
    def fail_subscription_payment(self, subscription_id: str) -> dict:
        """A renewal charge failed: the subscription is ``due``; sends ``subscription.payment_failed``."""
        return self._move(subscription_id, "fail_payment", ("active", "due"), "due", "subscription.payment_failed")

    @subscription_action("cancel")
    def cancel_subscription(self, subscription_id: str) -> dict:
        """Cancelled: no more renewals; access runs to ``next_payment_date`` (the period's end)."""
        return self._move(subscription_id, "cancel", ("active", "due", "paused"), "cancelled", "subscription.cancelled")

    @subscription_action("expire")
    def expire_subscription(self, subscription_id: str) -> dict:
        """Ended for good (a cancelled one at its period's end, or an unpaid one given up on)."""
        allowed = ("active", "due", "paused", "cancelled")
        return self._move(subscription_id, "expire", allowed, "expired", "subscription.expired")

    @subscription_action("pause")
    def pause_subscription(self, subscription_id: str) -> dict:
        return self._move(subscription_id, "pause", ("active", "due"), "paused", "subscription.paused")

    @subscription_action("resume")
    def resume_subscription(self, subscription_id: str) -> dict:
        return self._move(subscription_id, "resume", ("paused",), "active", "subscription.resumed")

    # --- internals ---

    def _start_subscription(self, payment: Payment, frequency: str, now: datetime) -> Subscription:
        """Called under the lock when a session with a frequency key is paid."""
        subscription = Subscription(
            subscription_id=new_id("sub"),
            session=payment.session,
            frequency=frequency,
            created_at=now,
            next_payment_date=one_period_after(now, frequency),
        )
        self._subscriptions[subscription.subscription_id] = subscription
        payment.subscription_id = subscription.subscription_id
        subscription.payments.append(payment)
        self._announce(subscription, "subscription.created", now)
        return subscription

    def _record_payment(self, subscription: Subscription, now: datetime) -> Payment:
        payment = Payment(new_id("txn"), subscription.session, now, subscription.subscription_id)
        self._payments[payment.transaction_id] = payment
        subscription.payments.append(payment)
        return payment

    def _move(self, subscription_id: str, action: str, allowed: tuple[str, ...], status: str, event_type: str) -> dict:
        with self._lock:
            subscription, now = self._subscription(subscription_id), utcnow()
            self._require(subscription, action, allowed)
            subscription.status = status
            if status == "cancelled":
                subscription.cancelled_at = now
            elif status == "expired":
                subscription.ended_at = now
            self._announce(subscription, event_type, now)
            return subscription.as_object()

    @staticmethod
    def _require(subscription: Subscription, action: str, allowed: tuple[str, ...]) -> None:
        if subscription.status not in allowed:
            raise TransitionNotAllowed(subscription.subscription_id, action, subscription.status, kind="subscription")

    def _announce(self, subscription: Subscription, event_type: str, now: datetime) -> None:
        data = subscription.as_object()
        self._emit(make_event(event_type, data, is_live=subscription.is_live, occurred_at=now))

    def _subscription_in_mode(self, subscription_id: str, mode: str | None) -> Subscription:
        subscription = self._subscription(subscription_id)
        if mode is not None and subscription.session.mode != mode:
            raise UnknownSubscription(subscription_id)
        return subscription

"""The stateful models :func:`~khaime_django.transitions.transition` may move, and what it needs to
know about each: a :class:`StateMachine` names the model, its allowed transitions, its history
model and its signals, and :func:`register` puts it in the registry :func:`machine_for` reads.

The three machines of the app (payment sessions, subscriptions, refunds) are registered here;
their registrations have the same shape on purpose, as declarative data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.db import models
from django.dispatch import Signal

from . import signals
from .models import PaymentSession, Refund, RefundStatusChange, StatusChange, Subscription, SubscriptionStatusChange
from .refund_statuses import REFUND_ALLOWED_FROM, RefundStatus
from .statuses import ALLOWED_FROM, Status
from .subscription_statuses import SUBSCRIPTION_ALLOWED_FROM, SubscriptionStatus

__all__ = [
    "PAYMENT_SESSIONS",
    "REFUNDS",
    "SIGNAL_FOR_STATUS",
    "SUBSCRIPTIONS",
    "StateMachine",
    "machine_for",
    "register",
]


@dataclass(frozen=True)
class StateMachine:
    """What :func:`~khaime_django.transitions.transition` needs to know about one stateful model.

    The model has a ``status`` field and an ``updated_at`` field; its history model has a foreign
    key named ``history_fk`` to it and the fields ``from_status``, ``to_status``, ``source``,
    ``detail`` and ``created_at``. ``signal_for_status[to]`` and then ``changed_signal`` are sent
    on commit, with ``sender=model`` and the instance as ``instance_kwarg``.
    """

    model: type[models.Model]
    allowed_from: Mapping[str, frozenset[str]]
    history_model: type[models.Model]
    history_fk: str
    signal_for_status: Mapping[str, Signal]
    changed_signal: Signal
    instance_kwarg: str
    label: str

    def can_transition(self, from_status: str, to_status: str) -> bool:
        return from_status != to_status and from_status in self.allowed_from.get(to_status, ())

    def check_target(self, to_status: str) -> frozenset[str]:
        allowed = self.allowed_from.get(to_status)
        if allowed is None:
            raise ValueError(f"No transition leads to {to_status!r}.")
        return allowed


SIGNAL_FOR_STATUS: dict[str, Signal] = {
    Status.PENDING: signals.payment_session_created,
    Status.COMPLETED: signals.payment_completed,
    Status.FAILED: signals.payment_failed,
    Status.EXPIRED: signals.payment_expired,
    Status.CANCELLED: signals.payment_cancelled,
    Status.REFUNDED: signals.payment_refunded,
    Status.DISPUTED: signals.payment_disputed,
    Status.ERROR: signals.payment_checkout_error,
}

PAYMENT_SESSIONS = StateMachine(
    model=PaymentSession,
    allowed_from=ALLOWED_FROM,
    history_model=StatusChange,
    history_fk="session",
    signal_for_status=SIGNAL_FOR_STATUS,
    changed_signal=signals.payment_status_changed,
    instance_kwarg="session",
    label="Payment session",
)

_machines: dict[type[models.Model], StateMachine] = {}


def register(machine: StateMachine) -> StateMachine:
    """Let ``transitions.transition`` and ``transitions.transition_many`` move ``machine.model``'s
    instances."""
    _machines[machine.model] = machine
    return machine


register(PAYMENT_SESSIONS)

SUBSCRIPTIONS = register(
    StateMachine(
        model=Subscription,
        allowed_from=SUBSCRIPTION_ALLOWED_FROM,
        history_model=SubscriptionStatusChange,
        history_fk="subscription",
        signal_for_status={
            SubscriptionStatus.TRIALING: signals.subscription_trial_started,
            SubscriptionStatus.ACTIVE: signals.subscription_activated,
            SubscriptionStatus.DUE: signals.subscription_payment_failed,
            SubscriptionStatus.PAUSED: signals.subscription_paused,
            SubscriptionStatus.CANCELLED: signals.subscription_cancelled,
            SubscriptionStatus.EXPIRED: signals.subscription_expired,
        },
        changed_signal=signals.subscription_status_changed,
        instance_kwarg="subscription",
        label="Subscription",
    )
)


REFUNDS = register(
    StateMachine(
        model=Refund,
        allowed_from=REFUND_ALLOWED_FROM,
        history_model=RefundStatusChange,
        history_fk="refund",
        signal_for_status={
            RefundStatus.PROCESSING: signals.refund_processing,
            RefundStatus.UNKNOWN: signals.refund_unknown,
            RefundStatus.COMPLETED: signals.refund_completed,
            RefundStatus.FAILED: signals.refund_failed,
        },
        changed_signal=signals.refund_status_changed,
        instance_kwarg="refund",
        label="Refund",
    )
)


def machine_for(model: type[models.Model]) -> StateMachine:
    try:
        return _machines[model]
    except KeyError:
        raise TypeError(f"{model.__name__} has no registered StateMachine.") from None

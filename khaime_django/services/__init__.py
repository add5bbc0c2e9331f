"""Use cases, one module each. Views, the webhook view, admin and commands call these; the rules
live here and in transitions.py, HTTP to Khaime lives in client/.

- ``checkout``: start_checkout, cancel_session
- ``session_refresh``: refresh_session, refresh_if_due, wait_for_webhook, apply_khaime_status
- ``reconcile``: sync_sessions, expire_stale, abandon_stale_created (khaime_sync)
- ``refunds``: refund_payment (and mark_refund_failed); ``refund_events``: the ``refund.*``
  webhook handler
- ``inbox``: handle_webhook_event and the webhook inbox (record, apply, apply again, prune),
  dispatching each event family to its handler module (``payments`` for ``payment.*``)
- ``ledger``: the Payment ledger (record_payment), and ``payment.*``'s handler around ``payments``
- ``subscriptions``: the subscription use cases' public names, from ``subscription_events``
  (``subscription.*`` events), ``subscription_sync`` (sync_subscriptions, refresh_subscription),
  ``subscription_reports`` (applying one report) and ``subscription_payloads`` (reading one)

Everything public is importable from ``khaime_django.services`` itself, as before.
"""

from __future__ import annotations

from .checkout import RESERVED_METADATA_KEYS, cancel_session, start_checkout
from .events import Applied, EventHandler
from .inbox import (
    EVENT_HANDLERS,
    PRUNABLE_OUTCOMES,
    PRUNE_BATCH_SIZE,
    RETRY_OUTCOMES,
    apply_recorded_event,
    apply_waiting_events,
    apply_webhook_event,
    apply_webhook_event_again,
    handle_webhook_event,
    prune_webhook_events,
    record_webhook_event,
    redact_webhook_payloads,
    waiting_events,
    waiting_summary,
)
from .ledger import record_payment
from .payments import (
    apply_payment_event,
    flag_for_review,
    match_session,
    mode_mismatch,
    notify_review,
    review_payment,
    review_reasons,
)
from .reconcile import EXPIRE_BATCH_SIZE, SyncReport, abandon_stale_created, expire_stale, sync_sessions
from .refund_events import apply_refund_event
from .refunds import RefundNotAllowed, StaleRefundForm, mark_refund_failed, refund_payment
from .session_refresh import apply_khaime_status, refresh_if_due, refresh_session, remote_target, wait_for_webhook
from .subscriptions import (
    SubscriptionSyncReport,
    apply_subscription_event,
    refresh_subscription,
    sync_subscriptions,
)

__all__ = [
    "EVENT_HANDLERS",
    "EXPIRE_BATCH_SIZE",
    "PRUNABLE_OUTCOMES",
    "PRUNE_BATCH_SIZE",
    "RESERVED_METADATA_KEYS",
    "RETRY_OUTCOMES",
    "Applied",
    "EventHandler",
    "RefundNotAllowed",
    "StaleRefundForm",
    "SubscriptionSyncReport",
    "SyncReport",
    "abandon_stale_created",
    "apply_khaime_status",
    "apply_payment_event",
    "apply_recorded_event",
    "apply_refund_event",
    "apply_subscription_event",
    "apply_waiting_events",
    "apply_webhook_event",
    "apply_webhook_event_again",
    "cancel_session",
    "expire_stale",
    "flag_for_review",
    "handle_webhook_event",
    "mark_refund_failed",
    "match_session",
    "mode_mismatch",
    "notify_review",
    "prune_webhook_events",
    "record_payment",
    "record_webhook_event",
    "redact_webhook_payloads",
    "refresh_if_due",
    "refresh_session",
    "refresh_subscription",
    "refund_payment",
    "remote_target",
    "review_payment",
    "review_reasons",
    "start_checkout",
    "sync_sessions",
    "sync_subscriptions",
    "wait_for_webhook",
    "waiting_events",
    "waiting_summary",
]

"""Use cases, one module each. Views, the webhook view, admin and commands call these; the rules
live here and in transitions.py, HTTP to Khaime lives in client.py.

- ``checkout``: start_checkout, cancel_session
- ``reconcile``: refresh_session, refresh_if_due, apply_khaime_status, sync_sessions, expire_stale
- ``refunds``: refund_payment (and mark_refund_failed); ``refund_events``: the ``refund.*``
  webhook handler
- ``inbox``: handle_webhook_event and the webhook inbox (record, apply, apply again, prune),
  dispatching each event family to its handler module (``payments`` for ``payment.*``)

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
    apply_webhook_event,
    apply_webhook_event_again,
    handle_webhook_event,
    prune_webhook_events,
    record_webhook_event,
)
from .payments import apply_payment_event, flag_for_review, match_session, review_reasons
from .reconcile import (
    EXPIRE_BATCH_SIZE,
    SyncReport,
    apply_khaime_status,
    expire_stale,
    refresh_if_due,
    refresh_session,
    remote_target,
    sync_sessions,
)
from .refund_events import apply_refund_event
from .refunds import RefundNotAllowed, StaleRefundForm, mark_refund_failed, refund_payment

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
    "SyncReport",
    "apply_khaime_status",
    "apply_payment_event",
    "apply_refund_event",
    "apply_webhook_event",
    "apply_webhook_event_again",
    "cancel_session",
    "expire_stale",
    "flag_for_review",
    "handle_webhook_event",
    "mark_refund_failed",
    "match_session",
    "prune_webhook_events",
    "record_webhook_event",
    "refresh_if_due",
    "refresh_session",
    "refund_payment",
    "remote_target",
    "review_reasons",
    "start_checkout",
    "sync_sessions",
]

"""The local ledger as the app left it, read with the app's own models.

Imported only after ``cli`` has pointed Django at the soak's database (it sets up Django).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ledger:
    sessions: list[dict]  # one per PaymentSession, with its last history entry
    inbox: Counter  # event_id -> rows in the webhook inbox
    inbox_outcomes: Counter  # outcome -> rows
    subscriptions: list[dict] = field(default_factory=list)  # subscription_id, status
    payments: list[dict] = field(default_factory=list)  # transaction_id, amount, currency, subscription_id
    refunds: list[dict] = field(default_factory=list)  # refund_id, transaction_id, amount, status


def read_ledger() -> Ledger:
    from django.db.models import Count, OuterRef, Subquery

    from khaime_django.models import PaymentSession, StatusChange, WebhookEvent

    last_change = StatusChange.objects.filter(session=OuterRef("pk")).order_by("-created_at", "-pk")
    sessions = list(
        PaymentSession.objects.annotate(
            last_to=Subquery(last_change.values("to_status")[:1]), changes=Count("status_changes")
        ).values(
            "pk",
            "reference",
            "session_id",
            "status",
            "purchase_key",
            "amount",
            "total_amount",
            "currency",
            "customer_email",
            "last_error",
            "last_to",
            "changes",
        )
    )
    for session in sessions:
        session["reference"] = str(session["reference"])
    inbox = Counter(dict(WebhookEvent.objects.values_list("event_id").annotate(n=Count("pk"))))
    outcomes = Counter(dict(WebhookEvent.objects.values_list("outcome").annotate(n=Count("pk"))))
    return Ledger(sessions, inbox, outcomes, *_money_ledger())


def _money_ledger() -> tuple[list[dict], list[dict], list[dict]]:
    """Subscriptions and the payments ledger, where this version of the app has them."""
    from django.db.models import F

    from khaime_django import models

    if not hasattr(models, "Payment") or not hasattr(models, "Subscription"):
        return [], [], []
    subscriptions = list(models.Subscription.objects.values("subscription_id", "status"))
    payments = list(
        models.Payment.objects.values(
            "transaction_id", "amount", "currency", subscription_id_khaime=F("subscription__subscription_id")
        )
    )
    return subscriptions, payments, _refunds()


def _refunds() -> list[dict]:
    from django.db.models import F

    from khaime_django import models

    if not hasattr(models, "Refund"):
        return []
    return list(
        models.Refund.objects.values("refund_id", "amount", "status", transaction_id=F("payment__transaction_id"))
    )


def terminate_connections(application_name: str) -> list[int]:
    """pg_terminate_backend on every connection to this database with that application_name."""
    from django.db import connection

    with connection.cursor() as cursor:
        # Pick first, terminate second: in one WHERE, PostgreSQL may call pg_terminate_backend
        # before it has filtered out our own connection.
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s "
            "AND pid <> pg_backend_pid()",
            [application_name],
        )
        pids = [row[0] for row in cursor.fetchall()]
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        return pids


def checkout_client_ports(application_name: str) -> list[int]:
    """Client ports of the app's connections whose last statement INSERTed a payment session and
    that are now idle: their worker is waiting for Khaime to create the session."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT client_port FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s "
            "AND state = 'idle' AND query LIKE 'INSERT INTO %%paymentsession%%'",
            [application_name],
        )
        return [row[0] for row in cursor.fetchall()]


def close_connections() -> None:
    from django.db import connections

    connections.close_all()


def seconds_until_created_rows_are_abandonable() -> float:
    """How long until every row still in ``created`` is older than the in-flight limit, when
    khaime_sync moves it to ``error`` (a row younger than that may belong to a living request)."""
    from datetime import timedelta

    from django.utils import timezone

    from khaime_django.models import PaymentSession
    from khaime_django.services.checkout import in_flight_limit

    youngest = PaymentSession.objects.filter(status="created").order_by("-created_at").first()
    if youngest is None:
        return 0.0
    ready = youngest.created_at + timedelta(seconds=in_flight_limit() + 1)
    return max(0.0, (ready - timezone.now()).total_seconds())


def events_waiting() -> int:
    """Webhook events recorded but not applied yet (task mode: still in the queue)."""
    from khaime_django.models import WebhookEvent

    return WebhookEvent.objects.filter(outcome="received").count()

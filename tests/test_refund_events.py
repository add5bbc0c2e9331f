"""``refund.*`` webhooks through the real webhook view, signed: matching, reordering, forged or
malformed payloads, refunds we never asked for."""

from __future__ import annotations

import pytest
from django.utils import timezone

from khaime_django.models import Payment, Refund, Status, WebhookEvent, WebhookOutcome
from khaime_django.refund_statuses import RefundOrigin, RefundStatus
from khaime_django.services.refunds import record_answer

from .webhook_helpers import new_event_id, payment_event

pytestmark = pytest.mark.django_db


def refund_event(event_type="refund.completed", *, refund_id="ref_1", transaction_id="txn_1", amount=100, **data):
    return {
        "api_version": "2026-03-27",
        "event_id": new_event_id(),
        "event_type": event_type,
        "occurred_at": "2026-11-30T03:24:05Z",
        "is_live": False,
        "business_id": "1042",
        "data": {
            "object": "refund",
            "id": refund_id,
            "refund_id": refund_id,
            "transaction_id": transaction_id,
            "amount": amount,
            "currency": "USD",
            "status": "completed",
            "reason": None,
            "session_id": None,
            "subscription_id": None,
            "metadata": {},
            "created_at": "2026-11-30T03:24:05Z",
            "completed_at": "2026-11-30T03:24:06Z",
            **data,
        },
    }


@pytest.fixture
def payment(make_session):
    session = make_session(status=Status.COMPLETED)
    return Payment.objects.create(
        transaction_id="txn_1", session=session, amount=5320, currency="USD", paid_at=timezone.now()
    )


def outcome(payload) -> WebhookEvent:
    return WebhookEvent.objects.get(event_id=payload["event_id"])


def test_completed_by_refund_id(deliver, payment):
    refund = Refund.objects.create(
        payment=payment, refund_id="ref_1", amount=100, currency="USD", status=RefundStatus.PROCESSING
    )
    payload = refund_event()
    deliver(payload)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert refund.completed_at.isoformat().startswith("2026-11-30T03:24:06")
    assert outcome(payload).outcome == WebhookOutcome.APPLIED
    assert outcome(payload).session == payment.session


def test_a_processing_refund_is_never_matched_by_amount(deliver, payment):
    """Only a refund whose id we never learnt is matched by amount; one with another id is not."""
    Refund.objects.create(payment=payment, refund_id="ref_other", amount=100, currency="USD", status="processing")
    deliver(refund_event(refund_id="ref_new"))
    assert Refund.objects.get(refund_id="ref_other").status == RefundStatus.PROCESSING
    assert Refund.objects.get(refund_id="ref_new").origin == RefundOrigin.KHAIME


def test_an_unknown_refund_of_another_amount_is_not_matched(deliver, payment):
    Refund.objects.create(payment=payment, amount=200, currency="USD", status=RefundStatus.UNKNOWN)
    deliver(refund_event(amount=100))
    assert Refund.objects.get(amount=200).status == RefundStatus.UNKNOWN
    assert Refund.objects.get(amount=100).origin == RefundOrigin.KHAIME


def test_the_oldest_of_two_unknown_refunds_of_one_amount_is_matched(deliver, payment):
    first = Refund.objects.create(payment=payment, amount=100, currency="USD", status=RefundStatus.UNKNOWN)
    second = Refund.objects.create(payment=payment, amount=100, currency="USD", status=RefundStatus.UNKNOWN)
    deliver(refund_event(refund_id="ref_a"))
    deliver(refund_event(refund_id="ref_b"))
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.refund_id, second.refund_id) == ("ref_a", "ref_b")
    assert Refund.objects.count() == 2


def test_refund_failed_fails_the_refund_it_names(deliver, payment):
    refund = Refund.objects.create(payment=payment, refund_id="ref_1", amount=100, currency="USD", status="processing")
    deliver(refund_event("refund.failed"))
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED


def test_refund_failed_for_a_refund_we_do_not_know_records_nothing(deliver, payment):
    payload = refund_event("refund.failed")
    deliver(payload)
    assert not Refund.objects.exists()
    assert outcome(payload).outcome == WebhookOutcome.IGNORED


def test_a_late_failure_never_undoes_a_completed_refund(deliver, payment):
    refund = Refund.objects.create(payment=payment, refund_id="ref_1", amount=100, currency="USD", status="completed")
    payload = refund_event("refund.failed")
    deliver(payload)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert outcome(payload).outcome == WebhookOutcome.IGNORED


@pytest.mark.parametrize(
    "data",
    [{"amount": 0}, {"amount": -5}, {"amount": "100"}, {"amount": 1.5}, {"refund_id": None, "id": None}],
)
def test_a_malformed_refund_event_is_ignored(deliver, payment, data):
    payload = refund_event(**data)
    assert deliver(payload).status_code == 200
    assert not Refund.objects.exists()
    assert outcome(payload).outcome == WebhookOutcome.IGNORED


def test_a_refund_of_an_unknown_payment_is_unmatched(deliver, db):
    payload = refund_event(transaction_id="txn_nobody")
    deliver(payload)
    assert outcome(payload).outcome == WebhookOutcome.UNMATCHED
    assert not Refund.objects.exists()


def test_a_refund_overtaking_payment_succeeded_records_the_payment_from_its_session(deliver, make_session):
    session = make_session()
    payload = refund_event(transaction_id="txn_early", amount=5320, metadata={"reference": str(session.reference)})
    deliver(payload)
    payment = Payment.objects.get(transaction_id="txn_early")
    assert payment.session == session
    assert payment.refunded_amount == 5320
    session.refresh_from_db()
    assert session.status == Status.REFUNDED
    history = list(session.status_changes.values_list("to_status", flat=True))
    assert history == [Status.COMPLETED, Status.REFUNDED]


def test_an_unsigned_refund_event_changes_nothing(client, payment):
    from .webhook_helpers import post_webhook

    response = post_webhook(client, refund_event(), secret=None)
    assert response.status_code == 401
    assert not Refund.objects.exists()


def test_payment_refunded_of_the_checkout_still_refunds_the_session(deliver, payment):
    session = payment.session
    deliver(payment_event("payment.refunded", session, id="txn_1"))
    session.refresh_from_db()
    assert session.status == Status.REFUNDED


def test_payment_refunded_of_a_renewal_leaves_the_session(deliver, payment):
    session = payment.session
    Payment.objects.create(
        transaction_id="txn_renewal", session=session, amount=5320, currency="USD", paid_at=timezone.now()
    )
    payload = payment_event("payment.refunded", session, id="txn_renewal")
    deliver(payload)
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert "renewal" in outcome(payload).detail


def test_an_answer_whose_refund_the_webhook_gave_to_a_sibling_goes_to_the_sibling(payment):
    """Two refunds of one payment and amount in flight; refund.completed for the second one's
    id matched the first by amount. Each answer then settles whichever of the two lacks an id."""
    first = Refund.objects.create(payment=payment, amount=100, currency="USD")
    second = Refund.objects.create(payment=payment, amount=100, currency="USD")
    Refund.objects.filter(pk=first.pk).update(refund_id="ref_second", status=RefundStatus.COMPLETED)

    record_answer(second, {"refund_id": "ref_second", "status": "processing"}, source="admin")
    second.refresh_from_db()
    assert (second.refund_id, second.status) == (None, RefundStatus.REQUESTED)  # the news was already here

    first.refresh_from_db()
    record_answer(first, {"refund_id": "ref_first", "status": "processing"}, source="admin")
    second.refresh_from_db()
    assert (second.refund_id, second.status) == ("ref_first", RefundStatus.PROCESSING)
    assert not Refund.objects.filter(refund_id__isnull=True).exists()


def test_an_answer_that_says_completed_completes_the_refund(payment):
    refund = Refund.objects.create(payment=payment, amount=100, currency="USD")
    record_answer(refund, {"refund_id": "ref_now", "status": "completed", "amount": 100}, source="admin")
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert refund.completed_at is not None


@pytest.mark.postgres
@pytest.mark.skipif(
    __import__("django.db").db.connection.vendor != "postgresql",
    reason="needs PostgreSQL: SQLite serialises writers, so the two cannot deadlock",
)
@pytest.mark.django_db(transaction=True)
def test_a_full_refunds_two_webhooks_at_once_do_not_deadlock(make_session, monkeypatch, caplog):
    """Khaime sends refund.completed and payment.refunded together for a full refund. The soak
    found them deadlocking: payment.refunded locked the session (its status change) then the
    payment (the ledger row); refund.completed locked the payment, then the session. Now both
    take the session first. payment.refunded is held between its two locks here, so the old
    order deadlocked every time."""
    import threading
    import time

    from django.db import connection
    from django.test import Client

    from khaime_django.services import ledger

    from .webhook_helpers import post_webhook

    session = make_session(status=Status.COMPLETED)
    transaction_id = f"txn_{session.reference.hex}"
    payment = Payment.objects.create(
        transaction_id=transaction_id, session=session, amount=5320, currency="USD", paid_at=timezone.now()
    )
    Refund.objects.create(
        payment=payment, refund_id="ref_full", amount=5320, currency="USD", status=RefundStatus.PROCESSING
    )
    between_locks = threading.Event()
    record_payment = ledger.record_payment

    def held_between_its_locks(*args, **kwargs):
        if threading.current_thread().name == "payment.refunded":
            between_locks.set()
            time.sleep(0.5)
        return record_payment(*args, **kwargs)

    monkeypatch.setattr(ledger, "record_payment", held_between_its_locks)
    answers = {}

    def deliver(name, payload, wait=None):
        def run():
            try:
                if wait is not None:
                    wait.wait(10)
                answers[name] = post_webhook(Client(), payload).status_code
            finally:
                connection.close()

        return threading.Thread(target=run, name=name)

    threads = [
        deliver("payment.refunded", payment_event("payment.refunded", session, amount=5320)),
        deliver(
            "refund.completed",
            refund_event(refund_id="ref_full", transaction_id=transaction_id, amount=5320),
            wait=between_locks,
        ),
    ]
    with caplog.at_level("WARNING"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert answers == {"payment.refunded": 200, "refund.completed": 200}
    assert "deadlock" not in caplog.text and "trying once more" not in caplog.text
    session.refresh_from_db()
    assert session.status == Status.REFUNDED
    assert Refund.objects.get(refund_id="ref_full").status == RefundStatus.COMPLETED
    assert session.status_changes.filter(to_status=Status.REFUNDED).count() == 1

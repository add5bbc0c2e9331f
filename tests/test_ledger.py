"""The Payment ledger: one row per money movement, recorded once whatever reports it."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from khaime_django.models import Payment, Status, WebhookEvent, WebhookOutcome
from khaime_django.services import ledger
from khaime_django.timestamps import parse_timestamp

from .webhook_helpers import legacy_payment_event, payment_event

pytestmark = pytest.mark.django_db


def outcome(payload):
    return WebhookEvent.objects.get(event_id=payload["event_id"])


def test_payment_succeeded_records_one_payment_with_what_was_paid(deliver, make_session):
    session = make_session()
    payload = payment_event("payment.succeeded", session, id="txn_first", is_live=False)
    assert deliver(payload).status_code == 200
    payment = Payment.objects.get()
    assert payment.transaction_id == "txn_first"
    assert payment.session == session
    assert payment.subscription is None
    assert (payment.amount, payment.currency) == (5320, "USD")
    assert payment.amounts == payload["data"]["amounts"]
    assert payment.paid_at == parse_timestamp("2026-03-27T14:31:58Z")
    assert payment.is_live is False
    assert payment.display_amount
    assert outcome(payload).outcome == WebhookOutcome.APPLIED
    assert "recorded payment txn_first" in outcome(payload).detail


def test_transaction_id_is_preferred_to_id(deliver, make_session):
    deliver(payment_event("payment.succeeded", make_session(), id="pay_1", transaction_id="txn_1"))
    assert Payment.objects.get().transaction_id == "txn_1"


def test_the_same_event_twice_is_one_payment(deliver, make_session):
    payload = payment_event("payment.succeeded", make_session(), id="txn_twice")
    deliver(payload)
    deliver(payload)
    assert Payment.objects.count() == 1
    assert outcome(payload).deliveries == 2


def test_two_events_about_one_transaction_are_one_payment(deliver, make_session):
    session = make_session()
    first = payment_event("payment.succeeded", session, id="txn_same")
    second = payment_event("payment.succeeded", session, id="txn_same", amount=1)
    deliver(first)
    deliver(second)
    payment = Payment.objects.get()
    assert payment.amount == 5320  # the first report wins; a later one never changes the amount
    assert outcome(second).outcome == WebhookOutcome.DUPLICATE
    assert "already recorded" in outcome(second).detail


def test_a_session_completed_elsewhere_still_gets_its_payment(deliver, make_session):
    session = make_session(status=Status.COMPLETED)  # the return page asked Khaime first
    payload = payment_event("payment.succeeded", session, id="txn_late")
    deliver(payload)
    assert Payment.objects.get().session == session
    record = outcome(payload)
    assert record.outcome == WebhookOutcome.DUPLICATE  # for the session; the detail names the ledger row
    assert "session was already completed" in record.detail
    assert "recorded payment txn_late" in record.detail


def test_separate_transactions_are_separate_payments(deliver, make_session):
    deliver(payment_event("payment.succeeded", make_session(), id="txn_a"))
    deliver(payment_event("payment.succeeded", make_session(), id="txn_b"))
    assert sorted(Payment.objects.values_list("transaction_id", flat=True)) == ["txn_a", "txn_b"]


def test_a_failed_payment_records_no_payment(deliver, make_session):
    deliver(payment_event("payment.failed", make_session(), id="txn_declined"))
    assert not Payment.objects.exists()


@pytest.mark.parametrize("event_type", ["payment.disputed", "payment.refunded"])
def test_a_refund_or_dispute_overtaking_the_success_records_the_payment_once(deliver, make_session, event_type):
    session = make_session()
    first = payment_event(event_type, session, id="txn_overtaken")
    deliver(first)
    late = payment_event("payment.succeeded", session, id="txn_overtaken")
    deliver(late)
    payment = Payment.objects.get()
    assert (payment.session, payment.amount) == (session, 5320)
    assert outcome(late).outcome == WebhookOutcome.DUPLICATE


def test_no_transaction_id_records_nothing_and_says_so(deliver, make_session):
    payload = payment_event("payment.succeeded", make_session(), id=None)
    deliver(payload)
    assert not Payment.objects.exists()
    assert "no transaction id" in outcome(payload).detail
    assert outcome(payload).outcome == WebhookOutcome.APPLIED  # the session is still paid


@pytest.mark.parametrize("bad", [12, "", " ", "x" * 256, ["txn"]])
def test_malformed_transaction_ids_are_not_recorded(deliver, make_session, bad):
    deliver(payment_event("payment.succeeded", make_session(), id=bad))
    assert not Payment.objects.exists()


def test_legacy_flat_amount_is_recorded(deliver, make_session):
    session = make_session()
    deliver(legacy_payment_event("payment.succeeded", session, id="txn_legacy", amount=5320, currency="usd"))
    payment = Payment.objects.get()
    assert (payment.amount, payment.currency, payment.amounts) == (5320, "USD", {})


def test_missing_amount_falls_back_to_what_the_session_expects(deliver, make_session):
    session = make_session()
    deliver(payment_event("payment.succeeded", session, id="txn_no_amount", amounts=None))
    assert (Payment.objects.get().amount, Payment.objects.get().currency) == (5320, "USD")


def test_unmatched_payment_with_no_amount_records_nothing(deliver):
    payload = payment_event("payment.succeeded", None, id="txn_orphan", amounts=None, reference=None, session_id=None)
    deliver(payload)
    assert not Payment.objects.exists()
    assert outcome(payload).outcome == WebhookOutcome.UNMATCHED
    assert "has no amount" in outcome(payload).detail


def test_unmatched_payment_is_still_recorded_and_linked_when_applied_again(deliver, make_session, client):
    from khaime_django.services import apply_webhook_event_again

    session = make_session()
    payload = payment_event("payment.succeeded", session, id="txn_unmatched", reference=None, session_id="sess_x")
    deliver(payload)
    payment = Payment.objects.get()
    assert payment.session is None  # money is never dropped, even before we know whose it is
    assert outcome(payload).outcome == WebhookOutcome.UNMATCHED
    session.session_id = "sess_x"
    session.save()
    apply_webhook_event_again(outcome(payload))
    payment.refresh_from_db()
    assert payment.session == session


def test_live_flag_comes_from_the_session_when_the_event_omits_it(deliver, make_session):
    session = make_session(mode="live")
    payload = payment_event("payment.succeeded", session, id="txn_live")
    del payload["is_live"]
    deliver(payload)
    assert Payment.objects.get().is_live is True


def test_payments_cannot_share_a_transaction_id(make_session):
    session = make_session()
    Payment.objects.create(
        transaction_id="txn_u", session=session, amount=1, currency="USD", paid_at=session.created_at
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.create(transaction_id="txn_u", amount=1, currency="USD", paid_at=session.created_at)


def test_a_paid_session_cannot_be_deleted_from_under_its_payment(make_session):
    from django.db.models import ProtectedError

    session = make_session()
    Payment.objects.create(
        transaction_id="txn_p", session=session, amount=1, currency="USD", paid_at=session.created_at
    )
    with pytest.raises(ProtectedError):
        session.delete()


def test_record_payment_fills_in_what_an_earlier_report_lacked(make_session):
    session = make_session()
    facts = ledger.PaymentFacts("txn_fill", 5320, "USD", None, {}, None)
    with transaction.atomic():
        first, created = ledger.record_payment(facts)
    assert created and first.session is None
    richer = ledger.PaymentFacts("txn_fill", 1, "EUR", None, {"fees": {"amount": 1, "currency": "USD"}}, True)
    with transaction.atomic():
        again, created = ledger.record_payment(richer, session=session)
    assert not created
    again.refresh_from_db()
    assert (again.session, again.amount, again.currency, again.is_live) == (session, 5320, "USD", False)
    assert again.amounts == {"fees": {"amount": 1, "currency": "USD"}}

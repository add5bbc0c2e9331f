"""Refunds over real HTTP: ``refund_payment`` POSTs to the emulator's ``/refunds``, the emulator
signs and delivers ``refund.completed`` / ``payment.refunded`` to the shop on ``live_server``
through a ``WebhookGate`` (held while the test itself uses the database, so the shop and the
test never share the in-memory SQLite connection at once). Nothing is stubbed.
"""

from __future__ import annotations

import pytest
from django.db import connection

from khaime_django import signals
from khaime_django.models import Payment, PaymentSession, Refund, Status, WebhookEvent, WebhookOutcome
from khaime_django.refund_statuses import RefundOrigin, RefundStatus
from khaime_django.services import RefundNotAllowed, StaleRefundForm, mark_refund_failed, refund_payment, start_checkout

pytestmark = pytest.mark.django_db(transaction=True)


def paid_payment(khaime_emulator, webhook_gate, *, amount=5000, currency="USD", frequency=None) -> Payment:
    """A checkout paid at the emulator; its payment.succeeded delivered, so the ledger has it."""
    session = start_checkout(
        amount=amount,
        currency=currency,
        customer_email="ada@example.com",
        product_name="Field guide",
        subscription_frequency_key=frequency,
    )
    before = len(khaime_emulator.deliveries())
    khaime_emulator.complete(session.session_id)
    khaime_emulator.wait_for_deliveries(before + (2 if frequency else 1))
    return Payment.objects.get(session=session)


def deliver_held(khaime_emulator, webhook_gate, count: int) -> None:
    """Let the held webhooks through and wait until ``count`` deliveries in all are done."""
    webhook_gate.release()
    khaime_emulator.wait_for_deliveries(count)


@pytest.fixture
def gate(webhook_gate, settings, live_shop):
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": live_shop.url}
    return webhook_gate


@pytest.fixture
def refund_signals():
    log: list[tuple[str, int, str]] = []
    hooked = []
    for name in ("refund_requested", "refund_processing", "refund_unknown", "refund_completed", "refund_failed"):

        def receiver(sender, refund, _name=name, **kwargs):
            log.append((_name, refund.pk, kwargs.get("to_status", "")))

        getattr(signals, name).connect(receiver, weak=False)
        hooked.append((getattr(signals, name), receiver))
    yield log
    for signal, receiver in hooked:
        signal.disconnect(receiver)


def test_full_refund_completes_and_moves_the_session_to_refunded(khaime_emulator, gate, refund_signals):
    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    refund = refund_payment(payment, reason="requested_by_customer")
    assert refund.status == RefundStatus.PROCESSING
    assert refund.refund_id.startswith("ref_")
    assert (refund.amount, refund.currency) == (5320, "USD")  # all the buyer paid, fees included
    deliver_held(khaime_emulator, gate, 3)  # payment.succeeded, refund.completed, payment.refunded

    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert refund.completed_at is not None
    session = PaymentSession.objects.get()
    assert session.status == Status.REFUNDED
    assert payment.refunded_amount == session.refunded_amount == 5320
    assert payment.refundable_amount == 0
    assert [record["status"] for record in khaime_emulator.refunds()] == ["completed"]
    history = list(refund.status_changes.values_list("from_status", "to_status"))
    assert history == [("requested", "processing"), ("processing", "completed")]
    assert refund_signals == [
        ("refund_requested", refund.pk, ""),
        ("refund_processing", refund.pk, "processing"),
        ("refund_completed", refund.pk, "completed"),
    ]


def test_two_partial_refunds_up_to_the_total_and_a_third_refused(khaime_emulator, gate):
    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    first = refund_payment(payment, 2000)
    deliver_held(khaime_emulator, gate, 2)
    session = PaymentSession.objects.get()
    assert session.status == Status.COMPLETED  # a partial refund keeps the session completed
    assert session.refunded_amount == 2000
    assert session.display_refunded == "$20.00"

    gate.hold()
    second = refund_payment(payment, 3320)
    deliver_held(khaime_emulator, gate, 4)
    assert PaymentSession.objects.get().status == Status.REFUNDED
    assert payment.refunded_amount == 5320

    with pytest.raises(RefundNotAllowed, match="Nothing of payment"):
        refund_payment(payment, 1)
    assert [r.status for r in (first, second)] == [RefundStatus.PROCESSING, RefundStatus.PROCESSING]
    assert Refund.objects.filter(status=RefundStatus.COMPLETED).count() == 2
    assert len(khaime_emulator.refunds()) == 2  # the third never reached Khaime


@pytest.mark.parametrize("amount", [0, -5, 5321, 20.0, "100", True])
def test_an_amount_that_is_not_a_positive_integer_within_the_payment_is_refused_before_anything(
    khaime_emulator, gate, amount
):
    payment = paid_payment(khaime_emulator, gate)
    with pytest.raises(RefundNotAllowed):
        refund_payment(payment, amount)
    assert not Refund.objects.exists()
    assert khaime_emulator.refunds() == []


def test_a_timeout_after_khaime_acted_is_unknown_until_the_webhook_settles_it(
    khaime_emulator, gate, settings, refund_signals
):
    settings.KHAIME = {**settings.KHAIME, "TIMEOUT": (1, 0.5)}
    khaime_emulator.configure(refund_answer_delay=1.5)
    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    khaime_emulator.next_refund("timeout")
    refund = refund_payment(payment, 1000)

    assert refund.status == RefundStatus.UNKNOWN
    assert refund.refund_id is None
    assert "did not answer" in refund.last_error
    assert len(khaime_emulator.refunds()) == 1  # sent once, never retried
    # Still counted: only 4320 remains, whatever Khaime did.
    assert payment.refundable_amount == 4320
    with pytest.raises(RefundNotAllowed, match="more than remains"):
        refund_payment(payment, 4321)

    deliver_held(khaime_emulator, gate, 2)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert refund.refund_id == khaime_emulator.refunds()[0]["refund_id"]
    assert Refund.objects.count() == 1  # matched by transaction and amount, not recorded twice
    assert payment.refunded_amount == 1000
    assert "matched our unknown refund" in WebhookEvent.objects.get(event_type="refund.completed").detail
    assert [name for name, *_ in refund_signals] == ["refund_requested", "refund_unknown", "refund_completed"]


def test_a_webhook_that_overtakes_the_answer_completes_the_requested_refund(khaime_emulator, gate, settings):
    # The answer is held past the client's timeout; the webhook goes through meanwhile.
    settings.KHAIME = {**settings.KHAIME, "TIMEOUT": (1, 1.0)}
    khaime_emulator.configure(refund_answer_delay=2.0)
    payment = paid_payment(khaime_emulator, gate)
    khaime_emulator.next_refund("timeout")
    # Partial, so refund.completed is the only webhook: it lands while our POST waits.
    refund = refund_payment(payment, 2500)
    khaime_emulator.wait_for_deliveries(2)

    assert refund.status == RefundStatus.COMPLETED  # not unknown: the webhook told us first
    assert refund.refund_id == khaime_emulator.refunds()[0]["refund_id"]
    assert Refund.objects.count() == 1
    assert [change.to_status for change in refund.status_changes.all()] == [RefundStatus.COMPLETED]


def test_a_dropped_connection_after_sending_is_unknown(khaime_emulator, gate):
    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    khaime_emulator.next_refund("drop")
    refund = refund_payment(payment, 500)
    assert refund.status == RefundStatus.UNKNOWN
    assert len(khaime_emulator.refunds()) == 1
    deliver_held(khaime_emulator, gate, 2)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED


def test_khaime_refusing_the_refund_fails_it_and_the_amount_is_refundable_again(khaime_emulator, gate):
    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    # Someone refunded most of it in Khaime's dashboard; its webhooks are not here yet.
    khaime_emulator.dashboard_refund(payment.transaction_id, amount=5000)
    refund = refund_payment(payment, 1000)
    assert refund.status == RefundStatus.FAILED
    assert "422" in refund.last_error
    assert payment.refundable_amount == 5320

    deliver_held(khaime_emulator, gate, 2)
    dashboard = Refund.objects.get(origin=RefundOrigin.KHAIME)
    assert (dashboard.status, dashboard.amount, dashboard.requested_by) == (RefundStatus.COMPLETED, 5000, None)
    assert payment.refunded_amount == 5000
    assert payment.refundable_amount == 320


def test_a_dashboard_refund_is_recorded(khaime_emulator, gate):
    payment = paid_payment(khaime_emulator, gate)
    khaime_emulator.dashboard_refund(payment.transaction_id, amount=1200, reason="goodwill")
    khaime_emulator.wait_for_deliveries(2)
    refund = Refund.objects.get()
    assert refund.origin == RefundOrigin.KHAIME
    assert refund.status == RefundStatus.COMPLETED
    assert (refund.amount, refund.reason) == (1200, "goodwill")
    assert refund.refund_id == khaime_emulator.refunds()[0]["refund_id"]
    assert PaymentSession.objects.get().status == Status.COMPLETED
    assert PaymentSession.objects.get().refunded_amount == 1200
    record = WebhookEvent.objects.get(event_type="refund.completed")
    assert record.outcome == WebhookOutcome.APPLIED
    assert "dashboard" in record.detail


def test_a_full_dashboard_refund_of_the_session_refunds_it(khaime_emulator, gate):
    payment = paid_payment(khaime_emulator, gate)
    khaime_emulator.refund(payment.session.session_id)
    khaime_emulator.wait_for_deliveries(3)
    assert PaymentSession.objects.get().status == Status.REFUNDED
    assert Refund.objects.get().amount == 5320


def test_a_redelivered_refund_webhook_changes_nothing_and_signals_once(khaime_emulator, gate, refund_signals):
    khaime_emulator.configure(duplicate_webhooks=True)
    payment = paid_payment(khaime_emulator, gate)
    khaime_emulator.wait_for_deliveries(2)
    gate.hold()
    refund = refund_payment(payment, 100)
    deliver_held(khaime_emulator, gate, 4)
    event_id = WebhookEvent.objects.get(event_type="refund.completed").event_id
    khaime_emulator.redeliver(event_id)
    khaime_emulator.wait_for_deliveries(5)
    assert Refund.objects.count() == 1
    assert [name for name, *_ in refund_signals].count("refund_completed") == 1
    assert refund.status_changes.count() == 2


def test_a_refund_failing_at_khaime_stays_processing_until_an_operator_marks_it_failed(khaime_emulator, gate):
    payment = paid_payment(khaime_emulator, gate)
    khaime_emulator.next_refund("hang")
    refund = refund_payment(payment, 700)
    assert refund.status == RefundStatus.PROCESSING
    khaime_emulator.fail_refund(refund.refund_id)  # Khaime sends no event for a failed refund
    assert khaime_emulator.deliveries()[-1]["event_type"] == "payment.succeeded"
    assert payment.refundable_amount == 5320 - 700

    assert mark_refund_failed(refund, note="not in the dashboard")
    assert not mark_refund_failed(refund, note="twice")
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert payment.refundable_amount == 5320


def test_a_hung_refund_completes_when_khaime_completes_it(khaime_emulator, gate):
    payment = paid_payment(khaime_emulator, gate)
    khaime_emulator.next_refund("hang")
    refund = refund_payment(payment, 900)
    assert refund.status == RefundStatus.PROCESSING
    gate.hold()
    khaime_emulator.complete_refund(refund.refund_id)
    deliver_held(khaime_emulator, gate, 2)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED


def test_a_subscription_renewal_is_refunded_and_the_checkout_keeps_its_status(khaime_emulator, gate):
    first = paid_payment(khaime_emulator, gate, amount=1500, frequency="monthly")
    subscription_id = khaime_emulator.sessions()[0]["subscription_id"]
    khaime_emulator.renew_subscription(subscription_id)
    khaime_emulator.wait_for_deliveries(4)  # created, succeeded, renewed, succeeded
    renewal = Payment.objects.exclude(pk=first.pk).get()
    assert renewal.session == first.session  # renewals are recorded against the checkout

    gate.hold()
    refund = refund_payment(renewal)
    deliver_held(khaime_emulator, gate, 6)  # refund.completed, payment.refunded
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert refund.payment == renewal
    assert renewal.refunded_amount == renewal.amount
    session = PaymentSession.objects.get()
    assert session.status == Status.COMPLETED
    assert session.refunded_amount == 0
    refunded_event = WebhookEvent.objects.get(event_type="payment.refunded")
    assert "renewal" in refunded_event.detail
    truth = {p["transaction_id"]: p for p in khaime_emulator.truth()["payments"]}
    assert truth[renewal.transaction_id]["refunded_amount"] == renewal.amount
    assert truth[first.transaction_id]["refunded_amount"] == 0


def test_the_same_request_token_never_makes_a_second_refund(khaime_emulator, gate):
    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    first = refund_payment(payment, 1000, request_token="form-1")
    again = refund_payment(payment, 1000, request_token="form-1")
    assert again.pk == first.pk
    assert len(khaime_emulator.refunds()) == 1
    deliver_held(khaime_emulator, gate, 2)
    assert Refund.objects.get().status == RefundStatus.COMPLETED


def test_a_form_made_stale_by_another_refund_is_refused(khaime_emulator, gate):
    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    refund_payment(payment, 1000, request_token="tab-1", expect_refunds=0)
    with pytest.raises(StaleRefundForm):
        refund_payment(payment, 1000, request_token="tab-2", expect_refunds=0)
    assert len(khaime_emulator.refunds()) == 1
    deliver_held(khaime_emulator, gate, 2)


@pytest.mark.parametrize(("currency", "amount", "shown"), [("JPY", 5000, "¥5,320"), ("KWD", 1250, "KWD")])
def test_refunds_in_currencies_without_two_decimals(khaime_emulator, gate, currency, amount, shown):
    payment = paid_payment(khaime_emulator, gate, amount=amount, currency=currency)
    gate.hold()
    refund = refund_payment(payment, 100)
    deliver_held(khaime_emulator, gate, 2)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert refund.currency == currency
    assert shown in payment.display_amount


def test_the_order_page_shows_what_was_refunded(khaime_emulator, gate, client):
    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    refund_payment(payment, 2000)
    deliver_held(khaime_emulator, gate, 2)
    page = client.get(f"/orders/{payment.session.reference}/")
    assert page.status_code == 200
    assert 'data-refunded="2000"' in page.content.decode()
    assert "$20.00" in page.content.decode()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_concurrent_refunds_never_exceed_the_payment(khaime_emulator, gate):
    import threading

    from django.db import connections

    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    barrier = threading.Barrier(8)
    results: list[object] = []

    def refund_part():
        try:
            barrier.wait()
            results.append(refund_payment(Payment.objects.get(pk=payment.pk), 1000))
        except RefundNotAllowed as error:
            results.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=refund_part) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    made = [r for r in results if isinstance(r, Refund)]
    refused = [r for r in results if isinstance(r, RefundNotAllowed)]
    assert (len(made), len(refused)) == (5, 3)  # 5 x 1000 fits in 5320; the 6th would not
    assert all(r.status == RefundStatus.PROCESSING for r in made)
    assert sum(r["amount"] for r in khaime_emulator.refunds()) == 5000
    assert payment.refundable_amount == 320
    deliver_held(khaime_emulator, gate, 1 + 5)
    assert payment.refunded_amount == 5000
    assert PaymentSession.objects.get().status == Status.COMPLETED


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_the_same_form_submitted_at_once_from_threads_makes_one_refund(khaime_emulator, gate):
    import threading

    from django.db import connections

    payment = paid_payment(khaime_emulator, gate)
    gate.hold()
    barrier = threading.Barrier(4)
    results: list[Refund] = []

    def submit():
        try:
            barrier.wait()
            results.append(refund_payment(Payment.objects.get(pk=payment.pk), 1000, request_token="one-form"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({refund.pk for refund in results}) == 1
    assert len(results) == 4
    assert len(khaime_emulator.refunds()) == 1
    deliver_held(khaime_emulator, gate, 2)
    assert Refund.objects.get().status == RefundStatus.COMPLETED

"""Subscription events through the webhook view: upsert, ordering, ledger, signals, access."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from khaime_django.models import Payment, Subscription, SubscriptionStatusChange, WebhookEvent, WebhookOutcome
from khaime_django.subscription_statuses import SubscriptionStatus
from khaime_django.timestamps import parse_timestamp

from .subscription_helpers import subscription_event, subscription_object
from .webhook_helpers import payment_event

pytestmark = pytest.mark.django_db

SUB = SubscriptionStatus


def named(log, *names):
    return [name for name, _ in log if name in names]


def renewal_payment(session, txn, *, occurred_at="2026-03-27T14:32:00Z", **data):
    payload = payment_event("payment.succeeded", session, id=txn, subscription_id="sub_1", **data)
    payload["occurred_at"] = occurred_at
    return payload


@pytest.fixture
def monthly(make_session):
    user = get_user_model().objects.create_user("member", "member@example.com", "pw")
    return make_session(subscription_frequency_key="monthly", product_name="Monthly Membership", user=user)


def test_created_records_the_subscription_its_first_payment_and_signals(deliver, monthly, signal_log):
    payload = subscription_event("subscription.created", subscription_object(session=monthly))
    assert deliver(payload).status_code == 200
    sub = Subscription.objects.get()
    assert (sub.subscription_id, sub.status, sub.frequency, sub.amount, sub.currency) == (
        "sub_1",
        SUB.ACTIVE,
        "monthly",
        5320,
        "USD",
    )
    assert (sub.session, sub.user, sub.customer_email, sub.product_id) == (
        monthly,
        monthly.user,
        "member@example.com",
        7,
    )
    assert sub.next_payment_date == parse_timestamp("2026-04-27T14:32:00.000Z")
    assert sub.first_transaction_id == "txn_first"
    payment = Payment.objects.get()
    assert (payment.transaction_id, payment.subscription, payment.session, payment.is_renewal) == (
        "txn_first",
        sub,
        monthly,
        False,
    )
    assert named(signal_log, "subscription_created", "subscription_activated", "subscription_renewed") == [
        "subscription_created",
        "subscription_activated",
    ]
    assert WebhookEvent.objects.get().outcome == WebhookOutcome.APPLIED
    assert list(SubscriptionStatusChange.objects.values_list("from_status", "to_status", "source")) == [
        ("pending", "active", "webhook")
    ]


def test_first_payment_event_before_created_is_one_payment_and_no_renewal(deliver, monthly, signal_log):
    deliver(renewal_payment(monthly, "txn_first"))
    sub = Subscription.objects.get()
    assert sub.status == SUB.ACTIVE  # money received for it
    assert Payment.objects.get().subscription == sub
    deliver(subscription_event("subscription.created", subscription_object(session=monthly)))
    sub.refresh_from_db()
    assert sub.status == SUB.ACTIVE
    assert Payment.objects.get().is_renewal is False
    assert named(signal_log, "subscription_created", "subscription_renewed") == ["subscription_created"]


@pytest.mark.parametrize("payment_first", [True, False])
def test_a_renewal_reported_by_both_events_is_one_payment_and_one_signal(deliver, monthly, signal_log, payment_first):
    deliver(subscription_event("subscription.created", subscription_object(session=monthly)))
    renewed = subscription_event(
        "subscription.renewed",
        subscription_object(
            session=monthly, payments=("txn_first", "txn_r1"), next_payment_date="2026-05-27T14:32:00.000Z"
        ),
        occurred_at="2026-04-27T14:32:00Z",
    )
    paid = renewal_payment(monthly, "txn_r1", occurred_at="2026-04-27T14:32:00Z")
    for payload in (paid, renewed) if payment_first else (renewed, paid):
        deliver(payload)
        deliver(payload)
    assert Payment.objects.filter(transaction_id="txn_r1").count() == 1
    renewal = Payment.objects.get(transaction_id="txn_r1")
    assert renewal.is_renewal is True and renewal.subscription.subscription_id == "sub_1"
    assert renewal.amounts  # payment.succeeded's breakdown, whichever event came first
    renewals = [kwargs for name, kwargs in signal_log if name == "subscription_renewed"]
    assert len(renewals) == 1
    assert renewals[0]["payment"].transaction_id == "txn_r1"
    sub = Subscription.objects.get()
    assert sub.next_payment_date == parse_timestamp("2026-05-27T14:32:00.000Z")


def test_renewed_before_created_creates_the_row_and_created_changes_nothing_back(deliver, monthly, signal_log):
    renewed = subscription_event(
        "subscription.renewed",
        subscription_object(
            session=monthly, payments=("txn_first", "txn_r1"), next_payment_date="2026-05-27T00:00:00Z"
        ),
        occurred_at="2026-04-27T14:32:00Z",
    )
    deliver(renewed)
    created = subscription_event("subscription.created", subscription_object(session=monthly))
    deliver(created)
    sub = Subscription.objects.get()
    assert sub.next_payment_date == parse_timestamp("2026-05-27T00:00:00Z")
    assert WebhookEvent.objects.get(event_id=created["event_id"]).outcome == WebhookOutcome.IGNORED
    assert named(signal_log, "subscription_created", "subscription_renewed") == [
        "subscription_created",
        "subscription_renewed",
    ]
    assert Payment.objects.count() == 2


def test_an_older_event_never_undoes_a_newer_one(deliver, monthly):
    cancelled = subscription_event(
        "subscription.cancelled",
        subscription_object(session=monthly, status="cancelled"),
        occurred_at="2026-04-02T00:00:00Z",
    )
    stale = subscription_event(
        "subscription.created", subscription_object(session=monthly), occurred_at="2026-03-27T00:00:00Z"
    )
    deliver(cancelled)
    deliver(stale)
    assert Subscription.objects.get().status == SUB.CANCELLED


def test_within_one_second_more_payments_or_a_later_status_wins(deliver, monthly):
    two = ("txn_first", "txn_r1")
    renewed = subscription_event("subscription.renewed", subscription_object(session=monthly, payments=two))
    failed = subscription_event(
        "subscription.payment_failed", subscription_object(session=monthly, status="due", payments=two)
    )
    renewed_again = subscription_event(
        "subscription.renewed", subscription_object(session=monthly, payments=(*two, "txn_r2"))
    )
    for payload in (renewed_again, failed, renewed):  # all reported in the same second, delivered backwards
        deliver(payload)
    assert Subscription.objects.get().status == SUB.ACTIVE
    deliver(
        subscription_event(
            "subscription.expired", subscription_object(session=monthly, status="expired", payments=(*two, "txn_r2"))
        )
    )
    deliver(renewed_again)
    assert Subscription.objects.get().status == SUB.EXPIRED


def test_status_words_and_event_types(deliver, monthly, signal_log):
    steps = [
        ("subscription.payment_failed", "due", SUB.DUE, "subscription_payment_failed"),
        ("subscription.paused", "paused", SUB.PAUSED, "subscription_paused"),
        ("subscription.resumed", "active", SUB.ACTIVE, "subscription_activated"),
        ("subscription.cancelled", "cancelled", SUB.CANCELLED, "subscription_cancelled"),
        ("subscription.expired", "expired", SUB.EXPIRED, "subscription_expired"),
    ]
    deliver(subscription_event("subscription.created", subscription_object(session=monthly)))
    for second, (event_type, word, status, signal) in enumerate(steps, start=1):
        signal_log.clear()
        deliver(
            subscription_event(
                event_type,
                subscription_object(session=monthly, status=word),
                occurred_at=f"2026-03-28T00:00:0{second}Z",
            )
        )
        assert Subscription.objects.get().status == status
        assert named(signal_log, signal) == [signal]
        assert "subscription_status_changed" in named(signal_log, "subscription_status_changed")


def test_event_type_decides_when_the_object_has_no_status(deliver, monthly):
    deliver(subscription_event("subscription.cancelled", subscription_object(session=monthly, status=None)))
    assert Subscription.objects.get().status == SUB.CANCELLED


def test_trial_started_ending_and_ended(deliver, monthly, signal_log):
    trial = {"trial_ends_at": "2026-04-10T00:00:00.000Z"}
    deliver(
        subscription_event(
            "subscription.trial_started", subscription_object(session=monthly, status="trialing", **trial)
        )
    )
    sub = Subscription.objects.get()
    assert sub.status == SUB.TRIALING and sub.is_active
    assert sub.trial_ends_at == parse_timestamp("2026-04-10T00:00:00.000Z")
    ending = subscription_event(
        "subscription.trial_ending",
        subscription_object(session=monthly, status="trialing", **trial),
        occurred_at="2026-04-07T00:00:00Z",
    )
    deliver(ending)
    deliver(subscription_event("subscription.trial_ending", ending["data"], occurred_at="2026-04-07T00:00:00Z"))
    assert named(signal_log, "subscription_trial_ending") == ["subscription_trial_ending"]
    deliver(
        subscription_event(
            "subscription.trial_ended",
            subscription_object(session=monthly, status="active"),
            occurred_at="2026-04-10T00:00:00Z",
        )
    )
    assert Subscription.objects.get().status == SUB.ACTIVE


def test_payment_failed_naming_the_subscription_makes_it_due_when_newer(deliver, monthly):
    deliver(subscription_event("subscription.created", subscription_object(session=monthly)))
    same_second = payment_event("payment.failed", monthly, id="txn_declined", subscription_id="sub_1")
    same_second["occurred_at"] = "2026-03-27T14:32:00Z"
    deliver(same_second)
    assert Subscription.objects.get().status == SUB.ACTIVE  # nothing orders it after created: kept
    later = payment_event("payment.failed", monthly, id="txn_declined2", subscription_id="sub_1")
    later["occurred_at"] = "2026-04-27T14:32:00Z"
    deliver(later)
    assert Subscription.objects.get().status == SUB.DUE
    assert not Payment.objects.filter(transaction_id__startswith="txn_declined").exists()


def test_unmatched_subscription_is_still_recorded(deliver):
    deliver(subscription_event("subscription.created", subscription_object()))
    sub = Subscription.objects.get()
    assert sub.session is None and sub.status == SUB.ACTIVE
    assert Payment.objects.get().amount == 5320


@pytest.mark.parametrize("bad_id", [None, "", 5, "x" * 300, ["sub_1"]])
def test_an_event_without_a_usable_id_is_ignored_and_changes_nothing(deliver, bad_id):
    payload = subscription_event("subscription.created", subscription_object(id=bad_id))
    assert deliver(payload).status_code == 200
    assert not Subscription.objects.exists()
    assert WebhookEvent.objects.get().outcome == WebhookOutcome.IGNORED


def test_garbage_fields_are_ignored_not_fatal(deliver):
    data = subscription_object(
        amount="lots",
        currency=7,
        customer_email="not an email",
        next_payment_date="tomorrow",
        payment_history=[None, {"id": 3}, {"id": "txn_ok", "amount": True, "currency": "USD", "status": "succeeded"}],
        metadata="oops",
        status=["active"],
    )
    deliver(subscription_event("subscription.renewed", data))
    sub = Subscription.objects.get()
    assert sub.status == SUB.ACTIVE and sub.amount is None and sub.next_payment_date is None
    assert not Payment.objects.exists()  # no amount anywhere: nothing to record, nothing invented
    assert WebhookEvent.objects.get().error == ""


def test_a_failing_receiver_is_recorded_on_the_event(deliver, monthly):
    from khaime_django.signals import subscription_created

    def explode(sender, **kwargs):
        raise RuntimeError("merchant bug")

    subscription_created.connect(explode)
    try:
        deliver(subscription_event("subscription.created", subscription_object(session=monthly)))
    finally:
        subscription_created.disconnect(explode)
    assert Subscription.objects.get().status == SUB.ACTIVE
    assert "merchant bug" in WebhookEvent.objects.get().error


# -- access --------------------------------------------------------------------------------------


def make_sub(status, next_payment_date=None, **fields):
    return Subscription.objects.create(
        subscription_id=f"sub_{Subscription.objects.count()}",
        status=status,
        next_payment_date=next_payment_date,
        **fields,
    )


@pytest.mark.parametrize(
    ("status", "days", "active"),
    [
        (SUB.ACTIVE, None, True),
        (SUB.TRIALING, None, True),
        (SUB.DUE, 1, True),
        (SUB.DUE, -2, True),  # inside the 3-day grace
        (SUB.DUE, -4, False),
        (SUB.DUE, None, False),
        (SUB.CANCELLED, 1, True),  # the paid period has not ended
        (SUB.CANCELLED, -1, False),
        (SUB.CANCELLED, None, False),
        (SUB.EXPIRED, 10, False),
        (SUB.PAUSED, 10, False),
        (SUB.PENDING, 10, False),
    ],
)
def test_is_active_and_the_queryset_agree(status, days, active):
    date = timezone.now() + timedelta(days=days) if days is not None else None
    sub = make_sub(status, date)
    assert sub.is_active is active
    assert Subscription.objects.active().filter(pk=sub.pk).exists() is active


def test_grace_comes_from_settings(settings):
    settings.KHAIME = {**settings.KHAIME, "SUBSCRIPTION_GRACE": 60}
    sub = make_sub(SUB.DUE, timezone.now() - timedelta(minutes=2))
    assert not sub.is_active
    assert sub.access_ends_at == sub.next_payment_date + timedelta(seconds=60)


def test_querysets_find_a_users_and_an_emails_subscriptions(django_user_model):
    user = django_user_model.objects.create_user("ada", "Ada@Example.com", "pw")
    mine = make_sub(SUB.ACTIVE, user=user, product_id=7, product_name="Monthly Membership")
    by_email = make_sub(SUB.ACTIVE, customer_email="ada@example.com", product_name="Other")
    make_sub(SUB.ACTIVE, customer_email="someone@example.com")
    assert set(Subscription.objects.for_user(user)) == {mine, by_email}
    assert set(Subscription.objects.for_email("ADA@example.com")) == {by_email}
    assert list(Subscription.objects.for_user(user).for_product(7)) == [mine]
    assert list(Subscription.objects.for_user(user).for_product("7")) == [mine]
    assert list(Subscription.objects.for_user(user).for_product("monthly membership")) == [mine]
    assert not Subscription.objects.for_email("").exists()
    from django.contrib.auth.models import AnonymousUser

    assert not Subscription.objects.for_user(AnonymousUser()).exists()
    assert not Subscription.objects.for_user(None).exists()


def test_a_subscription_event_carrying_another_object_is_ignored(deliver, monthly):
    payload = subscription_event("subscription.renewed", payment_event("payment.succeeded", monthly)["data"])
    deliver(payload)
    assert not Subscription.objects.exists()
    assert WebhookEvent.objects.get().outcome == WebhookOutcome.IGNORED


def test_a_renewal_payment_alone_makes_a_due_subscription_active_when_newer(deliver, monthly, signal_log):
    deliver(subscription_event("subscription.created", subscription_object(session=monthly)))
    deliver(
        subscription_event(
            "subscription.payment_failed",
            subscription_object(session=monthly, status="due"),
            occurred_at="2026-04-27T14:32:00Z",
        )
    )
    same_second = renewal_payment(monthly, "txn_r_same", occurred_at="2026-04-27T14:32:00Z")
    deliver(same_second)
    assert Subscription.objects.get().status == SUB.DUE  # nothing orders it after the failure
    deliver(renewal_payment(monthly, "txn_r_later", occurred_at="2026-04-28T09:00:00Z"))  # subscription.renewed lost
    assert Subscription.objects.get().status == SUB.ACTIVE
    assert named(signal_log, "subscription_renewed").count("subscription_renewed") == 2


def test_a_first_payment_before_created_activates_the_pending_subscription(deliver, monthly):
    deliver(renewal_payment(monthly, "txn_first"))
    assert Subscription.objects.get().status == SUB.ACTIVE
    deliver(subscription_event("subscription.created", subscription_object(session=monthly)))
    sub = Subscription.objects.get()
    assert sub.status == SUB.ACTIVE and sub.frequency == "monthly" and sub.product_id == 7
    assert list(sub.status_changes.values_list("to_status", flat=True)) == [SUB.ACTIVE]


def test_a_long_history_already_recorded_costs_a_constant_number_of_queries(
    deliver, monthly, django_assert_max_num_queries
):
    payments = tuple(f"txn_{n}" for n in range(60))
    data = subscription_object(session=monthly, payments=payments)
    deliver(subscription_event("subscription.renewed", data))
    assert Payment.objects.count() == 60
    with django_assert_max_num_queries(30):
        deliver(subscription_event("subscription.renewed", data, occurred_at="2026-03-28T00:00:00Z"))
    assert Payment.objects.count() == 60

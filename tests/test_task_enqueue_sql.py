"""Task mode on PostgreSQL with django-tasks-db: the event and its task in one statement
(``khaime_django.task_enqueue_sql``). The row it writes must be the row
``DatabaseBackend.enqueue()`` writes, column for column; anything it does not recognise goes the
portable way (a transaction around the INSERT and ``enqueue()``)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.db.models import Func
from django.db.models.signals import post_save, pre_save
from django.test import Client

from khaime_django import task_engine, task_enqueue_sql, tasks
from khaime_django.models import WebhookEvent, WebhookOutcome
from khaime_django.services import inbox
from khaime_django.webhooks import KhaimeEvent

from .concurrency import run_at_once
from .tasks_support import DATABASE, DUMMY, task_mode
from .webhook_helpers import payment_event, post_webhook

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a data-modifying CTE: PostgreSQL only (set DATABASE_URL=postgres://...)"
)
pytestmark = pytest.mark.django_db(transaction=True)


def event_of(payload) -> KhaimeEvent:
    return KhaimeEvent.from_payload(payload, api_version_header="2026-03-27")


def one_statement(backend=None) -> None:
    """Fail unless the one-statement path is the one taken (it is on PostgreSQL)."""
    assert task_enqueue_sql.supported(backend or task_engine.get_backend(), "default")


def record(event: KhaimeEvent) -> task_enqueue_sql.Recorded:
    return task_enqueue_sql.record_and_enqueue(
        inbox.new_record(event),
        task_engine.bound(tasks.apply_webhook_event_task),
        task_engine.get_backend(),
        "default",
        retry=inbox.RETRY_OUTCOMES,
    )


def task_columns(row) -> dict:
    from django_tasks_db.models import DBTaskResult

    return {field.column: getattr(row, field.attname) for field in DBTaskResult._meta.concrete_fields}


@on_postgres
def test_the_task_row_is_the_one_enqueue_writes_column_for_column(settings, make_session):
    from django_tasks_db.models import DBTaskResult

    task_mode(settings, DATABASE, TASK_QUEUE="")
    one_statement()
    portable = inbox.insert_new_event(event_of(payment_event("payment.succeeded", make_session())))
    task_engine.enqueue(tasks.apply_webhook_event_task, portable)
    fast = record(event_of(payment_event("payment.succeeded", make_session()))).pk
    by_pk = {row.args_kwargs["args"][0]: task_columns(row) for row in DBTaskResult.objects.all()}
    expected, written = by_pk[portable], by_pk[fast]
    for varies in ("id", "enqueued_at", "args_kwargs"):
        assert type(written.pop(varies)) is type(expected.pop(varies)), varies
    assert written == expected
    assert DBTaskResult.objects.get(args_kwargs__args=[fast]).args_kwargs == {"args": [fast], "kwargs": {}}


@on_postgres
def test_the_event_row_is_the_one_the_portable_insert_writes(settings, make_session):
    task_mode(settings, DATABASE)
    one_statement()
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    first = event_of(payload)
    pk = record(first).pk
    stored = WebhookEvent.objects.get(pk=pk)
    assert (stored.event_id, stored.event_type, stored.outcome, stored.deliveries, stored.payload, stored.is_live) == (
        first.event_id,
        first.event_type,
        WebhookOutcome.RECEIVED,
        1,
        first.payload,
        first.is_live,
    )
    assert stored.received_at is not None


@on_postgres
def test_every_new_event_is_one_statement_without_begin_or_commit(settings, make_session, django_assert_num_queries):
    """Every one, not the first only: django-tasks-db keeps an id_function after its first id."""
    task_mode(settings, DATABASE)
    one_statement()
    for _ in range(3):
        event = event_of(payment_event("payment.succeeded", make_session()))
        with django_assert_num_queries(1) as captured:
            assert tasks.receive_webhook_event(event) == WebhookOutcome.RECEIVED
    assert captured.captured_queries[0]["sql"].startswith("WITH event (pk, outcome, deliveries) AS (INSERT INTO")


@on_postgres
@pytest.mark.parametrize(
    ("outcome", "enqueued"),
    [(WebhookOutcome.RECEIVED, True), (WebhookOutcome.ERROR, True), (WebhookOutcome.APPLIED, False)],
)
def test_a_redelivery_is_counted_and_enqueued_again_only_while_the_event_waits(
    settings, make_session, django_assert_num_queries, outcome, enqueued
):
    from django_tasks_db.models import DBTaskResult

    task_mode(settings, DATABASE)
    one_statement()
    payload = payment_event("payment.succeeded", make_session())
    first = record(event_of(payload))
    assert (first.new, first.outcome, first.enqueued) == (True, WebhookOutcome.RECEIVED, True)
    WebhookEvent.objects.filter(pk=first.pk).update(outcome=outcome)
    with django_assert_num_queries(1):
        again = record(event_of(payload))
    assert (again.pk, again.new, again.outcome, again.enqueued) == (first.pk, False, outcome, enqueued)
    assert WebhookEvent.objects.get().deliveries == 2
    assert DBTaskResult.objects.count() == (2 if enqueued else 1)
    answer = tasks.receive_webhook_event(event_of(payload))
    assert answer == (WebhookOutcome.RECEIVED if enqueued else WebhookOutcome.DUPLICATE)
    assert WebhookEvent.objects.get().deliveries == 3


@on_postgres
def test_a_receiver_raising_after_the_commit_is_logged_and_the_event_is_not_stored_twice(
    settings, make_session, caplog
):
    from django_tasks_db.models import DBTaskResult

    task_mode(settings, DATABASE)
    one_statement()

    def broken(sender, **kwargs):
        raise RuntimeError("a merchant's receiver")

    post_save.connect(broken, sender=DBTaskResult)
    try:
        answer = tasks.receive_webhook_event(event_of(payment_event("payment.succeeded", make_session())))
    finally:
        post_save.disconnect(broken, sender=DBTaskResult)
    assert answer == WebhookOutcome.RECEIVED
    assert WebhookEvent.objects.get().deliveries == 1
    assert DBTaskResult.objects.count() == 1
    assert "A receiver of the task row saved for Khaime webhook event" in caplog.text


@on_postgres
def test_the_model_and_backend_signals_are_sent_as_save_and_enqueue_send_them(settings, make_session):
    from django_tasks_db.models import DBTaskResult, get_date_max

    from khaime_django.task_engine import ENGINE

    task_mode(settings, DATABASE)
    one_statement()
    seen = []

    def saving(sender, instance, **kwargs):
        seen.append(("pre_save", instance.run_after, instance._state.adding))

    def saved(sender, instance, created, **kwargs):
        seen.append(("post_save", instance.args_kwargs, created))

    def enqueued(sender, task_result, **kwargs):
        seen.append(("task_enqueued", list(task_result.args), task_result.task.module_path))

    signals = __import__(f"{ENGINE}.signals", fromlist=["task_enqueued"])
    pre_save.connect(saving, sender=DBTaskResult)
    post_save.connect(saved, sender=DBTaskResult)
    signals.task_enqueued.connect(enqueued)
    try:
        tasks.receive_webhook_event(event_of(payment_event("payment.succeeded", make_session())))
    finally:
        pre_save.disconnect(saving, sender=DBTaskResult)
        post_save.disconnect(saved, sender=DBTaskResult)
        signals.task_enqueued.disconnect(enqueued)
    pk = WebhookEvent.objects.get().pk
    assert seen == [
        ("pre_save", get_date_max(), True),  # django-tasks-db's own receiver had set run_after before ours ran
        ("post_save", {"args": [pk], "kwargs": {}}, True),
        ("task_enqueued", [pk], "khaime_django.tasks.apply_webhook_event_task"),
    ]
    assert DBTaskResult.objects.get().run_after == get_date_max()


@on_postgres
def test_the_same_new_event_delivered_at_once_stores_one_event_and_one_task(settings, make_session):
    from django_tasks_db.models import DBTaskResult

    task_mode(settings, DATABASE)
    one_statement()
    payload = payment_event("payment.succeeded", make_session())
    answers = run_at_once(6, lambda i: post_webhook(Client(), payload).json()["outcome"])
    assert len(answers) == 6
    event = WebhookEvent.objects.get()
    assert event.deliveries == 6
    # One task from the statement that inserted it; each of the five that found the event stored
    # (and not applied yet) enqueued it again, as a redelivery always does. The apply is
    # idempotent: running them all applies the event once.
    rows = list(DBTaskResult.objects.all())
    assert len(rows) == 6 and all(row.args_kwargs == {"args": [event.pk], "kwargs": {}} for row in rows)
    outcomes = sorted(tasks.apply_webhook_event_task.call(*row.args_kwargs["args"]) for row in rows)
    assert outcomes == ["applied"] + ["duplicate"] * 5


@on_postgres
def test_when_the_statement_fails_the_event_is_stored_alone_and_enqueued_after(settings, make_session, caplog):
    from django_tasks_db.models import DBTaskResult

    task_mode(settings, DATABASE)
    one_statement()

    def broken(*args):
        raise RuntimeError("the task table is locked")

    original = task_enqueue_sql.record_and_enqueue
    task_enqueue_sql.record_and_enqueue = broken
    try:
        response = post_webhook(Client(), payment_event("payment.succeeded", make_session()))
    finally:
        task_enqueue_sql.record_and_enqueue = original
    assert (response.status_code, response.json()["outcome"]) == (202, "received")
    event = WebhookEvent.objects.get()
    assert [row.args_kwargs["args"] for row in DBTaskResult.objects.all()] == [[event.pk]]
    assert "Could not record and enqueue Khaime webhook event" in caplog.text


def test_not_supported_on_other_backends_databases_models_or_ids(settings, monkeypatch):
    task_mode(settings, DUMMY)
    assert not task_enqueue_sql.supported(task_engine.get_backend(), "default")
    task_mode(settings, DATABASE)
    backend = task_engine.get_backend()
    if connection.vendor != "postgresql":
        assert not task_enqueue_sql.supported(backend, "default")
        return
    assert task_enqueue_sql.supported(backend, "default")
    backend._get_id()  # django-tasks-db keeps the model's default as id_function after its first id
    assert task_enqueue_sql.supported(backend, "default")
    monkeypatch.setattr(backend, "id_function", lambda: "a-merchant-id")
    assert task_enqueue_sql.supported(backend, "default")
    monkeypatch.setattr(backend, "id_function", lambda: Func(function="gen_random_uuid"))
    assert not task_enqueue_sql.supported(backend, "default")  # made by the database: left to enqueue()
    monkeypatch.setattr(backend, "id_function", None)
    task_enqueue_sql._supported.cache_clear()
    monkeypatch.setattr(task_enqueue_sql, "TASK_FIELDS", task_enqueue_sql.TASK_FIELDS | {"a_new_column"})
    try:
        assert not task_enqueue_sql.supported(backend, "default")  # a django-tasks-db it was not checked against
    finally:
        task_enqueue_sql._supported.cache_clear()


def test_the_portable_way_commits_the_event_and_its_task_together(settings, make_session, monkeypatch):
    """Where the one statement is not supported (SQLite here, another backend or model version),
    the event and its task commit in one transaction. Forced on PostgreSQL too."""
    from django_tasks_db.models import DBTaskResult

    task_mode(settings, DATABASE)
    monkeypatch.setattr(task_enqueue_sql, "supported", lambda backend, using: False)
    payload = payment_event("payment.succeeded", make_session())
    assert tasks.receive_webhook_event(event_of(payload)) == "received"
    event = WebhookEvent.objects.get()
    assert [row.args_kwargs["args"] for row in DBTaskResult.objects.all()] == [[event.pk]]
    assert tasks.receive_webhook_event(event_of(payload)) == "received"  # not applied yet: enqueued again
    assert WebhookEvent.objects.get().deliveries == 2
    assert DBTaskResult.objects.count() == 2


@on_postgres
def test_a_redelivery_while_a_worker_applies_the_event_waits_and_enqueues_nothing(settings, make_session):
    """The worker holds the event's row lock while it applies; the redelivery's upsert waits for
    it, then finds the event applied: counted, answered duplicate, no second task."""
    from django.db import transaction
    from django_tasks_db.models import DBTaskResult

    task_mode(settings, DATABASE)
    one_statement()
    payload = payment_event("payment.succeeded", make_session())
    first = record(event_of(payload))
    locked, answers = threading.Event(), []

    def worker():
        try:
            with transaction.atomic():
                event = WebhookEvent.objects.select_for_update().get(pk=first.pk)
                locked.set()
                time.sleep(0.5)  # the redelivery arrives meanwhile
                inbox.apply_webhook_event(event)
        finally:
            connection.close()

    def redelivery():
        try:
            locked.wait(10)
            started = time.monotonic()
            answers.append((tasks.receive_webhook_event(event_of(payload)), time.monotonic() - started))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker), threading.Thread(target=redelivery)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    [(answer, waited)] = answers
    assert answer == WebhookOutcome.DUPLICATE
    assert waited >= 0.3  # it waited for the worker's commit
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.deliveries) == (WebhookOutcome.APPLIED, 2)
    assert DBTaskResult.objects.count() == 1

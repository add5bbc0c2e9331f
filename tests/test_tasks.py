"""Task mode (KHAIME["WEBHOOK_PROCESSING"] = "task"): the view records and answers, the task
applies once, a lost enqueue is recovered by khaime_sync; the system checks; the
reconciliation tasks. The real engines (db_worker, RQ workers) are in
tests/integration/test_task_workers.py."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from khaime_django import checks, services, task_engine, task_enqueue_sql, tasks
from khaime_django.exceptions import KhaimeConfigurationError
from khaime_django.models import PaymentSession, Status, StatusChange, WebhookEvent, WebhookOutcome

from .tasks_support import DATABASE, DUMMY, IMMEDIATE, task_mode
from .webhook_helpers import payment_event, post_webhook

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(settings):
    """Task mode on the DummyBackend: tasks are kept, not run; returns the backend."""
    task_mode(settings, DUMMY)
    backend = task_engine.get_backend()
    backend.clear()
    return backend


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """``run(task, *args)`` calls the task as a worker would, commit hooks (signals) included."""

    def call(task_, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return task_.call(*args, **kwargs)

    return call


def completed(signal_log, session):
    return [k for name, k in signal_log if name == "payment_completed" and k["session"].pk == session.pk]


def test_task_mode_records_answers_202_and_enqueues_the_apply_on_commit(queued, make_session, signal_log, deliver):
    session = make_session()
    response = deliver(payment_event("payment.succeeded", session))
    assert (response.status_code, response.json()) == (202, {"received": True, "outcome": "received"})
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookOutcome.RECEIVED
    session.refresh_from_db()
    assert session.status == Status.PENDING and signal_log == []
    [result] = queued.results
    assert result.task.module_path == "khaime_django.tasks.apply_webhook_event_task"
    assert result.args == [event.pk]


def test_the_task_applies_once_and_signals_once_however_often_it_runs(run, queued, make_session, signal_log, deliver):
    session = make_session()
    deliver(payment_event("payment.succeeded", session))
    [result] = queued.results
    assert run(tasks.apply_webhook_event_task, *result.args) == WebhookOutcome.APPLIED
    assert run(tasks.apply_webhook_event_task, *result.args) == WebhookOutcome.DUPLICATE
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert StatusChange.objects.filter(session=session).count() == 1
    assert len(completed(signal_log, session)) == 1


def test_a_redelivery_before_the_apply_enqueues_again_and_still_applies_once(
    run, queued, make_session, signal_log, deliver
):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    assert deliver(payload).json()["outcome"] == "received"
    assert deliver(payload).json()["outcome"] == "received"
    assert len(queued.results) == 2
    outcomes = [run(tasks.apply_webhook_event_task, *r.args) for r in queued.results]
    assert outcomes == [WebhookOutcome.APPLIED, WebhookOutcome.DUPLICATE]
    assert WebhookEvent.objects.get().deliveries == 2
    assert len(completed(signal_log, session)) == 1


def test_a_redelivery_after_the_apply_is_a_duplicate_and_enqueues_nothing(run, queued, make_session, deliver):
    session = make_session()
    payload = payment_event("payment.succeeded", session)
    deliver(payload)
    run(tasks.apply_webhook_event_task, *queued.results[0].args)
    response = deliver(payload)
    assert (response.status_code, response.json()["outcome"]) == (200, "duplicate")
    assert len(queued.results) == 1


def test_nothing_is_enqueued_before_the_commit(queued, make_session, django_capture_on_commit_callbacks):
    session = make_session()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert post_webhook_client(payment_event("payment.succeeded", session)).status_code == 202
    assert queued.results == [] and len(callbacks) == 1
    callbacks[0]()
    assert len(queued.results) == 1


def post_webhook_client(payload):
    from django.test import Client

    return post_webhook(Client(), payload)


def test_a_task_for_a_pruned_event_is_missing_not_an_error(run, queued):
    assert run(tasks.apply_webhook_event_task, 987654) == "missing"


def test_an_event_that_fails_in_the_task_is_stored_as_error(run, queued, make_session, deliver, monkeypatch):
    session = make_session()
    deliver(payment_event("payment.succeeded", session))

    def broken(record, event, source):
        raise RuntimeError("fulfilment database down")

    monkeypatch.setitem(services.EVENT_HANDLERS, "payment", broken)
    assert run(tasks.apply_webhook_event_task, *queued.results[0].args) == WebhookOutcome.ERROR
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookOutcome.ERROR and "fulfilment database down" in event.error


def test_an_event_that_failed_in_the_task_is_applied_by_the_recovery_once_the_cause_is_fixed(
    run, queued, settings, make_session, signal_log, deliver, monkeypatch
):
    """Khaime got 202 and will not redeliver it: the recovery tries it again (inline mode has
    Khaime's retries for this); a second failure leaves it error, counted as not applied."""
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_RECOVERY_DELAY": 0}
    session = make_session()
    deliver(payment_event("payment.succeeded", session))

    def broken(record, event, source):
        raise RuntimeError("fulfilment database down")

    with monkeypatch.context() as patched:
        patched.setitem(services.EVENT_HANDLERS, "payment", broken)
        assert run(tasks.apply_webhook_event_task, *queued.results[0].args) == WebhookOutcome.ERROR
        assert run(tasks.apply_waiting_events_task) == 0
        assert WebhookEvent.objects.get().outcome == WebhookOutcome.ERROR
    assert run(tasks.apply_waiting_events_task) == 1
    session.refresh_from_db()
    assert session.status == Status.COMPLETED and len(completed(signal_log, session)) == 1
    assert WebhookEvent.objects.get().outcome == WebhookOutcome.APPLIED
    assert run(tasks.apply_waiting_events_task) == 0


def test_inline_recovery_leaves_errors_to_khaimes_retries_and_the_admin(settings, make_session, deliver, monkeypatch):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_RECOVERY_DELAY": 0}
    session = make_session()
    with monkeypatch.context() as patched:
        patched.setitem(services.EVENT_HANDLERS, "payment", lambda record, event, source: 1 / 0)
        assert deliver(payment_event("payment.succeeded", session)).status_code == 500
    assert services.apply_waiting_events() == 0
    assert WebhookEvent.objects.get().outcome == WebhookOutcome.ERROR


def test_an_enqueue_failure_still_stores_and_acknowledges_and_khaime_sync_applies_it_later(
    settings, make_session, signal_log, deliver, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    task_mode(settings, DUMMY)

    def redis_down(*args):
        raise ConnectionError("Redis is unavailable")

    monkeypatch.setattr(task_engine, "enqueue", redis_down)
    session = make_session()
    response = deliver(payment_event("payment.succeeded", session))
    assert (response.status_code, response.json()["outcome"]) == (202, "received")
    assert "Could not enqueue Khaime webhook event" in caplog.text
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookOutcome.RECEIVED

    out = StringIO()
    call_command("khaime_sync", "--offline", stdout=out)
    assert "webhook events" not in out.getvalue()  # younger than the recovery delay: a worker may still come
    WebhookEvent.objects.update(received_at=timezone.now() - timedelta(minutes=6))
    call_command("khaime_sync", "--offline", "--dry-run", stdout=out)
    assert "would apply 1 webhook events" in out.getvalue()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("khaime_sync", "--offline", stdout=out)
    assert "applied 1 webhook events still waiting" in out.getvalue()
    session.refresh_from_db()
    assert session.status == Status.COMPLETED and len(completed(signal_log, session)) == 1
    assert WebhookEvent.objects.get().outcome == WebhookOutcome.APPLIED


def test_the_recovery_delay_is_a_setting_and_the_recovery_is_a_task(run, settings, queued, make_session, deliver):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_RECOVERY_DELAY": 0}
    session = make_session()
    deliver(payment_event("payment.succeeded", session))
    assert services.waiting_summary()[0] == 1
    assert (
        run(
            tasks.apply_waiting_events_task,
        )
        == 1
    )
    assert (
        run(
            tasks.apply_waiting_events_task,
        )
        == 0
    )
    assert services.waiting_summary() == (0, None)


def test_the_immediate_backend_applies_in_the_request(settings, make_session, signal_log, deliver):
    task_mode(settings, IMMEDIATE)
    session = make_session()
    assert deliver(payment_event("payment.succeeded", session)).status_code == 202
    session.refresh_from_db()
    assert session.status == Status.COMPLETED and len(completed(signal_log, session)) == 1


def test_inline_stays_the_default(make_session, deliver):
    session = make_session()
    response = deliver(payment_event("payment.succeeded", session))
    assert (response.status_code, response.json()["outcome"]) == (200, "applied")


def test_the_admin_says_how_many_events_wait_and_for_how_long(admin_client, queued, make_session, deliver):
    for _ in range(3):
        deliver(payment_event("payment.succeeded", make_session()))
    url = reverse("admin:khaime_django_webhookevent_changelist")
    page = admin_client.get(url).content.decode()
    assert "3 events wait to be applied; the oldest has waited" in page
    assert "Past the recovery delay" not in page
    WebhookEvent.objects.update(received_at=timezone.now() - timedelta(hours=3))
    page = admin_client.get(url).content.decode()
    assert "the oldest has waited 3 hours" in page and "Past the recovery delay" in page
    WebhookEvent.objects.update(outcome=WebhookOutcome.APPLIED)
    assert "wait to be applied" not in admin_client.get(url).content.decode()


# -- system checks ------------------------------------------------------------------------------


def check_ids():
    return [m.id for m in checks.check_khaime_settings()]


def test_inline_needs_no_task_backend(settings):
    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    assert not {"khaime.E011", "khaime.W007"} & set(check_ids())


def test_task_mode_with_a_worker_backend_passes(settings):
    task_mode(settings, DATABASE)
    assert not {"khaime.E011", "khaime.E012", "khaime.W007"} & set(check_ids())


@pytest.mark.parametrize(
    ("tasks_setting", "khaime", "says"),
    [
        ({"default": {"BACKEND": DUMMY}}, {}, "DummyBackend, which stores tasks and never runs them"),
        ({"default": {"BACKEND": "no.such.Backend"}}, {}, "cannot be loaded"),
        ({"default": {"BACKEND": DATABASE}}, {"TASK_BACKEND": "khaime"}, "'khaime' cannot be loaded"),
        ({"default": {"BACKEND": DATABASE}}, {"TASK_QUEUE": "payments"}, "'payments' is not one of the queues"),
    ],
)
def test_task_mode_without_a_usable_backend_is_an_error(settings, tasks_setting, khaime, says):
    task_mode(settings, **khaime)
    settings.TASKS = tasks_setting
    [error] = [m for m in checks.check_khaime_settings() if m.id == "khaime.E011"]
    assert says in error.msg


def test_task_mode_without_the_engine_is_an_error(settings, monkeypatch):
    task_mode(settings, DATABASE)
    monkeypatch.setattr(task_engine, "ENGINE", None)
    [error] = [m for m in checks.check_khaime_settings() if m.id == "khaime.E011"]
    assert "pip install khaime-django[tasks]" in error.msg


def test_an_unknown_processing_mode_is_an_error(settings):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_PROCESSING": "background"}
    assert "khaime.E012" in check_ids()


def test_a_negative_recovery_delay_is_an_error(settings):
    task_mode(settings, DATABASE, WEBHOOK_RECOVERY_DELAY=-1)
    assert "khaime.E013" in check_ids()


def test_the_immediate_backend_is_a_warning(settings):
    task_mode(settings, IMMEDIATE)
    assert "khaime.W007" in check_ids()


def test_without_an_engine_tasks_still_run_in_process_but_cannot_be_enqueued():
    unavailable = task_engine.UnavailableTask(lambda x: x * 2)
    assert unavailable.using(backend="default").call(21) == 42
    with pytest.raises(KhaimeConfigurationError, match=r"khaime-django\[tasks\]"):
        unavailable.enqueue(1)


# -- reconciliation as tasks --------------------------------------------------------------------


def test_offline_expiry_as_a_task(run, make_session):
    long_ago = timezone.now() - timedelta(hours=2)
    stale = make_session(expires_at=long_ago)
    assert run(tasks.expire_stale_task, grace_seconds=0) == 1
    stale.refresh_from_db()
    assert stale.status == Status.EXPIRED


def test_sync_sessions_as_a_task(run, make_session, khaime_says):
    session = make_session()
    PaymentSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(hours=1))
    khaime_says(session, "completed")
    report = run(tasks.sync_sessions_task, budget=5, grace_seconds=60)
    assert report == {
        "checked": 1,
        "changed": {"completed": 1},
        "errors": 0,
        "requests": 1,
        "stopped": "",
        "unreachable": False,
    }


def test_pruning_as_a_task(run, queued, make_session, deliver):
    deliver(payment_event("payment.succeeded", make_session()))
    WebhookEvent.objects.update(outcome=WebhookOutcome.APPLIED, received_at=timezone.now() - timedelta(days=40))
    assert run(tasks.prune_webhook_events_task, older_than_seconds=30 * 86400) == 1
    assert not WebhookEvent.objects.exists()


def test_the_reconciliation_tasks_enqueue_on_the_configured_backend(queued):
    task_engine.enqueue(tasks.expire_stale_task, 600)
    task_engine.enqueue(tasks.prune_webhook_events_task, 30 * 86400)
    assert [r.task.module_path.rpartition(".")[2] for r in queued.results] == [
        "expire_stale_task",
        "prune_webhook_events_task",
    ]


# -- task mode's one-statement insert -----------------------------------------------------------


def webhook_event(payload):
    from khaime_django.webhooks import KhaimeEvent

    return KhaimeEvent.from_payload(payload, api_version_header="2026-03-27")


def test_a_new_event_is_one_insert_and_a_stored_one_is_none(make_session, django_assert_num_queries):
    event = webhook_event(payment_event("payment.succeeded", make_session()))
    with django_assert_num_queries(1):
        pk = services.inbox.insert_new_event(event)
    stored = WebhookEvent.objects.get(pk=pk)
    assert (stored.event_id, stored.outcome, stored.deliveries, stored.payload) == (
        event.event_id,
        WebhookOutcome.RECEIVED,
        1,
        event.payload,
    )
    assert services.inbox.insert_new_event(event) is None
    assert WebhookEvent.objects.count() == 1


def test_without_insert_returning_the_insert_is_a_savepoint_and_answers_alike(make_session, monkeypatch):
    """Where the database has no INSERT ... RETURNING, the INSERT runs in a savepoint: a stored
    event is still None, the caller's transaction survives the refused INSERT, and the delivery is
    counted once, by the caller (as with RETURNING), not twice."""
    from django.db import connection, transaction

    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    event = webhook_event(payment_event("payment.succeeded", make_session()))
    pk = services.inbox.insert_new_event(event)
    assert WebhookEvent.objects.get(pk=pk).deliveries == 1
    with transaction.atomic():
        assert services.inbox.insert_new_event(event) is None
        assert services.inbox.record_webhook_event(event).pk == pk
    assert WebhookEvent.objects.get(pk=pk).deliveries == 2


# -- the database backend: the event and its task in one transaction ----------------------------


@pytest.mark.django_db(transaction=True)
def test_on_the_database_backend_the_event_and_its_task_commit_together(settings, make_session):
    from django_tasks_db.models import DBTaskResult

    task_mode(settings, DATABASE)
    response = post_webhook_client(payment_event("payment.succeeded", make_session()))
    assert (response.status_code, response.json()["outcome"]) == (202, "received")
    event = WebhookEvent.objects.get()
    [queued_task] = DBTaskResult.objects.all()
    assert queued_task.task_path == "khaime_django.tasks.apply_webhook_event_task"
    assert queued_task.args_kwargs["args"] == [event.pk]


@pytest.mark.django_db(transaction=True)
def test_on_the_database_backend_a_failed_enqueue_still_stores_the_event(settings, make_session, monkeypatch, caplog):
    from django_tasks_db.models import DBTaskResult

    task_mode(settings, DATABASE)

    def table_locked(*args):
        raise RuntimeError("the task table is locked")

    monkeypatch.setattr(task_engine, "enqueue", table_locked)
    monkeypatch.setattr(task_enqueue_sql, "record_and_enqueue", table_locked)  # PostgreSQL's one statement
    response = post_webhook_client(payment_event("payment.succeeded", make_session()))
    assert (response.status_code, response.json()["outcome"]) == (202, "received")
    assert WebhookEvent.objects.get().outcome == WebhookOutcome.RECEIVED
    assert not DBTaskResult.objects.exists()
    assert "Could not enqueue Khaime webhook event" in caplog.text

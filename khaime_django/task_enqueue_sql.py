"""Task mode's acknowledgement in one statement, on PostgreSQL with django-tasks-db's database
backend: the webhook event's INSERT (or, for a redelivery, the count of one more delivery) and
the INSERT of the task that applies it, as one data-modifying CTE. Any delivery then costs one
round trip and one commit. The portable way costs four for a new event (BEGIN, two INSERTs,
COMMIT) and five for a redelivery (BEGIN, SELECT ... FOR UPDATE, UPDATE, COMMIT, then the
enqueue's INSERT), plus the ORM building the task's INSERT.

A redelivery is ``INSERT ... ON CONFLICT (event_id) DO UPDATE SET deliveries = deliveries + 1``:
the conflicting row is locked (waiting for a transaction that is inserting or applying it, as
``SELECT ... FOR UPDATE`` did), and its apply is enqueued again in the same statement when its
outcome says it still needs one, as :func:`khaime_django.tasks.receive_webhook_event` always did.

The task row is the one ``DatabaseBackend.enqueue()`` writes: the same model, built with the same
values (the backend's id, its alias, the task's path, priority, queue and run_after, the
arguments as ``{"args": [event pk], "kwargs": {}}``), with the model's ``pre_save`` and
``post_save`` signals and the backend's ``task_enqueued`` signal sent as a ``save()`` and the
backend send them (django-tasks-db's own ``pre_save`` receiver sets ``run_after``).
``tests/test_task_enqueue_sql.py`` compares the two rows column by column, so an upgrade of
django-tasks-db that changes its row fails there, not in production. Anything this module does not
recognise (another backend, another database, another model, an id made by the database) is left
to ``enqueue()``: :func:`supported` says which.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connections, models
from django.db.models.expressions import Expression
from django.db.models.signals import post_save, pre_save

from .inserts import insert_into, values_of
from .models import WebhookEvent

logger = logging.getLogger(__name__)

#: DBTaskResult's concrete fields as django-tasks-db 0.13 defines them. A model with other fields
#: is a version this module was not checked against: :func:`supported` then answers False.
TASK_FIELDS = frozenset(
    {
        "id",
        "status",
        "enqueued_at",
        "started_at",
        "finished_at",
        "args_kwargs",
        "priority",
        "task_path",
        "worker_ids",
        "queue_name",
        "backend_name",
        "run_after",
        "return_value",
        "exception_class_path",
        "traceback",
    }
)


def supported(backend: Any, using: str) -> bool:
    """Whether :func:`record_and_enqueue` can stand in for ``backend.enqueue()`` on database
    ``using``: PostgreSQL, django-tasks-db's ``DatabaseBackend`` with the model this module knows,
    and task ids made in Python (an ``id_function`` that answers a database expression is left
    to ``enqueue()``)."""
    backend_class: Any = type(backend)
    return _supported(backend_class, using) and _ids_are_values(getattr(backend, "id_function", None))


@functools.lru_cache(maxsize=16)
def _ids_are_values(id_function: Any) -> bool:
    # None: the model's default (uuid4); django-tasks-db stores that here after its first id.
    return id_function is None or not isinstance(id_function(), Expression)


@functools.lru_cache(maxsize=16)
def _supported(backend_class: Any, using: str) -> bool:
    if backend_class.__module__.split(".")[0] != "django_tasks_db" or backend_class.__name__ != "DatabaseBackend":
        return False
    if connections[using].vendor != "postgresql" or not callable(getattr(backend_class, "_get_id", None)):
        return False
    try:
        from django_tasks_db.models import DBTaskResult  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    return {field.name for field in DBTaskResult._meta.concrete_fields} == TASK_FIELDS


@dataclass(frozen=True)
class Recorded:
    """What :func:`record_and_enqueue` did: the event's primary key, whether this delivery
    inserted it, its stored outcome, and whether its apply was enqueued."""

    pk: int
    new: bool
    outcome: str
    enqueued: bool


def record_and_enqueue(
    event_row: WebhookEvent, task: Any, backend: Any, using: str, *, retry: Iterable[str]
) -> Recorded:
    """INSERT ``event_row``, or count one more delivery of the stored event with its event_id;
    and, in the same statement, when the event's outcome is one of ``retry`` (a new event is
    ``received``), the row of ``task`` (bound to ``backend``) with the event's primary key as its
    one argument. Call only when :func:`supported` is true."""
    from django_tasks_db.models import DBTaskResult  # type: ignore[import-not-found,unused-ignore]

    backend.validate_task(task)
    result_id = backend._get_id()
    if isinstance(result_id, Expression):
        raise TypeError("the backend's id_function makes ids in the database; use enqueue()")
    task_row: Any = DBTaskResult(
        id=result_id,
        args_kwargs={"args": [0], "kwargs": {}},  # the 0 becomes the event's pk in the statement
        priority=task.priority,
        task_path=task.module_path,
        queue_name=task.queue_name,
        run_after=task.run_after,
        backend_name=backend.alias,
    )
    pre_save.send(sender=DBTaskResult, instance=task_row, raw=False, using=using, update_fields=None)
    connection = connections[using]
    statement, event_fields, task_fields = _statement(DBTaskResult, connection)
    params = [*values_of(event_row, event_fields, connection), *values_of(task_row, task_fields, connection)]
    params.append(list(retry))
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        pk, outcome, deliveries, enqueued = cursor.fetchone()
    if deliveries == 1:
        event_row.pk = pk
        event_row._state.adding = False
        event_row._state.db = using
    if enqueued:
        task_row.args_kwargs = {"args": [pk], "kwargs": {}}
        task_row._state.adding = False
        task_row._state.db = using
        try:
            post_save.send(
                sender=DBTaskResult, instance=task_row, created=True, update_fields=None, raw=False, using=using
            )
            _send_task_enqueued(backend, task_row)
        except Exception:
            # Committed already: what a receiver raises cannot undo the event or its task. Say
            # so, instead of letting the caller store the event a second time.
            logger.exception("A receiver of the task row saved for Khaime webhook event %s raised", event_row)
    return Recorded(pk=pk, new=deliveries == 1, outcome=outcome, enqueued=enqueued)


#: (task model, alias, vendor) -> (SQL, the event's fields, the task's fields); built once.
_STATEMENTS: dict[tuple[str, str, str], tuple[str, list[Any], list[Any]]] = {}


def _statement(task_model: type[models.Model], connection: Any) -> tuple[str, list[Any], list[Any]]:
    key = (task_model._meta.label, connection.alias, connection.vendor)
    if key not in _STATEMENTS:
        quote = connection.ops.quote_name
        meta = WebhookEvent._meta
        insert, event_fields = insert_into(WebhookEvent, connection)

        def column(model_meta: Any, name: str) -> str:
            return quote(str(model_meta.get_field(name).column))

        event_table = quote(meta.db_table)
        deliveries = column(meta, "deliveries")
        event_insert = (
            f"{insert} ON CONFLICT ({column(meta, 'event_id')}) "
            f"DO UPDATE SET {deliveries} = {event_table}.{deliveries} + 1 "
            f"RETURNING {column(meta, 'id')}, {column(meta, 'outcome')}, {deliveries}"
        )
        task_fields = list(task_model._meta.concrete_fields)
        columns = ", ".join(quote(str(field.column)) for field in task_fields)
        expressions = ", ".join(
            "jsonb_set(%s::jsonb, '{args,0}', to_jsonb(event.pk))"  # the event's pk as the task's argument
            if field.name == "args_kwargs"
            else f"%s::{field.db_type(connection)}"
            for field in task_fields
        )
        # Formatted in: the models' own table and column names and SQL built from them; every
        # value is a parameter.
        task_table = quote(task_model._meta.db_table)
        task_insert = (
            f"INSERT INTO {task_table} ({columns}) SELECT {expressions} FROM event "  # noqa: S608
            "WHERE event.outcome = ANY(%s) RETURNING 1"
        )
        sql = (
            f"WITH event (pk, outcome, deliveries) AS ({event_insert}), task AS ({task_insert}) "  # noqa: S608
            "SELECT pk, outcome, deliveries, EXISTS (SELECT 1 FROM task) FROM event"
        )
        _STATEMENTS[key] = (sql, event_fields, task_fields)
    return _STATEMENTS[key]


def _send_task_enqueued(backend: Any, task_row: Any) -> None:
    from django_tasks_db.backend import task_enqueued  # type: ignore[import-not-found,unused-ignore]

    task_enqueued.send(type(backend), task_result=task_row.task_result)  # the signal enqueue() sends

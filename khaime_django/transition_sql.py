"""The SQL behind :mod:`khaime_django.transitions` that the ORM cannot say in one query: the
PostgreSQL one-statement transition (the conditional UPDATE and its history row as one
data-modifying CTE) and a batch's history rows (one INSERT ... SELECT from the rows themselves).
:mod:`~khaime_django.transitions` decides when each runs, inside its transaction; nothing here
sends a signal or logs.
"""

from __future__ import annotations

from typing import Any, cast

from django.db import connection, connections, models
from django.db.models import Q, Value, sql
from django.db.models.expressions import RawSQL

from .state_machines import StateMachine

#: A history row's ``detail`` is cut to this many characters.
MAX_DETAIL = 2000


def update_and_log(
    machine: StateMachine,
    instance: Any,
    from_status: str,
    to_status: str,
    now: Any,
    source: str,
    detail: str,
    fields: dict[str, Any],
    using: str,
) -> bool:
    """PostgreSQL: the conditional UPDATE and its history row in one statement (a data-modifying
    CTE), so a change costs one round trip. The history row exists only if the UPDATE changed the
    row. Its ``created_at`` is ``now``, the application's clock like every other timestamp of the
    app (the database's clock may differ from it, and mixing the two would order a history out of
    step with the rows ``transitions.transition_many`` and the other paths stamp); the conditional UPDATE
    matches only the status this change starts from, so no later change can carry an earlier
    stamp except by the drift between two application servers' clocks."""
    connection_ = connections[using]
    query = cast(
        sql.UpdateQuery,
        machine.model._default_manager.filter(pk=instance.pk, status=from_status).query.chain(sql.UpdateQuery),
    )
    query.add_update_values({"status": to_status, "updated_at": now, **fields})
    update_sql, update_params = query.get_compiler(using).as_sql()
    history_model = machine.history_model
    row = history_model(
        **{f"{machine.history_fk}_id": instance.pk},
        from_status=from_status,
        to_status=to_status,
        source=source,
        detail=detail[:MAX_DETAIL],
        created_at=now,
    )
    columns, expressions, params = [], [], []
    for field in history_model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection_.ops.quote_name(str(field.column)))
        expressions.append(f"%s::{field.db_type(connection_)}")
        params.append(field.get_db_prep_save(field.pre_save(row, add=True), connection=connection_))
    # Formatted in: SQL Django compiled, and the model's own table and column names; every value
    # is a parameter.
    table = connection_.ops.quote_name(history_model._meta.db_table)
    insert = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(expressions)} FROM changed"  # noqa: S608
    statement = f"WITH changed AS ({update_sql} RETURNING 1) {insert}"
    with connection_.cursor() as cursor:
        cursor.execute(statement, (*update_params, *params))
        return cursor.rowcount == 1


def log_changes(machine: StateMachine, ids: list[int], to_status: str, *, source: str, detail: str, when) -> int:
    """INSERT the history rows of a batch with one INSERT ... SELECT from the rows themselves,
    run before their UPDATE so from_status is each one's current status (model instances for
    bulk_create would be built in Python, one per row)."""
    history = machine.history_model._meta
    fk = history.get_field(machine.history_fk)
    if not isinstance(fk, models.ForeignKey):
        raise TypeError(f"{machine.history_model.__name__}.{machine.history_fk} is not a foreign key.")
    columns = (
        fk.column,
        "from_status",
        "to_status",
        "source",
        "detail",
        "created_at",
    )
    select = (
        machine.model._default_manager.filter(pk_in(ids))
        .order_by()
        .values_list(
            "pk",
            "status",
            Value(to_status),
            Value(source),
            Value(detail[:MAX_DETAIL]),
            Value(when, output_field=models.DateTimeField()),
        )
    )
    select_sql, params = select.query.sql_with_params()
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {qn(history.db_table)} ({', '.join(map(qn, columns))}) {select_sql}", params)
        return cursor.rowcount


def pk_in(ids: list[int]) -> Q:
    """``pk IN ids`` for a batch. On PostgreSQL the ids travel as one array parameter instead of
    one placeholder each."""
    if connection.vendor == "postgresql":
        return Q(pk__in=RawSQL("SELECT unnest(%s::bigint[])", (ids,)))
    return Q(pk__in=ids)

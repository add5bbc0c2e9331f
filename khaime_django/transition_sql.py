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

from .inserts import values_of
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
    stamp except by the drift between two application servers' clocks.

    The statement's text depends only on the model and the names of the fields changed, so it is
    built once per such set (:func:`_statement`); each change only prepares its values, as the
    ORM's UPDATE and INSERT compilers prepare them. A value the ORM would compile (an expression,
    a model instance for a foreign key) goes through the ORM's compiler instead."""
    connection_ = connections[using]
    values = {"status": to_status, "updated_at": now, **fields}
    prepared = (
        None if any(map(_compiled_by_the_orm, values.values())) else _statement(machine, tuple(values), connection_)
    )
    if prepared is None:
        statement, params = _compiled(machine, instance, from_status, values, using)
    else:
        statement, set_fields, where_fields = prepared
        params = [
            field.get_db_prep_save(value, connection=connection_)
            for field, value in zip(set_fields, values.values(), strict=True)
        ]
        params += [
            field.get_db_prep_value(value, connection_)
            for field, value in zip(where_fields, (instance.pk, from_status), strict=True)
        ]
    history_model = machine.history_model
    row = history_model(
        **{f"{machine.history_fk}_id": instance.pk},
        from_status=from_status,
        to_status=to_status,
        source=source,
        detail=detail[:MAX_DETAIL],
        created_at=now,
    )
    params += values_of(row, _history_fields(history_model), connection_)
    with connection_.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount == 1


#: (model, alias, vendor, names of the fields set) -> (SQL, the fields SET in order, the WHERE's pk and status fields).
_STATEMENTS: dict[tuple[str, str, str, tuple[str, ...]], tuple[str, list[Any], tuple[Any, Any]] | None] = {}


def _compiled_by_the_orm(value: Any) -> bool:
    return hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save")


def _statement(
    machine: StateMachine, names: tuple[str, ...], connection_: Any
) -> tuple[str, list[Any], tuple[Any, Any]] | None:
    """The statement for a change setting ``names``, with the fields it sets and the pk and
    status fields its WHERE compares; None for fields the ORM's compiler treats specially."""
    key = (machine.model._meta.label, connection_.alias, connection_.vendor, names)
    if key not in _STATEMENTS:
        meta = machine.model._meta
        quote = connection_.ops.quote_name
        table = quote(meta.db_table)
        set_fields: list[Any] = [meta.get_field(name) for name in names]
        if any(hasattr(field, "get_placeholder") or not field.concrete for field in set_fields):
            _STATEMENTS[key] = None
            return None
        pk: Any = meta.pk
        status: Any = meta.get_field("status")
        assignments = ", ".join(f"{quote(str(field.column))} = %s" for field in set_fields)
        where = f"{table}.{quote(str(pk.column))} = %s AND {table}.{quote(str(status.column))} = %s"
        update = f"UPDATE {table} SET {assignments} WHERE ({where})"  # noqa: S608
        _STATEMENTS[key] = (_with_history(machine, update, connection_), set_fields, (pk, status))
    return _STATEMENTS[key]


def _compiled(
    machine: StateMachine, instance: Any, from_status: str, values: dict[str, Any], using: str
) -> tuple[str, list[Any]]:
    """The statement and its parameters with the UPDATE compiled by the ORM, for values it compiles."""
    query = cast(
        sql.UpdateQuery,
        machine.model._default_manager.filter(pk=instance.pk, status=from_status).query.chain(sql.UpdateQuery),
    )
    query.add_update_values(values)
    update_sql, update_params = query.get_compiler(using).as_sql()
    return _with_history(machine, update_sql, connections[using]), list(update_params)


def _with_history(machine: StateMachine, update_sql: str, connection_: Any) -> str:
    """``update_sql`` as a CTE, and the INSERT of the history row from it (its values are the
    parameters that follow the UPDATE's)."""
    history_model = machine.history_model
    quote = connection_.ops.quote_name
    fields = _history_fields(history_model)
    columns = ", ".join(quote(str(field.column)) for field in fields)
    expressions = ", ".join(f"%s::{field.db_type(connection_)}" for field in fields)
    # Formatted in: SQL Django compiled or built from the model's own table and column names;
    # every value is a parameter.
    table = quote(history_model._meta.db_table)
    insert = f"INSERT INTO {table} ({columns}) SELECT {expressions} FROM changed"  # noqa: S608
    return f"WITH changed AS ({update_sql} RETURNING 1) {insert}"


def _history_fields(history_model: Any) -> list[Any]:
    return [field for field in history_model._meta.concrete_fields if not field.primary_key]


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

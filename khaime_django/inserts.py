"""INSERT a row unless a unique constraint already holds its twin, in one statement.

Recording a webhook event, a payment or a subscription must be safe when two deliveries race:
the INSERT comes first and the database's unique constraint decides, never a SELECT-then-INSERT.
Django's ``create()`` raises ``IntegrityError`` on the loser, which inside a transaction needs a
savepoint around it (two more round trips on every new row, the common case). PostgreSQL and
SQLite say the same in one statement, ``INSERT ... ON CONFLICT DO NOTHING RETURNING pk``: a row
comes back when it was inserted, none when a unique constraint refused it. Elsewhere the
savepoint way is kept.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, connections, models, router, transaction

#: (model label, alias, vendor) -> (SQL, the fields in its column order); built once per model:
#: the plain INSERT (insert_into), and the one that refuses a twin (insert_unless_conflict).
_SQL: dict[tuple[str, str, str], tuple[str, list[Any]]] = {}
_UNLESS_CONFLICT: dict[tuple[str, str, str], tuple[str, list[Any]]] = {}


def insert_unless_conflict(instance: models.Model) -> bool:
    """INSERT ``instance`` (its pk unset) and return True, or return False when a unique
    constraint refused it (the row that holds those values exists, or is being inserted by a
    transaction that has now committed). In one statement any other integrity error is raised;
    the savepoint way cannot tell them apart and answers False (the caller's lookup of the twin
    then finds nothing and says so). On True the
    instance is saved: its pk is set, as after ``save()``; no ``pre_save``/``post_save`` signal
    is sent."""
    model = type(instance)
    alias = router.db_for_write(model, instance=instance)
    connection = connections[alias]
    if not one_statement(connection) or not model._meta.pk.db_returning:
        try:
            with transaction.atomic(using=alias):  # a refused INSERT must not poison the caller's transaction
                instance.save(force_insert=True, using=alias)
        except IntegrityError:
            return False
        return True
    sql, fields = _unless_conflict_sql(model, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, values_of(instance, fields, connection))
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = alias
    return True


def one_statement(connection: Any) -> bool:
    """Whether ``connection`` does INSERT ... ON CONFLICT DO NOTHING RETURNING."""
    return connection.vendor in ("postgresql", "sqlite") and connection.features.can_return_rows_from_bulk_insert


def insert_into(model: type[models.Model], connection: Any) -> tuple[str, list[Any]]:
    """``INSERT INTO <table> (<columns>) VALUES (%s, ...)`` of every concrete field of ``model``
    but the pk, and those fields in column order (:func:`values_of` gives their values); built
    once per model and connection. Callers append their ``ON CONFLICT`` and ``RETURNING``."""
    key = (model._meta.label, connection.alias, connection.vendor)
    if key not in _SQL:
        meta = model._meta
        fields = [field for field in meta.concrete_fields if not field.primary_key]
        quote = connection.ops.quote_name
        # Only the model's own table and column names are formatted in; every value is a parameter.
        columns = ", ".join(quote(str(field.column)) for field in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        _SQL[key] = (f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})", fields)  # noqa: S608
    return _SQL[key]


def _unless_conflict_sql(model: type[models.Model], connection: Any) -> tuple[str, list[Any]]:
    key = (model._meta.label, connection.alias, connection.vendor)
    if key not in _UNLESS_CONFLICT:
        insert, fields = insert_into(model, connection)
        pk = connection.ops.quote_name(str(model._meta.pk.column))
        _UNLESS_CONFLICT[key] = (f"{insert} ON CONFLICT DO NOTHING RETURNING {pk}", fields)
    return _UNLESS_CONFLICT[key]


def values_of(instance: models.Model, fields: list[Any], connection: Any) -> list[Any]:
    """The parameters of ``fields`` of ``instance`` as Django's INSERT compiler prepares them
    (``pre_save`` for a new row, then ``get_db_prep_save``)."""
    return [field.get_db_prep_save(field.pre_save(instance, add=True), connection=connection) for field in fields]

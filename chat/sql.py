"""Statements written out as SQL, for the few that run with every message.

The ORM builds a statement afresh each time it runs: on the benchmark's machine about
0.8 ms of Python for a one-row read against 0.07 ms to run it through the driver, and
a message's trips ran a dozen of them, on the one database thread a worker has
(``docs/benchmark.md``, "The database off the hot path"). So the statements a send, a
reply's end and its Stop, a socket's opening and the sidebar run are written out once,
as constants beside the code that runs them, in SQL that SQLite and PostgreSQL both
take, through the helpers here; model rows are read with ``instances``, which converts
each column as ``Manager.raw`` and the ORM do. Everything else uses the ORM, and
``tests/test_statements.py`` compares each written-out statement with the ORM query it
replaced.

Placeholders are ``%s`` (Django's cursor maps them for SQLite), and table names come from
the models' ``_meta``. Datetimes go through ``timestamp`` as the ORM's own parameters do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Any, Generic, TypeVar

from django.core.exceptions import FieldDoesNotExist
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.expressions import Col
from django.db.models.sql import Query

M = TypeVar("M", bound=Model)


def rows(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def row(sql: str, params: Sequence[Any] = ()) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def instances(model: type[M], sql: str, params: Sequence[Any] = ()) -> list[M]:
    """``model.objects.raw(sql, params)``, read at once: a column named as a field of
    ``model`` sets that field, converted from the database as the ORM converts it; any
    other column becomes an attribute as it comes; a field not read is deferred.

    ``Manager.raw`` works out that mapping and the conversions again on every run, which
    costs more than a one-row read itself; here it is worked out once per statement's
    columns and connection."""
    database = connections[connection.alias]
    with database.cursor() as cursor:
        cursor.execute(sql, params)
        columns = tuple(column[0] for column in cursor.description)
        fetched = cursor.fetchall()
    reading = _reading(database, model, columns)
    return [reading.instance(values) for values in fetched]


def instance(model: type[M], sql: str, params: Sequence[Any] = ()) -> M | None:
    """The first of ``instances``, or None."""
    return next(iter(instances(model, sql, params)), None)


@dataclass(frozen=True)
class _Reading(Generic[M]):
    database: BaseDatabaseWrapper
    model: type[M]
    names: list[str]  # the fields read, in the model's order (``Model.from_db``)
    positions: list[int]  # where each is among the columns
    converters: list[tuple[int, list[Callable[..., Any]], Col]]
    attributes: list[tuple[str, int]]

    def instance(self, values: tuple) -> M:
        if self.converters:
            values = list(values)
            for position, functions, expression in self.converters:
                value = values[position]
                for function in functions:
                    value = function(value, expression, self.database)
                values[position] = value
        made = self.model.from_db(self.database.alias, self.names, [values[p] for p in self.positions])
        for name, position in self.attributes:
            setattr(made, name, values[position])
        return made


@lru_cache(maxsize=256)
def _reading(database: BaseDatabaseWrapper, model: type[M], columns: tuple[str, ...]) -> _Reading[M]:
    # As ``RawQuerySet.resolve_model_init_order`` and ``RawModelIterable`` map them.
    named = database.introspection.identifier_converter
    columns = tuple(named(column) for column in columns)
    fields = {named(field.column): field for field in model._meta.concrete_fields}
    read = [field for field in model._meta.concrete_fields if named(field.column) in columns]
    if model._meta.pk not in read:
        raise FieldDoesNotExist(f"a statement read as {model.__name__} must read its primary key")
    expressions = [
        fields[column].get_col(fields[column].model._meta.db_table) if column in fields else None
        for column in columns
    ]
    compiler = database.ops.compiler("SQLCompiler")(Query(model), database, database.alias)
    converters = [
        (position, functions, expression)
        for position, (functions, expression) in compiler.get_converters(expressions).items()
    ]
    return _Reading(
        database,
        model,
        [field.attname for field in read],
        [columns.index(named(field.column)) for field in read],
        converters,
        [(column, position) for position, column in enumerate(columns) if column not in fields],
    )


def execute(sql: str, params: Sequence[Any] = ()) -> int:
    """Run a write; the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def update(model: type[M], values: dict[str, Any], where: str, params: Sequence[Any]) -> M | None:
    """``model.objects.filter(...).update(**values)`` of at most one row, ``where`` being
    the filter written out, and the row as it is after (None: no row matched), in one
    statement: ``RETURNING``, which SQLite (3.35 and later) and PostgreSQL both have. Each
    value is prepared as the ORM's update prepares it; like it, this sends no signals and
    sets no ``auto_now`` field by itself."""
    fields, statement = _update_statement(model, tuple(values), where)
    database = connections[connection.alias]
    prepared = [
        field.get_db_prep_save(value, database) for field, value in zip(fields, values.values(), strict=True)
    ]
    return instance(model, statement, [*prepared, *params])


@lru_cache(maxsize=64)
def _update_statement(model: type[Model], names: tuple[str, ...], where: str) -> tuple[list[Field], str]:
    meta = model._meta
    fields = [meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    columns = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    return fields, f"UPDATE {quote(meta.db_table)} SET {columns} WHERE {where} RETURNING *"


def timestamp(value: datetime) -> Any:
    """A datetime as a parameter, as the ORM passes it (SQLite keeps text)."""
    return connection.ops.adapt_datetimefield_value(value)


def literals(values: Sequence[str]) -> str:
    """Fixed strings of our own (choices, never input) for ``IN (...)``."""
    assert all(value.isidentifier() for value in values), values
    return ", ".join(f"'{value}'" for value in values)


def insert(instance: M) -> M:
    """``instance.save()`` of a new row, in one statement written once per model: each
    field is prepared as the ORM prepares it (its default, ``auto_now_add``, its conversion
    for the database), and the new id is read back with ``RETURNING``, which SQLite (3.35
    and later) and PostgreSQL both have. Sends no signals: use it only for models that
    have no receivers."""
    fields, statement = _insert_statement(type(instance))
    # The connection itself: through ``django.db.connection`` each field's preparation
    # looked it up again (thread- and task-local), three times a field.
    database = connections[connection.alias]
    values = [field.get_db_prep_save(field.pre_save(instance, True), database) for field in fields]
    (instance.pk,) = row(statement, values)
    instance._state.adding = False
    instance._state.db = database.alias
    return instance


@cache
def _insert_statement(model: type[Model]) -> tuple[list[Field], str]:
    meta = model._meta
    fields = [field for field in meta.local_concrete_fields if field is not meta.pk]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    return fields, (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
        f" RETURNING {quote(meta.pk.column)}"
    )

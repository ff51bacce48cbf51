"""Statements written out as SQL, for the few that run with every message.

The ORM builds a statement afresh each time it runs: on the benchmark's machine about
0.8 ms of Python for a one-row read against 0.07 ms to run it through the driver, and
a message's trips ran a dozen of them, on the one database thread a worker has
(``docs/benchmark.md``, "The database off the hot path"). So the statements a send, a
reply's end, a socket's opening and the sidebar run are written out once, as constants
beside the code that runs them, in SQL that SQLite and PostgreSQL both take, through the
helpers here; model rows are read with ``Manager.raw``, which applies each field's
conversion from the database as the ORM does. Everything else uses the ORM, and
``tests/test_statements.py`` compares each written-out statement with the ORM query it
replaced.

Placeholders are ``%s`` (Django's cursor maps them for SQLite), and table names come from
the models' ``_meta``. Datetimes go through ``timestamp`` as the ORM's own parameters do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def rows(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def row(sql: str, params: Sequence[Any] = ()) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def execute(sql: str, params: Sequence[Any] = ()) -> int:
    """Run a write; the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


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
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    (instance.pk,) = row(statement, values)
    instance._state.adding = False
    instance._state.db = connection.alias
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

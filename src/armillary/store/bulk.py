"""Many rows in one driver call, for the webhook intake's hot path.

`insert_rows(conn, table, rows)` is `conn.execute(insert(table), rows)` without the
per-row work SQLAlchemy does for a Core executemany (building each row's parameters
from the compiled statement, one dictionary at a time): the statement is compiled
once per (table, columns, dialect), each row's values go through the column types'
own bind processors (datetimes in the form SQLite stores them — the same functions
Core calls; JSON is written by orjson, compact, where Core would call the stdlib),
and the driver's executemany gets plain tuples.

`select_rows(conn, key, build, values)` runs a Core SELECT built by `build()` (its
bind parameters named in `values`) the same way: compiled once per `key` and
dialect, then handed to the driver as text and parameters (a tuple for positional
paramstyles, the mapping for named ones).

`deferred(info)` makes the `insert_rows` calls on a connection collect their rows
instead of sending them, and `flush(conn, pending)` then writes every table's rows in
one statement: on Postgres one INSERT per table, chained as data-modifying CTEs, each
reading its columns from `unnest` of one array parameter per column. One statement is
one round trip and, outside an explicit transaction, one atomic transaction of its
own: `Database.write_batch` uses this so that the webhook intake's batch (its
events, runs and audit rows) costs two round trips on Postgres, not eight.

Invariant: a row written here reads back exactly as one written with Core (the
round trip is tested on SQLite and Postgres). Use it only where rows are many and
the columns plain; every other statement goes through Core.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import orjson
from sqlalchemy import JSON, ClauseElement, Connection, Dialect, Table, bindparam, insert
from sqlalchemy.sql.compiler import SQLCompiler

_Compiled = tuple[str, tuple[str, ...] | None]  # the SQL; positional parameter order
_compiled: dict[tuple[Any, str, str], _Compiled] = {}
_processors: dict[tuple[str, tuple[str, ...], str, str], tuple[Callable[[Any], Any] | None, ...]]
_processors = {}
MAX_STATEMENTS = 4096  # distinct statements kept; past it the oldest is compiled again
_DEFERRED = "armillary.bulk.deferred"  # in a connection's `info`: rows not sent yet

Pending = list[tuple[Table, tuple[str, ...], list[tuple[Any, ...]]]]
"""Rows `insert_rows` collected: per call, the table, its columns, the rows' values."""


def select_rows(
    conn: Connection,
    key: Any,
    build: Callable[[], ClauseElement],
    values: Mapping[str, Any],
) -> list[tuple[Any, ...]]:
    """The rows of `build()` for the bind parameter `values` (plain values: no type
    processing), compiled once per `key` and dialect."""
    sql, order = _compile(conn, ("select", key), build)
    result = conn.exec_driver_sql(sql, _parameters(order, values))
    return [tuple(row) for row in result]


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (each with the same keys: column names) into `table` on `conn`."""
    if not rows:
        return
    columns = tuple(rows[0])
    sql, order = _compile(
        conn,
        ("insert", table.name, columns),
        lambda: insert(table).values({name: bindparam(name) for name in columns}),
    )
    names = columns if order is None else order
    dialect = conn.dialect
    key = (table.name, names, dialect.name, dialect.driver)
    processors = _processors.get(key)
    if processors is None:
        processors = _processors[key] = tuple(_processor(table, n, dialect) for n in names)
    values = [
        tuple(
            row[name] if process is None else process(row[name])
            for name, process in zip(names, processors, strict=True)
        )
        for row in rows
    ]
    pending: Pending | None = conn.info.get(_DEFERRED)
    if pending is not None:
        pending.append((table, names, values))
        return
    if order is None:  # a named paramstyle: the driver takes mappings
        conn.exec_driver_sql(sql, [dict(zip(names, v, strict=True)) for v in values])
    else:
        conn.exec_driver_sql(sql, values)


def deferred(info: dict[Any, Any]) -> Pending:
    """From now on, `insert_rows` on the connection owning `info` collects into the list
    returned (until `flush`)."""
    pending: Pending = []
    info[_DEFERRED] = pending
    return pending


def discard(info: dict[Any, Any]) -> None:
    """Stop collecting on the connection owning `info`; what was collected is dropped."""
    info.pop(_DEFERRED, None)


def flush(conn: Connection, pending: Pending) -> None:
    """Stop collecting on `conn` and write `pending`: on Postgres in one statement (one
    round trip); elsewhere one executemany per table, in order."""
    discard(conn.info)
    if not pending:
        return
    if conn.dialect.name != "postgresql":
        for table, names, values in pending:
            insert_rows(conn, table, [dict(zip(names, v, strict=True)) for v in values])
        return
    shape = tuple((table.name, names) for table, names, _ in pending)
    key = ("chained", shape, conn.dialect.name, conn.dialect.driver)
    sql = _chained.get(key)
    if sql is None:
        sql = _chained[key] = _chained_insert(conn.dialect, pending)
    parameters: list[list[Any]] = []
    for _, _, values in pending:
        parameters.extend(list(column) for column in zip(*values, strict=True))
    conn.exec_driver_sql(sql, tuple(parameters))


_chained: dict[Any, str] = {}


def _chained_insert(dialect: Dialect, pending: Pending) -> str:
    """One Postgres statement inserting each table's rows from arrays, one per column
    ($1, $2, … in `pending`'s order): JSON travels as text and is cast back."""
    parts: list[str] = []
    n = 0
    for table, names, _ in pending:
        arrays, selected = [], []
        for name in names:
            n += 1
            column_type = table.c[name].type.dialect_impl(dialect)
            quoted = f'"{name}"'
            if isinstance(table.c[name].type, JSON):
                arrays.append(f"${n}::text[]")
                selected.append(f"{quoted}::{column_type.compile(dialect=dialect)}")
            else:
                arrays.append(f"${n}::{column_type.compile(dialect=dialect)}[]")
                selected.append(quoted)
        columns = ", ".join(f'"{name}"' for name in names)
        # Names of our own tables and columns only; every value is a bound array.
        parts.append(
            f'INSERT INTO "{table.name}" ({columns}) SELECT {", ".join(selected)} '  # noqa: S608
            f"FROM unnest({', '.join(arrays)}) AS t({columns})"
        )
    *first, last = parts
    if not first:
        return last
    return "WITH " + ", ".join(f"w{i} AS ({p})" for i, p in enumerate(first)) + " " + last


def _compile(conn: Connection, key: Any, build: Callable[[], ClauseElement]) -> _Compiled:
    """`build()` compiled for the connection's dialect, once per `key`."""
    dialect = conn.dialect
    cache_key = (key, dialect.name, dialect.driver)
    found = _compiled.get(cache_key)
    if found is None:
        compiled = cast(SQLCompiler, build().compile(dialect=dialect))
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        found = (compiled.string, order)
        if len(_compiled) >= MAX_STATEMENTS:
            _compiled.pop(next(iter(_compiled)))
        _compiled[cache_key] = found
    return found


def _parameters(
    order: tuple[str, ...] | None, values: Mapping[str, Any]
) -> tuple[Any, ...] | Mapping[str, Any]:
    """What the driver takes: a tuple in the statement's order for positional
    paramstyles (SQLite's qmark, asyncpg's $n), else the mapping itself."""
    return values if order is None else tuple(values[name] for name in order)


def _processor(table: Table, name: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    column_type = table.c[name].type
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    if process is not None and isinstance(column_type, JSON):
        return _json_text
    return process


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()

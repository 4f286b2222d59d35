"""Many rows in one driver call, for the webhook intake's hot path.

`insert_rows(conn, table, rows)` is `conn.execute(insert(table), rows)` without the
per-row work SQLAlchemy does for a Core executemany (building each row's parameters
from the compiled statement, one dictionary at a time): the statement is compiled
once per (table, columns, dialect), each row's values go through the column types'
own bind processors (datetimes in the form SQLite stores them — the same functions
Core calls; JSON is written by orjson, compact, where Core would call the stdlib),
and the driver's executemany gets plain tuples.

`select_rows(conn, key, build, values)` runs a Core SELECT built by `build()` (with
positional bind parameters named in `values`) the same way: compiled once per `key`
and dialect, then handed to the driver as text and a tuple.

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

_Plan = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]
_plans: dict[tuple[str, tuple[str, ...], str, str], _Plan] = {}
_selects: dict[tuple[Any, str, str], tuple[str, tuple[str, ...]]] = {}
MAX_SELECTS = 4096  # distinct statements kept; past it the oldest is compiled again


def select_rows(
    conn: Connection,
    key: Any,
    build: Callable[[], ClauseElement],
    values: Mapping[str, Any],
) -> list[tuple[Any, ...]]:
    """The rows of `build()` for the bind parameter `values` (plain values: no type
    processing), compiled once per `key` and dialect."""
    dialect = conn.dialect
    cache_key = (key, dialect.name, dialect.driver)
    found = _selects.get(cache_key)
    if found is None:
        compiled = cast(SQLCompiler, build().compile(dialect=dialect))
        if not compiled.positional:
            raise NotImplementedError(f"{dialect.driver} uses named parameters")
        found = (compiled.string, tuple(compiled.positiontup or ()))
        if len(_selects) >= MAX_SELECTS:
            _selects.pop(next(iter(_selects)))
        _selects[cache_key] = found
    sql, order = found
    result = conn.exec_driver_sql(sql, tuple(values[name] for name in order))
    return [tuple(row) for row in result]


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (each with the same keys: column names) into `table` on `conn`."""
    if not rows:
        return
    columns = tuple(rows[0])
    sql, order, processors = _plan(conn, table, columns)
    values = [
        tuple(
            row[name] if process is None else process(row[name])
            for name, process in zip(order, processors, strict=True)
        )
        for row in rows
    ]
    conn.exec_driver_sql(sql, values)


def _plan(conn: Connection, table: Table, columns: tuple[str, ...]) -> _Plan:
    dialect = conn.dialect
    key = (table.name, columns, dialect.name, dialect.driver)
    plan = _plans.get(key)
    if plan is None:
        statement = insert(table).values({name: bindparam(name) for name in columns})
        compiled = statement.compile(dialect=dialect)
        order = tuple(compiled.positiontup or ()) if compiled.positional else columns
        if not compiled.positional:  # named paramstyles: the driver takes mappings
            raise NotImplementedError(f"{dialect.driver} uses named parameters")
        processors = tuple(_processor(table, name, dialect) for name in order)
        plan = (compiled.string, order, processors)
        _plans[key] = plan
    return plan


def _processor(table: Table, name: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    column_type = table.c[name].type
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    if process is not None and isinstance(column_type, JSON):
        return _json_text
    return process


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()

"""Backups of the whole store, and restoring one into an empty store.

`armillary backup` and `armillary restore` (main.py) call `take` and `load` directly
against the store the server uses (ARMILLARY_DATABASE_URL, or the SQLite file in
ARMILLARY_HOME), like `pg_dump`: no server is needed, and a running one goes on
serving while the snapshot is taken.

Consistency: on SQLite the live file is first copied with SQLite's online backup API
in one step, which reads one snapshot of a WAL database while the server writes;
on Postgres every table is read in one REPEATABLE READ, READ ONLY transaction. Either
way the backup holds exactly what was committed at one instant: every webhook
delivery answered 202 before the backup started (it was committed before the answer)
is in it.

The file is portable (the same for both backends, so a SQLite backup restores into
Postgres and back): gzip'd JSON lines. Line 1 is a header (format, version, the
schema's alembic revision, the backend, each table's row count); then per table a
line naming it and its columns, one JSON array per row, and a closing line with the
row count and the SHA-256 of the row lines; a last line marks the end. A damaged
file is found, and refused, by the first check it fails (gzip's CRC, a line that is
not JSON, a section whose checksum or count does not match, a missing end), naming
the line and the table where it is broken.

`load` checks the whole file before it touches the store, refuses a store holding any
row, and writes every row in one transaction: a refusal or a failure changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import sqlite3
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, DateTime, Table, create_engine, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from armillary.errors import Conflict, Invalid, TemporaryError
from armillary.store import tables
from armillary.store.database import Database, async_url

FORMAT = "armillary-backup"
VERSION = 1
BATCH_ROWS = 1000
CHUNK_BYTES = 4096  # compressed bytes read at a time: damage is placed within this

TABLES: tuple[Table, ...] = tuple(tables.metadata.sorted_tables)  # parents before children


class Broken(Invalid):
    """The backup file is damaged or is not a backup: the message says where."""


class NotEmpty(Conflict):
    """The store to restore into already holds rows."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What a backup holds (or what a restore wrote)."""

    revision: str | None
    backend: str
    rows: dict[str, int]

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


async def take(url: str, path: Path) -> Summary:
    """Write a consistent snapshot of the store at `url` to `path`. The file appears
    whole or not at all (written beside it, then renamed)."""
    if not path.parent.is_dir():
        raise Invalid(f"{path.parent} is not a directory")
    partial = path.with_name(f".{path.name}.partial")
    try:
        with _reaching(url), gzip.open(partial, "wb") as sink:
            if make_url(url).get_backend_name() == "sqlite":
                summary = _take_sqlite(url, path.parent, sink)
            else:
                summary = await _take_postgres(url, sink)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return summary


@contextlib.contextmanager
def _reaching(url: str) -> Iterator[None]:
    """A store that cannot be reached, or a file that cannot be written, is an error
    that says which, not a traceback (the URL's password left out)."""
    try:
        yield
    except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = getattr(exc, "orig", None) or exc
        raise TemporaryError(f"the store at {shown}: {reason}") from None


def _take_sqlite(url: str, workdir: Path, sink: gzip.GzipFile) -> Summary:
    live = make_url(url).database
    if not live or not Path(live).exists():
        raise Invalid(f"no SQLite store at {live}")
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".armillary-backup-") as scratch:
        copy = Path(scratch) / "snapshot.db"
        source = sqlite3.connect(live, timeout=60)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)  # pages=-1: one step, so one read snapshot
        finally:
            target.close()
            source.close()
        engine = create_engine(f"sqlite+pysqlite:///{copy}")
        try:
            with engine.connect() as conn:
                return _dump(conn, sink, backend="sqlite")
        finally:
            engine.dispose()


async def _take_postgres(url: str, sink: gzip.GzipFile) -> Summary:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            snapshot = await conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            async with snapshot.begin():
                return await snapshot.run_sync(lambda c: _dump(c, sink, backend="postgresql"))
    finally:
        await engine.dispose()


def _dump(conn: Connection, sink: gzip.GzipFile, *, backend: str) -> Summary:
    """Every table, in one transaction's view, as the format in the docstring."""
    revision = MigrationContext.configure(conn).get_current_revision()
    counts = {
        t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in TABLES
    }
    header = {
        "format": FORMAT,
        "version": VERSION,
        "revision": revision,
        "backend": backend,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "tables": counts,
    }
    sink.write(_line(header))
    for table in TABLES:
        sink.write(_line({"table": table.name, "columns": [c.name for c in table.columns]}))
        digest, rows = hashlib.sha256(), 0
        ordered = select(table).order_by(*table.primary_key.columns)
        for row in conn.execution_options(yield_per=BATCH_ROWS).execute(ordered):
            encoded = _line([_encode(value) for value in row])
            digest.update(encoded)
            sink.write(encoded)
            rows += 1
        sink.write(_line({"end": table.name, "rows": rows, "sha256": digest.hexdigest()}))
    sink.write(_line({"end_of_backup": True}))
    return Summary(revision=revision, backend=backend, rows=counts)


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _line(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # SQLite hands back naive datetimes: the store writes only UTC.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat()
    return value


# --- reading ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Section:
    table: Table
    rows: list[dict[str, Any]]


def check(path: Path) -> Summary:
    """Read the whole file and raise `Broken` at the first damage; write nothing."""
    reader = _Reader(path)
    summary = reader.header()
    for _ in reader.sections(summary):
        pass
    return summary


async def load(url: str, path: Path) -> Summary:
    """Restore the backup at `path` into the empty store at `url` (migrated first)."""
    summary = check(path)
    with _reaching(url):
        await _load_checked(url, path, summary)
    return summary


async def _load_checked(url: str, path: Path, summary: Summary) -> None:
    database = await Database.open(url, migrate=False)
    try:
        async with database.read() as conn:
            held = await conn.run_sync(_rows_held)
        if held:
            listed = ", ".join(f"{name} ({n})" for name, n in held.items())
            raise NotEmpty(
                f"the store is not empty: {listed}. Restore only into a new store "
                "(a new SQLite home, or a new Postgres database); nothing was changed"
            )
        await database.migrate()
        current, _head = await database.revisions()
        if current != summary.revision:
            raise Invalid(
                f"{path}: made at schema revision {summary.revision}, but this armillary's "
                f"schema is at {current}: restore with the version that made it, then upgrade"
            )
        await database.write_sync(lambda conn: _insert_all(conn, path, summary))
    finally:
        await database.close()


def _rows_held(conn: Connection) -> dict[str, int]:
    present = set(inspect(conn).get_table_names())
    held: dict[str, int] = {}
    for table in TABLES:
        if table.name in present:
            count = _count(conn, table)
            if count:
                held[table.name] = count
    return held


def _insert_all(conn: Connection, path: Path, summary: Summary) -> None:
    reader = _Reader(path)
    reader.header()
    for _table in reader.sections(summary, batch=lambda t, rows: _insert(conn, t, rows)):
        pass  # each section's rows were inserted, a batch at a time, as it was checked
    if conn.dialect.name == "postgresql":
        _reset_sequences(conn)


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(table.insert(), rows)


def _reset_sequences(conn: Connection) -> None:
    """Rows came with their ids: the next id a sequence gives must follow them."""
    for table in TABLES:
        for column in table.primary_key.columns:
            if column.autoincrement is True:
                following = func.coalesce(select(func.max(column)).scalar_subquery(), 0) + 1
                sequence = func.pg_get_serial_sequence(table.name, column.name)
                conn.execute(select(func.setval(sequence, following, False)))


class _Reader:
    """The file's lines, each checked, with where it is when something is wrong."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.number = 0
        self.table: str | None = None
        self._lines = self._read()

    def broken(self, why: str, *, after: bool = False) -> Broken:
        """`after`: the damage is past the last whole line read, not on it."""
        line = f"after line {self.number}" if after else f"at line {self.number}"
        where = line + (f" (table {self.table})" if self.table else "")
        return Broken(f"{self.path}: broken {where}: {why}")

    def _read(self) -> Iterator[bytes]:
        """The decompressed lines. zlib checks gzip's CRC at the end of the stream;
        reading a small chunk at a time places damage to the compressed bytes within
        CHUNK_BYTES (gzip's own reader would only say which buffer failed)."""
        inflater = zlib.decompressobj(wbits=31)  # gzip: header, deflate, CRC and size
        offset, pending = 0, b""
        with self.path.open("rb") as source:
            while chunk := source.read(CHUNK_BYTES):
                try:
                    data = inflater.decompress(chunk)
                except zlib.error as exc:
                    raise self.broken(
                        f"the compressed data is damaged in bytes {offset}-"
                        f"{offset + len(chunk) - 1} of the file ({exc})",
                        after=True,
                    ) from None
                offset += len(chunk)
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    self.number += 1
                    yield line + b"\n"
                if inflater.eof and (inflater.unused_data or source.read(1)):
                    raise self.broken(f"data after the end of the backup, at byte {offset}")
        if not inflater.eof or pending:
            raise self.broken(f"the file ends early, at byte {offset} (truncated)", after=True)

    def next(self) -> tuple[bytes, Any]:
        raw = next(self._lines, None)
        if raw is None:
            raise self.broken("the file ends early (truncated)", after=True)
        try:
            return raw, json.loads(raw)
        except ValueError as exc:
            raise self.broken(f"not JSON ({exc})") from None

    def header(self) -> Summary:
        _raw, head = self.next()
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise self.broken(f"not an {FORMAT} file")
        if head.get("version") != VERSION:
            raise self.broken(f"format version {head.get('version')}, expected {VERSION}")
        counts = head.get("tables")
        if not isinstance(counts, dict):
            raise self.broken("the header lists no tables")
        unknown = set(counts) - {t.name for t in TABLES}
        if unknown:
            raise self.broken(f"tables this armillary does not know: {sorted(unknown)}")
        return Summary(revision=head.get("revision"), backend=str(head.get("backend")), rows=counts)

    def sections(
        self,
        summary: Summary,
        *,
        batch: Callable[[Table, list[dict[str, Any]]], None] | None = None,
    ) -> Iterator[str]:
        """Each table's section, checked; `batch` is handed its rows a batch at a time."""
        for table in TABLES:
            if table.name not in summary.rows:
                continue
            yield self._section(table, summary.rows[table.name], batch)
        _raw, last = self.next()
        if last != {"end_of_backup": True}:
            raise self.broken("expected the end of the backup")

    def _section(
        self,
        table: Table,
        expected: int,
        batch: Callable[[Table, list[dict[str, Any]]], None] | None,
    ) -> str:
        _raw, opening = self.next()
        if opening != {"table": table.name, "columns": [c.name for c in table.columns]}:
            raise self.broken(f"expected the section of table {table.name} and its columns")
        self.table = table.name
        first = self.number + 1
        columns = list(table.columns)
        digest, rows, pending = hashlib.sha256(), 0, []
        while True:
            raw, value = self.next()
            if isinstance(value, dict):
                break
            if not isinstance(value, list) or len(value) != len(columns):
                raise self.broken(f"a row of {table.name} needs {len(columns)} values")
            digest.update(raw)
            rows += 1
            if batch is not None:
                pending.append(_decode(columns, value))
                if len(pending) >= BATCH_ROWS:
                    batch(table, pending)
                    pending = []
        if value != {"end": table.name, "rows": rows, "sha256": digest.hexdigest()}:
            raise self.broken(
                f"rows on lines {first}-{self.number - 1} do not match the section's checksum "
                "(the file was changed or damaged there)"
            )
        if rows != expected:
            raise self.broken(f"{rows} rows of {table.name}, the header says {expected}")
        if batch is not None:
            batch(table, pending)
        self.table = None
        return table.name


def _decode(columns: list[Any], values: list[Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, value in zip(columns, values, strict=True):
        if value is not None and isinstance(column.type, DateTime):
            value = dt.datetime.fromisoformat(value)
        row[column.name] = value
    return row

"""The connection to the store: engines, SQLite pragmas, migrations at start.

`Database.open(url)` migrates the schema to head and returns a handle whose
`read()` and `write()` give transactions. On SQLite every write transaction
starts with BEGIN IMMEDIATE on one dedicated connection, so writers queue in
order instead of failing with "database is locked" when a read upgrades; reads use
their own pool and see the last committed state (WAL). On Postgres both are the
same pool and migrations run under an advisory lock, so replicas starting together
migrate once.

`write_sync(fn)` runs a whole write transaction as one plain function of a
synchronous connection, for hot paths that write many rows at once (the webhook
intake). Through aiosqlite every statement is a round trip between the event loop
and the driver's thread, and on a busy loop each round trip waits for a loop turn
(and, in the thread, for the GIL). On SQLite `write_sync` runs on a synchronous
connection on the event loop's own thread: the loop stops for the few milliseconds
the transaction takes (SQLite in WAL mode with synchronous=NORMAL does not wait on
the disk at commit), which costs less than the turns and GIL handoffs a thread would.
A lock shared with `write()` keeps the two writers from ever meeting at SQLite's
lock. On Postgres it runs on the async pool (`run_sync`).

`write_batch(fn)` is `write_sync` for a function whose writes are all
`bulk.insert_rows` calls after its reads (the intake's batch). On SQLite it is
`write_sync`. On Postgres every round trip of a transaction waits for a turn of a busy
event loop (a checkout's ping, BEGIN, each statement, COMMIT, the reset at checkin: a
batch took eight), so `fn` runs on a connection kept for it in autocommit mode (one
per batch committing at once): its reads go out at once, each a statement of its own,
its inserts are collected and sent at the end as one statement (`bulk.flush`), which
commits alone and atomically. A read and the insert that follows are then not one
transaction: what the reads decided must be checked again by the insert (the
intake's replay lookup is, by the unique constraints of `events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from armillary import metrics
from armillary.resources import text as storable
from armillary.store import bulk, feed, fence, notify

T = TypeVar("T")

log = logging.getLogger("armillary.store")
CHECKPOINT_INTERVAL_S = 0.25
WAL_RESET_FRAMES = 16_384  # pages in the WAL (64 MiB of 4 KiB pages) before it is reset

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x41524D4C  # "ARML": the advisory lock id taken while migrating
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def async_url(url: str) -> str:
    """Pick the async driver for a plain `sqlite://` or `postgresql://` URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(f"expected a sqlite:// or postgresql:// database URL, got {backend}://")
    return parsed.render_as_string(hide_password=False)


def _time_queries(engine: Engine, pool: str) -> None:
    """Observe every statement's duration on `engine` (armillary_db_query_duration_seconds):
    two clock reads, kept on the statement's execution context. Even so, SQLAlchemy's
    event dispatch costs ~6 µs a statement (measured: a `SELECT 1` on SQLite 13.7 µs
    untimed, 20.1 µs timed), so the group-commit writer's pool is not timed statement
    by statement: each of its transactions is (armillary_intake_commit_duration_seconds),
    and ingress pays nothing per delivery for this."""
    histogram = metrics.DB_QUERY.labels(pool)

    # (conn, cursor, statement, parameters, context, executemany)
    def before(*call: Any) -> None:
        if call[4] is not None:
            call[4].armillary_began = time.perf_counter()

    def after(*call: Any) -> None:
        began = getattr(call[4], "armillary_began", None)
        if began is not None:
            histogram.observe(time.perf_counter() - began)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)


class Database:
    """A migrated store. Use `read()` / `write()` for transactions; `close()` at the end."""

    def __init__(
        self,
        *,
        reader: AsyncEngine,
        writer: AsyncEngine,
        sync_writer: Engine | None = None,
    ) -> None:
        self._wal_frames = 0  # in the WAL at the last checkpoint
        self._reader = reader
        self._writer = writer
        self._sync_writer = sync_writer
        # SQLite only: one writer at a time, whether `write()` or `write_sync()`.
        self._write_lock = asyncio.Lock() if sync_writer is not None else None
        self._sync_conn: Connection | None = None
        self._batch_conns: list[AsyncConnection] = []  # Postgres: `write_batch`'s own, idle
        self._checkpointer = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="armillary-wal")
            if sync_writer is not None
            else None
        )
        self._checkpointing: asyncio.Future[None] | None = None
        self._checkpointed_at = time.monotonic()
        self.feed = feed.Feed()
        self.url = ""
        """The plain URL this store was opened with (`dsn()` for a raw connection)."""
        self.fence_pid: int | None = None
        """The Postgres backend pid of the leader lock's session while this replica
        believes it leads (`store.fence`); None otherwise."""
        self.sender = ""
        """This replica's id in the NOTIFY payloads it sends (`store.notify`); set by
        whoever opens the store for a server. Empty: no NOTIFY is sent (tools, tests)."""

    @property
    def dialect(self) -> str:
        return self._writer.dialect.name

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Connect, migrate to the newest schema, and return the handle."""
        target = async_url(url)
        if make_url(target).get_backend_name() == "sqlite":
            path = make_url(target).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            writer = create_async_engine(
                target,
                poolclass=AsyncAdaptedQueuePool,
                pool_size=1,
                max_overflow=0,
                pool_timeout=60,
                json_deserializer=_stored_json,
            )
            reader = create_async_engine(
                target, pool_size=4, max_overflow=4, json_deserializer=_stored_json
            )
            for engine in (writer, reader):
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(writer.sync_engine, "begin", _begin_immediate)
            event.listen(reader.sync_engine, "begin", _begin_deferred)
            plain = make_url(target).set(drivername="sqlite+pysqlite")
            sync_writer = create_engine(  # the batch writer, and the checkpointer's thread
                plain,
                poolclass=QueuePool,
                pool_size=2,
                max_overflow=0,
                pool_timeout=60,
                json_deserializer=_stored_json,
            )
            event.listen(sync_writer, "connect", _sqlite_pragmas)
            event.listen(sync_writer, "connect", _sqlite_bulk_pragmas)
            event.listen(sync_writer, "begin", _begin_immediate)
        else:
            writer = create_async_engine(target, pool_size=10, max_overflow=10, pool_pre_ping=True)
            reader = writer
            sync_writer = None
        database = cls(reader=reader, writer=writer, sync_writer=sync_writer)
        database.url = url
        if metrics.enabled:
            for pool, measured in database._pools().items():
                if pool != "batch":  # timed per transaction instead (see `_time_queries`)
                    _time_queries(measured, pool)
        if migrate:
            await database.migrate()
        return database

    async def migrate(self, *, to: str = "head") -> None:
        """Bring the schema to the newest migration, or to revision `to` (idempotent)."""
        async with self._writer.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK}
                )
            await conn.run_sync(_upgrade, to)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read transaction."""
        async with self._reader.begin() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back if it raises.
        What the repositories recorded is published on the feed after the commit."""
        if self._write_lock is None:
            async with self._write() as conn:
                yield conn
        else:
            async with self._write_lock, self._write() as conn:
                yield conn

    async def write_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one write transaction on a synchronous connection and return what
        it returns once committed (rolled back if it raises); what it recorded on the
        feed is published after the commit, as with `write()`."""
        if self._sync_writer is None or self._write_lock is None:
            async with self.write() as conn:
                return await conn.run_sync(fn)
        async with self._write_lock:
            result, events = self._run_sync(fn)
        self.feed.publish(events)
        self._maybe_checkpoint()
        return result

    async def write_batch(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn`, whose writes are `bulk.insert_rows` calls made after its reads, and
        return what it returns once its rows committed, all or none (see the module's
        docstring: on Postgres, its reads are not in the transaction of its writes)."""
        if self._sync_writer is not None:
            return await self.write_sync(fn)
        conn = None
        while self._batch_conns and conn is None:
            conn = self._batch_conns.pop()
            if conn.closed or conn.invalidated:
                conn = None
        if conn is None:
            conn = await self._writer.connect()
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        info = conn.info
        events = feed.begin(info)
        try:
            result = await conn.run_sync(_batched, fn)
            await conn.commit()  # autocommit: nothing is sent; ends SQLAlchemy's own
            if events and self.sender:  # committed: now the other replicas may hear of it
                try:
                    await self._notify(conn, events)
                    await conn.commit()
                except Exception:  # the rows are in: a lost notice is not a lost write
                    log.warning("telling the other replicas of a batch failed", exc_info=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        finally:
            feed.end(info)
        self._batch_conns.append(conn)
        self.feed.publish(events)
        return result

    def _maybe_checkpoint(self) -> None:
        """Now and then, copy the WAL into the database (see `_checkpoint_now`)."""
        now = time.monotonic()
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        if now - self._checkpointed_at < CHECKPOINT_INTERVAL_S:
            return
        self._checkpointed_at = now
        self._checkpointing = asyncio.ensure_future(self._checkpoint_now())

    async def _checkpoint_now(self) -> None:
        """A PASSIVE checkpoint in a thread: it copies what it can while commits go on,
        and the event loop goes on serving. Under a steady stream of commits it never
        catches up with the end of the WAL, which then only grows; so once the WAL is
        past `WAL_RESET_FRAMES` the checkpoint holds the write lock (commits wait in
        their queue, the loop still serves), catches up, and the next commit starts the
        WAL over. It follows two passive ones at once, so little is left for it to copy."""
        assert self._write_lock is not None and self._checkpointer is not None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._checkpointer, self._checkpoint)
        if self._wal_frames >= WAL_RESET_FRAMES:
            # Another passive one first, short (it copies what was committed during the
            # last); then, under the lock, only what was committed during that is left.
            await loop.run_in_executor(self._checkpointer, self._checkpoint)
            async with self._write_lock:
                await loop.run_in_executor(self._checkpointer, self._checkpoint)

    def _checkpoint(self) -> None:
        assert self._sync_writer is not None
        try:
            raw = self._sync_writer.raw_connection()  # autocommit: no BEGIN, no write lock
            try:
                row = raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self._wal_frames = int(row[1]) if row is not None else 0
            finally:
                raw.close()
        except Exception:  # the next one tries again; SQLite's own limit still applies
            log.exception("checkpointing the SQLite WAL failed")

    def _run_sync(self, fn: Callable[[Connection], T]) -> tuple[T, list[feed.Change]]:
        assert self._sync_writer is not None
        # One connection kept open: a checkout and its reset per batch cost as much as
        # a batch's inserts. A connection that failed is closed and the next one opened.
        conn = self._sync_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._sync_conn = self._sync_writer.connect()
        info = conn.info
        events = feed.begin(info)
        try:
            with conn.begin():
                result = fn(conn)
        except BaseException:
            self._sync_conn = None
            conn.close()
            raise
        finally:
            feed.end(info)
        return result, events

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.connect() as conn:
            # Held once: after a cancelled commit the connection may be invalidated, and
            # `conn.info` would then try to reconnect outside the event loop's reach.
            info = conn.info
            events = feed.begin(info)
            fence.mark(info, self.fence_pid)
            try:
                async with conn.begin():
                    yield conn
                    if events and self.sender:  # delivered to the others only on commit
                        await self._notify(conn, events)
            finally:
                feed.end(info)
                fence.mark(info, None)
        self.feed.publish(events)

    async def _notify(self, conn: AsyncConnection, events: list[feed.Change]) -> None:
        for payload in notify.encode(events, sender=self.sender):
            await conn.execute(_NOTIFY, {"channel": notify.CHANNEL, "payload": payload})

    def dsn(self) -> str:
        """This store's Postgres URL for a raw asyncpg connection (the listener's, the
        leader lock's), outside SQLAlchemy's pool."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def connection(self) -> AsyncConnection:
        """A connection of the writer pool outside `write()`, for session-level state
        such as advisory locks. The caller commits and closes it."""
        return await self._writer.connect()

    async def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""
        async with self._reader.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def revisions(self) -> tuple[str | None, str | None]:
        """The schema's migration revision as stored, and the newest one this code
        ships: equal once `migrate()` ran (`armillary doctor` reports both)."""
        async with self._reader.connect() as conn:
            current = await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        return current, head

    def _pools(self) -> dict[str, Engine]:
        """The synchronous engines under this store's pools, by the name metrics use."""
        found = {"writer": self._writer.sync_engine}
        if self._reader is not self._writer:
            found["reader"] = self._reader.sync_engine
        if self._sync_writer is not None:
            found["batch"] = self._sync_writer
        return found

    def pool_status(self) -> dict[str, tuple[int, int]]:
        """Each pool's connections in use and idle, for `/metrics`."""
        status: dict[str, tuple[int, int]] = {}
        for name, engine in self._pools().items():
            pool = engine.pool
            if isinstance(pool, QueuePool):  # the async adapted pool is one too
                status[name] = (pool.checkedout(), pool.checkedin())
        return status

    async def close(self) -> None:
        if self._checkpointing is not None:
            await asyncio.wait([self._checkpointing])
        if self._checkpointer is not None:
            self._checkpointer.shutdown()
        while self._batch_conns:
            await self._batch_conns.pop().close()
        if self._sync_conn is not None:
            self._sync_conn.close()
            self._sync_conn = None
        if self._sync_writer is not None:
            self._sync_writer.dispose()
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()


def _batched(conn: Connection, fn: Callable[[Connection], T]) -> T:
    """`fn` on `conn` with its bulk inserts collected, then written in one statement."""
    pending = bulk.deferred(conn.info)
    try:
        result = fn(conn)
        bulk.flush(conn, pending)
    finally:
        bulk.discard(conn.info)
    return result


def _upgrade(connection: Connection, to: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, to)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" hooks below issue BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. synchronous=NORMAL in WAL mode keeps every
    # committed transaction across a process crash (kill -9); only a power loss can
    # take back the last commits, which FULL would prevent at several times the cost.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_bulk_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The batch writer's page cache holds the indexes it inserts into (64 MiB, not
    # 2), and it never checkpoints: copying the WAL into the database (and syncing
    # it) would stop the event loop; `Database` checkpoints in a thread instead.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA journal_size_limit=67108864")  # a WAL started over shrinks to 64 MiB
    cursor.close()


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_deferred(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


Tx = AsyncConnection
"""The transaction handle repositories take; callers outside store/ name it by this alias."""

SyncTx = Connection
"""The handle `write_sync` gives its function."""


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _stored_json(value: str) -> Any:
    """A JSON column as read from SQLite. Rows written before strings were checked at
    the door (`resources.text`) may hold lone surrogates, which no answer could encode:
    they are read with U+FFFD in their place, so lists and the node's assignments still
    work and the owner sees what to fix. (Postgres never stored them: it refuses them.)"""
    loaded = json.loads(value)
    if _SURROGATE_ESCAPE.search(value) is None:
        return loaded
    return storable.sanitized(loaded)

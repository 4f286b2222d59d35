"""Who leads: one server replica at a time runs the controllers.

On Postgres the leader is whoever holds a session advisory lock (`LOCK_NAME`) on one
dedicated asyncpg connection, outside SQLAlchemy's pool (a pooled connection could be
recycled, and the lock with it). Why a session lock and not a lease row with a TTL:
a replica that dies (kill -9, a crash, its machine) loses its socket, Postgres ends
the session and frees the lock at once, so a follower polling every `POLL_S` takes
over within that, where a lease must first run out its TTL (the Kubernetes Lease's
15 s); and there is no clock to trust, ours or the database's. The cost: a leader cut
off from Postgres by the network keeps its lock until Postgres notices the dead peer,
which the TCP keepalives set on the lock's session bound (`KEEPALIVE_*`: ~8 s);
the leader itself checks its connection every `CHECK_S` (timeout `CHECK_TIMEOUT_S`)
and steps down when a check fails (~3 s at most), so it has stopped before anyone
else can win the lock.

On SQLite there is one server per database file (`store.exclusive`), which is the
leader from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

from armillary.store.database import Database

log = logging.getLogger("armillary.store")

LOCK_NAME = "armillary.leader"
POLL_S = 0.5
CHECK_S = 1.0
CHECK_TIMEOUT_S = 2.0
KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 1
KEEPALIVE_COUNT = 3


def _key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name` (as `store.locks` does)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Election:
    """Win (`acquire`), keep (`hold` returns once it is lost) and give back (`release`)
    the leadership of the servers sharing `db`."""

    def __init__(self, db: Database, *, poll_s: float = POLL_S, check_s: float = CHECK_S) -> None:
        self._db = db
        self._poll_s = poll_s
        self._check_s = check_s
        self._conn: Any = None  # the asyncpg connection holding the lock (Postgres)
        self._key = _key(LOCK_NAME)

    @property
    def shared(self) -> bool:
        """Whether other replicas may compete (Postgres); on SQLite there are none."""
        return self._db.dialect == "postgresql"

    async def try_acquire(self) -> bool:
        """Try once, now; True if this replica leads."""
        if not self.shared:
            return True
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            got = await asyncio.wait_for(
                self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key),
                timeout=CHECK_TIMEOUT_S * 5,  # a connection that hangs is dropped, not waited on
            )
        except Exception as exc:
            log.warning("could not try for the leader lock: %s", exc)
            await self._drop()
            return False
        if got:  # this replica's placements commit only while this session holds it
            self._db.fence_pid = self._conn.get_server_pid()
        return bool(got)

    async def acquire(self) -> None:
        """Wait until this replica leads, trying every `poll_s`."""
        while not await self.try_acquire():  # noqa: ASYNC110 - another process holds it
            await asyncio.sleep(self._poll_s)

    async def hold(self) -> None:
        """Return once the leadership is lost: the lock's connection failed a check."""
        if not self.shared:
            await asyncio.Event().wait()  # nobody else: held until cancelled
        while True:
            await asyncio.sleep(self._check_s)
            try:
                held = await asyncio.wait_for(
                    self._conn.fetchval(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                        " AND pid = pg_backend_pid() AND granted)"
                    ),
                    timeout=CHECK_TIMEOUT_S,
                )
            except Exception as exc:
                log.error("the leader lock's connection failed (%s): stepping down", exc)
                await self._drop()
                return
            if not held:
                log.error("the leader lock is no longer held: stepping down")
                await self._drop()
                return

    async def release(self) -> None:
        """Give the leadership back now (a clean stop): closing the session frees it."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), timeout=CHECK_TIMEOUT_S)
        await self._drop()

    async def _connect(self) -> Any:
        import asyncpg

        conn = await asyncpg.connect(
            self._db.dsn(), timeout=10, server_settings={"application_name": "armillary leader"}
        )
        # The server's side of the socket: a leader cut off by the network loses the
        # lock once Postgres notices (idle + interval × count), after it stepped down.
        await conn.execute(
            f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE_S};"
            f" SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL_S};"
            f" SET tcp_keepalives_count = {KEEPALIVE_COUNT}"
        )
        return conn

    async def _drop(self) -> None:
        self._db.fence_pid = None
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

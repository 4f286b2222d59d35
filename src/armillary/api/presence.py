"""This replica's row in `servers`, kept fresh: who serves, who leads, who is gone.

`Presence.run()` upserts the row every `interval_s` (and at once when the lead
changes: `poke()`), with whether this replica leads. While it leads it also cleans
up after replicas that died: rows not seen for `servers.FORGET_AFTER_S` are
deleted, and nodes whose session a replica held that has not been seen for
`STALE_AFTER_S` are marked not connected (their daemons reconnect elsewhere and say
hello again). `remove()` deletes the row at a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from armillary.store import nodes, servers
from armillary.store.database import Database, Tx

log = logging.getLogger("armillary.api")

INTERVAL_S = 1.0
STALE_AFTER_S = 10.0
"""A replica not seen for this long is shown as stale (and its node sessions reset)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stale(server: servers.Server, *, now: dt.datetime) -> bool:
    """Whether `server` has not been seen for `STALE_AFTER_S` at `now`."""
    return (now - server.seen_at).total_seconds() > STALE_AFTER_S


class Presence:
    def __init__(
        self,
        db: Database,
        *,
        name: str,
        address: str,
        version: str,
        leading: Callable[[], bool],
        interval_s: float = INTERVAL_S,
    ) -> None:
        self._db = db
        self.name = name
        self._address = address
        self._version = version
        self._leading = leading
        self._interval_s = interval_s
        self._started_at = _now()
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Write the row now (the lead changed)."""
        self._poked.set()

    async def announce(self) -> None:
        now = _now()
        leader = self._leading()
        async with self._db.write() as conn:
            await servers.announce(
                conn,
                servers.Server(
                    name=self.name,
                    address=self._address,
                    version=self._version,
                    leader=leader,
                    started_at=self._started_at,
                    seen_at=now,
                ),
            )
            if leader:
                await self._clean_up(conn, now=now)

    async def _clean_up(self, conn: Tx, *, now: dt.datetime) -> None:
        everyone = await servers.list_all(conn)
        live = [s.name for s in everyone if not stale(s, now=now)]
        orphans = await nodes.disconnect_orphans(conn, live=live)
        if orphans:
            log.warning("nodes %s were held by replicas gone: not connected", orphans)
        forget_before = now - dt.timedelta(seconds=servers.FORGET_AFTER_S)
        await servers.forget(conn, seen_before=forget_before)

    async def run(self) -> None:
        """Run until cancelled; a failed write is logged and tried again next time."""
        while True:
            self._poked.clear()
            try:
                await self.announce()
            except Exception:
                log.exception("recording this server in `servers` failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), timeout=self._interval_s)

    async def remove(self) -> None:
        """A clean stop: this replica is no longer among the servers."""
        async with self._db.write() as conn:
            await servers.remove(conn, self.name)

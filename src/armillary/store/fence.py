"""The leader's fence: a placement commits only while its writer still leads.

The election (`store.leader`) keeps two leaders from acting at once, except in one
window: a leader whose lock's connection is gone (cut off, Postgres restarted) acts
until its next check notices, while another replica may already have won the lock.
So the replica that believes it leads marks its write transactions with the
Postgres backend pid of its lock connection (`Database.fence_pid`, set by the
election), and `allocations.add` calls `check`, which refuses the write unless that
session still holds its advisory lock: a `TemporaryError`, which the controller
retries (and, once the lead is seen lost, never gets to). Replicas that do not
believe they lead are not fenced: their writes (a schedule's run-now) are
conditional writes of their own. SQLite has one server per file: nothing to fence.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.errors import TemporaryError

_KEY = "armillary.fence"
_HELD = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid)"
)


def mark(info: dict[str, Any], pid: int | None) -> None:
    """Fence the transaction on the connection `info` with the lock session `pid`."""
    if pid is None:
        info.pop(_KEY, None)
    else:
        info[_KEY] = pid


async def check(conn: AsyncConnection) -> None:
    """`TemporaryError` if this transaction is fenced and its leader lost the lock."""
    pid = conn.info.get(_KEY)
    if pid is None:
        return
    if not (await conn.execute(_HELD, {"pid": pid})).scalar():
        raise TemporaryError("this server no longer leads: the placement is left to the leader")

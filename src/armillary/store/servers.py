"""The server replicas sharing this store, as each says of itself.

Every replica upserts its own row every ~1 s (`announce`): its name, the address it
serves at, its version, whether it leads, when it was last seen. A replica that
stops cleanly removes its row (`remove`); one that died stays, seen ever longer ago:
`list_all` returns it and the API shows it as stale; rows not seen for
`FORGET_AFTER_S` are deleted by whichever replica announces next (`forget`).
The `leader` flag is what each replica last said; a replica that wins the lead
clears everyone else's flag in the same write, so a dead leader's row never shows a
second leader.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.store.tables import servers

FORGET_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    name: str
    address: str
    version: str
    leader: bool
    started_at: dt.datetime
    seen_at: dt.datetime


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def announce(
    conn: AsyncConnection,
    server: Server,
) -> None:
    """Insert or refresh `server`'s row; if it leads, nobody else's row says so."""
    values = {
        "address": server.address,
        "version": server.version,
        "leader": server.leader,
        "seen_at": server.seen_at,
    }
    if server.leader:
        await conn.execute(
            update(servers)
            .where(servers.c.name != server.name, servers.c.leader.is_(True))
            .values(leader=False)
        )
    updated = await conn.execute(
        update(servers).where(servers.c.name == server.name).values(**values)
    )
    if updated.rowcount == 0:
        await conn.execute(
            insert(servers).values(name=server.name, started_at=server.started_at, **values)
        )


async def list_all(conn: AsyncConnection) -> list[Server]:
    rows = await conn.execute(select(servers).order_by(servers.c.name))
    return [
        Server(
            name=row.name,
            address=row.address,
            version=row.version,
            leader=row.leader,
            started_at=_aware(row.started_at),
            seen_at=_aware(row.seen_at),
        )
        for row in rows
    ]


async def remove(conn: AsyncConnection, name: str) -> None:
    await conn.execute(delete(servers).where(servers.c.name == name))


async def forget(conn: AsyncConnection, *, seen_before: dt.datetime) -> list[str]:
    """Delete the rows of replicas not seen since `seen_before`; their names."""
    gone = [
        row.name
        for row in await conn.execute(select(servers.c.name).where(servers.c.seen_at < seen_before))
    ]
    if gone:
        await conn.execute(delete(servers).where(servers.c.name.in_(gone)))
    return gone

"""Nodes in the store: registered by their daemons, never applied by users.

A node row is upserted on every `hello`; `connected` and `heartbeat_at` say whether
it is there now. `epoch` moves whenever the node's set of allocations changes, so an
assignment message can say which version of the set it carries.

A drain (`drain`) cordons the node and records when it started and its deadline;
the tenant controller moves the node's replicas away, and `control.drains` marks it
drained once nothing runs there (or stops what is left at the deadline). Uncordon
(`set_schedulable(..., schedulable=True)`) ends a drain: the three columns go back
to null together.

`lost_at` is set by the node-loss controller (`mark_lost`) when the node has been
silent too long, and cleared by the node's next hello or heartbeat; both are
announced on the feed, so placement and the tenants with replicas there look again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary import timestamps
from armillary.errors import NotFound
from armillary.store import feed
from armillary.store.tables import nodes

IN_BATCH = 500  # names per `IN (...)`: well under the drivers' limits on parameters


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    name: str
    address: str
    labels: dict[str, str]
    capacity: dict[str, int]
    usage: dict[str, Any]
    schedulable: bool
    connected: bool
    epoch: int
    registered_at: dt.datetime
    heartbeat_at: dt.datetime | None
    isolation: str = "shared-user"  # per-tenant-user | shared-user
    drain_started_at: dt.datetime | None = None  # None: not draining
    drain_deadline_at: dt.datetime | None = None  # None: no deadline
    drained_at: dt.datetime | None = None  # None: not (yet) empty
    server: str | None = None  # the server replica holding its session (Postgres)
    lost_at: dt.datetime | None = None  # declared lost (silent too long) at; None: not lost

    @property
    def drain(self) -> str | None:
        """`draining`, `drained`, or None when no drain is on."""
        if self.drain_started_at is None:
            return None
        return "drained" if self.drained_at is not None else "draining"

    @property
    def status(self) -> str:
        """Lost, Ready (connected) or NotReady: what `nodes` shows."""
        if self.lost_at is not None:
            return "Lost"
        return "Ready" if self.connected else "NotReady"


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    """A node not (yet) declared lost, as the node-loss controller judges it."""

    name: str
    heartbeat_at: dt.datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A node as placement sees it: where it is, what it offers, whether it takes work
    (`connected`: ready; `schedulable`: not cordoned). Read without usage or epoch,
    which move all the time and placement never looks at."""

    name: str
    address: str
    labels: dict[str, str]
    cpu_millicores: int
    memory_mb: int
    connected: bool
    schedulable: bool
    draining: bool = False  # a drain is on: its replicas are moved away
    lost: bool = False  # declared lost: placement never takes it


def _node(row: Row[Any]) -> Node:
    return Node(
        name=row.name,
        address=row.address,
        labels=row.labels,
        capacity=row.capacity,
        usage=row.usage,
        schedulable=row.schedulable,
        connected=row.connected,
        epoch=row.epoch,
        registered_at=row.registered_at,
        heartbeat_at=row.heartbeat_at,
        isolation=row.isolation,
        drain_started_at=_utc(row.drain_started_at),
        drain_deadline_at=_utc(row.drain_deadline_at),
        drained_at=_utc(row.drained_at),
        server=row.server,
        lost_at=row.lost_at,
    )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back without their zone: compared with aware ones."""
    return None if value is None else timestamps.utc(value)


def _changed(conn: AsyncConnection, name: str) -> None:
    feed.record(conn.info, feed.Change(kind="Node", name=name, node=name))


async def get(conn: AsyncConnection, name: str) -> Node | None:
    row = (await conn.execute(select(nodes).where(nodes.c.name == name))).first()
    return _node(row) if row is not None else None


async def require(conn: AsyncConnection, name: str) -> Node:
    found = await get(conn, name)
    if found is None:
        raise NotFound(f"node {name!r} not found")
    return found


async def list_all(conn: AsyncConnection) -> list[Node]:
    result = await conn.execute(select(nodes).order_by(nodes.c.name))
    return [_node(row) for row in result]


async def targets(conn: AsyncConnection, names: Collection[str] | None = None) -> list[Target]:
    """Every node as a placement target, or only those of `names` (the ones not
    found are missing from the answer), by name."""
    query = select(
        nodes.c.name,
        nodes.c.address,
        nodes.c.labels,
        nodes.c.capacity,
        nodes.c.connected,
        nodes.c.schedulable,
        nodes.c.drain_started_at,
        nodes.c.lost_at,
    ).order_by(nodes.c.name)
    if names is None:
        rows = list(await conn.execute(query))
    else:
        rows = []
        listed = sorted(names)
        for at in range(0, len(listed), IN_BATCH):
            chunk = listed[at : at + IN_BATCH]
            rows.extend(await conn.execute(query.where(nodes.c.name.in_(chunk))))
    return [
        Target(
            name=row.name,
            address=row.address,
            labels=row.labels,
            cpu_millicores=int(row.capacity.get("cpu_millicores", 0)),
            memory_mb=int(row.capacity.get("memory_mb", 0)),
            connected=row.connected,
            schedulable=row.schedulable,
            draining=row.drain_started_at is not None,
            lost=row.lost_at is not None,
        )
        for row in rows
    ]


async def register(
    conn: AsyncConnection,
    *,
    name: str,
    address: str,
    labels: dict[str, str],
    capacity: dict[str, int],
    now: dt.datetime,
    isolation: str = "shared-user",
    server: str | None = None,
) -> Node:
    """Insert or refresh the node as connected (schedulable state is kept), its
    session held by the server replica `server`."""
    """Insert or refresh the node as connected, and no longer lost (schedulable state
    is kept)."""
    values = {
        "server": server,
        "address": address,
        "labels": labels,
        "capacity": capacity,
        "isolation": isolation,
        "connected": True,
        "heartbeat_at": now,
        "lost_at": None,
    }
    if await get(conn, name) is None:
        await conn.execute(
            insert(nodes).values(
                name=name, usage={}, schedulable=True, epoch=0, registered_at=now, **values
            )
        )
    else:
        await conn.execute(update(nodes).where(nodes.c.name == name).values(**values))
    _changed(conn, name)
    return await require(conn, name)


async def heartbeats(
    conn: AsyncConnection, beats: Sequence[tuple[str, dict[str, Any], dt.datetime]]
) -> list[str]:
    """Store many heartbeats (node name, usage, when it arrived) in one statement. A
    node that was declared lost and beats again is found again: `lost_at` cleared and
    the change announced (the names of those nodes are returned)."""
    if not beats:
        return []
    await conn.execute(
        update(nodes)
        .where(nodes.c.name == bindparam("node_name"))
        .values(usage=bindparam("new_usage"), heartbeat_at=bindparam("beat_at")),
        [{"node_name": n, "new_usage": u, "beat_at": at} for n, u, at in beats],
    )
    found: list[str] = []
    listed = sorted({n for n, _, _ in beats})
    for at in range(0, len(listed), IN_BATCH):
        chunk = listed[at : at + IN_BATCH]
        query = select(nodes.c.name).where(nodes.c.name.in_(chunk), nodes.c.lost_at.is_not(None))
        found.extend(row.name for row in await conn.execute(query))
    if found:
        await conn.execute(update(nodes).where(nodes.c.name.in_(found)).values(lost_at=None))
        for name in found:
            _changed(conn, name)
    return found


async def silent(conn: AsyncConnection) -> list[Silence]:
    """Every node not declared lost, with its last heartbeat (name and time only)."""
    query = (
        select(nodes.c.name, nodes.c.heartbeat_at)
        .where(nodes.c.lost_at.is_(None))
        .order_by(nodes.c.name)
    )
    return [Silence(name=r.name, heartbeat_at=r.heartbeat_at) for r in await conn.execute(query)]


async def mark_lost(
    conn: AsyncConnection, name: str, *, silent_since: dt.datetime | None, now: dt.datetime
) -> Node | None:
    """Declare `name` lost at `now`, unless it beat (or said hello) after
    `silent_since`, the heartbeat the decision saw, or is lost already: the node as
    marked, or None when it was not (a write conditional on what was read)."""
    heard = (
        nodes.c.heartbeat_at.is_(None)
        if silent_since is None
        else (nodes.c.heartbeat_at.is_(None) | (nodes.c.heartbeat_at <= silent_since))
    )
    result = await conn.execute(
        update(nodes)
        .where(nodes.c.name == name, nodes.c.lost_at.is_(None), heard)
        .values(lost_at=now)
    )
    if result.rowcount != 1:
        return None
    _changed(conn, name)
    return await require(conn, name)


async def disconnect(conn: AsyncConnection, name: str, *, server: str | None = None) -> None:
    """The session of node `name` on replica `server` ended: not connected, unless its
    daemon has meanwhile said hello to another replica (which holds it now)."""
    query = update(nodes).where(nodes.c.name == name)
    if server is not None:
        query = query.where(nodes.c.server == server)
    if (await conn.execute(query.values(connected=False))).rowcount:
        _changed(conn, name)


async def disconnect_all(conn: AsyncConnection, *, server: str | None = None) -> None:
    """At the start of replica `server`, none of the sessions it held before is still
    there, whatever the rows say; those of other replicas are theirs (None: every
    session, for the sole server of a SQLite store)."""
    query = update(nodes).where(nodes.c.connected.is_(True))
    if server is not None:
        query = query.where((nodes.c.server == server) | nodes.c.server.is_(None))
    await conn.execute(query.values(connected=False))


async def disconnect_orphans(conn: AsyncConnection, *, live: Collection[str]) -> list[str]:
    """Mark not connected the nodes whose session is held by a replica not in `live`
    (it died without saying so); their names."""
    rows = await conn.execute(
        select(nodes.c.name).where(
            nodes.c.connected.is_(True),
            nodes.c.server.is_not(None),
            nodes.c.server.not_in(list(live)),
        )
    )
    names = [row.name for row in rows]
    for name in names:
        await conn.execute(update(nodes).where(nodes.c.name == name).values(connected=False))
        _changed(conn, name)
    return names


async def set_schedulable(conn: AsyncConnection, name: str, *, schedulable: bool) -> Node:
    """Cordon (False) or uncordon (True); uncordon also ends a drain."""
    await require(conn, name)
    values: dict[str, Any] = {"schedulable": schedulable}
    if schedulable:
        values.update(drain_started_at=None, drain_deadline_at=None, drained_at=None)
    await conn.execute(update(nodes).where(nodes.c.name == name).values(**values))
    _changed(conn, name)
    return await require(conn, name)


async def drain(
    conn: AsyncConnection, name: str, *, deadline_at: dt.datetime | None, now: dt.datetime
) -> Node:
    """Cordon the node and start draining it, or give a drain that is on a new
    deadline (`None`: none); it keeps its start, and stays drained if it was."""
    found = await require(conn, name)
    await conn.execute(
        update(nodes)
        .where(nodes.c.name == name)
        .values(
            schedulable=False,
            drain_started_at=found.drain_started_at or now,
            drain_deadline_at=deadline_at,
        )
    )
    _changed(conn, name)  # wakes the tenants with replicas there: they move them
    return await require(conn, name)


async def draining(conn: AsyncConnection) -> list[Node]:
    """The nodes whose drain is on and not yet done."""
    query = select(nodes).where(nodes.c.drain_started_at.is_not(None), nodes.c.drained_at.is_(None))
    return [_node(row) for row in await conn.execute(query.order_by(nodes.c.name))]


async def mark_drained(conn: AsyncConnection, name: str, *, now: dt.datetime) -> bool:
    """Record that the draining node `name` is empty; False if its drain ended meanwhile."""
    done = await conn.execute(
        update(nodes)
        .where(
            nodes.c.name == name,
            nodes.c.drain_started_at.is_not(None),
            nodes.c.drained_at.is_(None),
        )
        .values(drained_at=now)
    )
    if done.rowcount:
        _changed(conn, name)
    return bool(done.rowcount)


async def bump_epoch(conn: AsyncConnection, name: str) -> None:
    """The node's set of allocations changed: move its epoch and tell the feed (as an
    `Assignments` event: the node's hub pushes; tenants have their own Allocation events)."""
    await conn.execute(update(nodes).where(nodes.c.name == name).values(epoch=nodes.c.epoch + 1))
    feed.record(conn.info, feed.Change(kind="Assignments", name=name, node=name))

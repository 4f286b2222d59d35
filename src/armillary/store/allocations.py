"""Allocations: one replica of one tenant's component, placed on one node.

The controllers own the set (create, delete); the node owning an allocation owns
its `report`. Every change to a node's set moves that node's epoch and is
announced on the feed for the tenant and the node, so the hub can push the node
its new set and the controller can look at the tenant again. An allocation with
`schedule_run` set runs one run of a schedule: the schedule controller owns it,
and the tenant controller leaves it alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.store import feed, fence, nodes
from armillary.store.tables import allocations


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    id: str
    tenant: str
    component: str
    replica: int
    node: str
    spec_hash: str
    spec: dict[str, Any]
    report: dict[str, Any] | None
    created_at: dt.datetime
    reported_at: dt.datetime | None
    schedule_run: str | None = None  # the schedule run it belongs to, if any


@dataclass(frozen=True, slots=True, kw_only=True)
class Share:
    """What an allocation takes of its node, as placement counts it (its spec's
    `cpu_millicores` and `memory_mb`); read without the spec's body or the report."""

    id: str
    tenant: str
    component: str
    node: str
    cpu_millicores: int
    memory_mb: int


def _allocation(row: Row[Any]) -> Allocation:
    return Allocation(
        id=row.id,
        tenant=row.tenant,
        component=row.component,
        replica=row.replica,
        node=row.node,
        spec_hash=row.spec_hash,
        spec=row.spec,
        report=row.report,
        created_at=row.created_at,
        reported_at=row.reported_at,
        schedule_run=row.schedule_run,
    )


def _announce(conn: AsyncConnection, allocation: Allocation) -> None:
    feed.record(
        conn.info,
        feed.Change(
            kind="Allocation",
            name=allocation.id,
            tenant=allocation.tenant,
            node=allocation.node,
            run=allocation.schedule_run,
        ),
    )


async def get(conn: AsyncConnection, allocation_id: str) -> Allocation | None:
    row = (await conn.execute(select(allocations).where(allocations.c.id == allocation_id))).first()
    return _allocation(row) if row is not None else None


async def for_tenant(conn: AsyncConnection, tenant: str) -> list[Allocation]:
    result = await conn.execute(
        select(allocations)
        .where(allocations.c.tenant == tenant)
        .order_by(allocations.c.component, allocations.c.replica, allocations.c.created_at)
    )
    return [_allocation(row) for row in result]


async def for_tenants(
    conn: AsyncConnection, tenants: Collection[str]
) -> dict[str, list[Allocation]]:
    """`for_tenant` of each of `tenants` in one query (a tenant without any: no key)."""
    found: dict[str, list[Allocation]] = {}
    if not tenants:
        return found
    result = await conn.execute(
        select(allocations)
        .where(allocations.c.tenant.in_(sorted(tenants)))
        .order_by(allocations.c.component, allocations.c.replica, allocations.c.created_at)
    )
    for row in result:
        found.setdefault(row.tenant, []).append(_allocation(row))
    return found


async def for_node(conn: AsyncConnection, node: str) -> list[Allocation]:
    result = await conn.execute(
        select(allocations).where(allocations.c.node == node).order_by(allocations.c.created_at)
    )
    return [_allocation(row) for row in result]


async def by_ids(conn: AsyncConnection, node: str, ids: Iterable[str]) -> list[Allocation]:
    """The allocations of `node` among `ids` (those that exist), oldest first."""
    found: list[Allocation] = []
    for chunk in _chunks(ids):
        result = await conn.execute(
            select(allocations).where(allocations.c.node == node, allocations.c.id.in_(chunk))
        )
        found.extend(_allocation(row) for row in result)
    return sorted(found, key=lambda a: (a.created_at, a.id))


async def present(conn: AsyncConnection, node: str, ids: Iterable[str]) -> set[str]:
    """Which of `ids` are allocations of `node` (ids only: no spec or report read)."""
    there: set[str] = set()
    for chunk in _chunks(ids):
        result = await conn.execute(
            select(allocations.c.id).where(allocations.c.node == node, allocations.c.id.in_(chunk))
        )
        there.update(row.id for row in result)
    return there


def _chunks(ids: Iterable[str], size: int = nodes.IN_BATCH) -> Iterable[list[str]]:
    """`ids` in lists of at most `size`: an IN list stays far below every driver's
    limit on bound parameters."""
    batch = sorted(set(ids))
    for start in range(0, len(batch), size):
        yield batch[start : start + size]


async def list_all(conn: AsyncConnection) -> list[Allocation]:
    result = await conn.execute(
        select(allocations).order_by(
            allocations.c.tenant, allocations.c.component, allocations.c.replica
        )
    )
    return [_allocation(row) for row in result]


async def shares(conn: AsyncConnection, ids: Collection[str] | None = None) -> list[Share]:
    """What every allocation takes of its node, or only those of `ids` (the ones not
    found are missing from the answer). The two numbers are read out of the spec by
    the database, so neither the spec's body nor the report crosses the wire."""
    query = select(
        allocations.c.id,
        allocations.c.tenant,
        allocations.c.component,
        allocations.c.node,
        func.coalesce(allocations.c.spec["cpu_millicores"].as_integer(), 0).label("cpu"),
        func.coalesce(allocations.c.spec["memory_mb"].as_integer(), 0).label("memory"),
    ).order_by(allocations.c.id)
    if ids is None:
        rows = list(await conn.execute(query))
    else:
        rows = []
        for chunk in _chunks(ids):
            rows.extend(await conn.execute(query.where(allocations.c.id.in_(chunk))))
    return [
        Share(
            id=row.id,
            tenant=row.tenant,
            component=row.component,
            node=row.node,
            cpu_millicores=row.cpu,
            memory_mb=row.memory,
        )
        for row in rows
    ]


async def tenants(conn: AsyncConnection, *, node: str | None = None) -> set[str]:
    """Every tenant that holds at least one allocation (on `node`, if given)."""
    query = select(allocations.c.tenant).distinct()
    if node is not None:
        query = query.where(allocations.c.node == node)
    return {row.tenant for row in await conn.execute(query)}


async def add(conn: AsyncConnection, batch: Sequence[Allocation]) -> None:
    """Insert allocations in one statement; each touched node's epoch moves once.
    Refused (`TemporaryError`) if the writer believes it leads and has lost the lead
    (`store.fence`): two leaders never both place."""
    if not batch:
        return
    await fence.check(conn)
    await conn.execute(
        insert(allocations),
        [
            {
                "id": a.id,
                "tenant": a.tenant,
                "component": a.component,
                "replica": a.replica,
                "node": a.node,
                "spec_hash": a.spec_hash,
                "spec": a.spec,
                "report": a.report,
                "created_at": a.created_at,
                "reported_at": a.reported_at,
                "schedule_run": a.schedule_run,
            }
            for a in batch
        ],
    )
    for node in sorted({a.node for a in batch}):
        await nodes.bump_epoch(conn, node)
    for allocation in batch:
        _announce(conn, allocation)


async def remove(conn: AsyncConnection, batch: Sequence[Allocation]) -> None:
    """Delete allocations in one statement; each touched node's epoch moves once."""
    if not batch:
        return
    await conn.execute(delete(allocations).where(allocations.c.id.in_([a.id for a in batch])))
    for node in sorted({a.node for a in batch}):
        await nodes.bump_epoch(conn, node)
    for allocation in batch:
        _announce(conn, allocation)


async def record_reports(
    conn: AsyncConnection, node: str, reports: Iterable[dict[str, Any]], *, now: dt.datetime
) -> list[str]:
    """Store what `node` says of its allocations; returns the tenants whose
    allocations changed. Reports for allocations the node does not own are ignored.
    Only the rows reported on are read (a node reports what changed), and the changed
    ones are written in one statement."""
    latest = {str(r.get("id")): r for r in reports}  # the last word on each wins
    owned: dict[str, tuple[str, dict[str, Any] | None, str | None]] = {}
    columns = (allocations.c.id, allocations.c.tenant, allocations.c.report)
    for chunk in _chunks(latest):
        result = await conn.execute(
            select(*columns, allocations.c.schedule_run).where(
                allocations.c.node == node, allocations.c.id.in_(chunk)
            )
        )
        owned.update((row.id, (row.tenant, row.report, row.schedule_run)) for row in result)
    rows: list[dict[str, Any]] = []
    changed: set[str] = set()
    for allocation_id, report in latest.items():
        held = owned.get(allocation_id)
        if held is None or held[1] == report:
            continue
        tenant, _, run = held
        rows.append({"allocation_id": allocation_id, "new_report": report})
        changed.add(tenant)
        feed.record(
            conn.info,
            feed.Change(
                kind="Allocation",
                name=allocation_id,
                tenant=tenant,
                node=node,
                run=run,
                report=True,
            ),
        )
    if rows:
        await conn.execute(
            update(allocations)
            .where(allocations.c.id == bindparam("allocation_id"))
            .values(report=bindparam("new_report"), reported_at=now),
            rows,
        )
    return sorted(changed)

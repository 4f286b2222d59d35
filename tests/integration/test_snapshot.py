"""The cluster snapshot (`runtime.cluster`) against a real store, SQLite and Postgres:
kept current from the feed, it equals a fresh read after any sequence of writes, and
the runtime places from it without reading the fleet on every step."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.runtime import cluster, scheduler
from armillary.runtime.instance import Instance
from armillary.runtime.nodes import NodesRuntime
from armillary.store import allocations, nodes
from armillary.store.database import Database
from tests.support import rollouts

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
NODES = ["n1", "n2", "n3", "n4"]


class Rollback(Exception):
    """Raised to roll a write transaction back."""


Join = st.tuples(
    st.just("join"),
    st.sampled_from(NODES),
    st.integers(0, 4000),
    st.integers(0, 8192),
    st.sampled_from([{}, {"zone": "eu"}, {"zone": "us"}]),
)
Leave = st.tuples(st.just("leave"), st.sampled_from(NODES))
Cordon = st.tuples(st.just("cordon"), st.sampled_from(NODES), st.booleans())
Drain = st.tuples(st.just("drain"), st.sampled_from(NODES))
Create = st.tuples(
    st.just("create"),
    st.integers(0, 99),  # which registered node
    st.sampled_from(["t1", "t2"]),
    st.sampled_from(["web", "db"]),
    st.integers(1, 3),
    st.one_of(st.none(), st.integers(0, 1000)),  # None: a spec without the numbers
)
Delete = st.tuples(st.just("delete"), st.integers(0, 999), st.integers(1, 3))
Report = st.tuples(st.just("report"), st.integers(0, 999))
# In one transaction: remove some, add one, refresh and place there, maybe roll back.
Own = st.tuples(st.just("own"), st.integers(0, 999), st.integers(0, 99), st.booleans())
Refresh = st.tuples(st.just("refresh"))
Steps = st.lists(
    st.one_of(Join, Leave, Cordon, Drain, Create, Delete, Report, Own, Refresh), max_size=20
)


def allocation(node: str, tenant: str, component: str, size: int | None) -> allocations.Allocation:
    spec: dict[str, Any] = {"command": ["sleep", "1"]}
    if size is not None:
        spec |= {"cpu_millicores": size, "memory_mb": 2 * size}
    return allocations.Allocation(
        id=str(uuid.uuid4()),
        tenant=tenant,
        component=component,
        replica=0,
        node=node,
        spec_hash="h",
        spec=spec,
        report=None,
        created_at=NOW,
        reported_at=None,
    )


async def apply(db: Database, snapshot: cluster.Snapshot, step: tuple[Any, ...]) -> None:
    """One random write through the repositories, as the hub and controllers make them."""
    kind = step[0]
    async with db.write() as conn:
        known = [t.name for t in await nodes.targets(conn)]
        held = await allocations.shares(conn)
        if kind == "join":  # a new node, or a known one with a new capacity or labels
            _, name, cpu, memory, labels = step
            capacity = {"cpu_millicores": cpu, "memory_mb": memory}
            await nodes.register(
                conn, name=name, address=f"{name}.test", labels=labels, capacity=capacity, now=NOW
            )
        elif kind == "leave" and step[1] in known:
            await nodes.disconnect(conn, step[1])
        elif kind == "cordon" and step[1] in known:
            await nodes.set_schedulable(conn, step[1], schedulable=step[2])
        elif kind == "drain" and step[1] in known:
            await nodes.drain(conn, step[1], deadline_at=None, now=NOW)
        elif kind == "create" and known:
            _, at, tenant, component, count, size = step
            node = known[at % len(known)]
            batch = [allocation(node, tenant, component, size) for _ in range(count)]
            await allocations.add(conn, batch)
        elif kind == "delete" and held:
            _, at, count = step
            gone = {held[(at + i) % len(held)].id for i in range(count)}
            await allocations.remove(conn, [await _get(conn, i) for i in sorted(gone)])
        elif kind == "report" and held:
            target = held[step[1] % len(held)]
            report = {"id": target.id, "state": "running", "ports": {"http": 8000 + step[1]}}
            await allocations.record_reports(conn, target.node, [report], now=NOW)
        elif kind == "own" and held and known:
            await _own(conn, snapshot, step, known=known, held=held)


async def _own(
    conn: AsyncConnection,
    snapshot: cluster.Snapshot,
    step: tuple[Any, ...],
    *,
    known: list[str],
    held: list[allocations.Share],
) -> None:
    """A step that writes and then refreshes and places in its own transaction: what
    it sees counts its own writes; what it rolls back never reaches the snapshot."""
    _, at, node_at, roll_back = step
    removed = held[at % len(held)]
    await allocations.remove(conn, [await _get(conn, removed.id)])
    added = allocation(known[node_at % len(known)], "t3", "job", 100)
    await allocations.add(conn, [added])
    await snapshot.refresh(conn)
    before = snapshot.content()
    inside = await cluster.read(conn)  # the store as this transaction sees it
    demands = [
        scheduler.Demand(key=f"x{i}", group=f"t3/{g}", cpu_millicores=300, memory_mb=500)
        for i, g in enumerate(["job", "job", "web"])
    ]
    for strategy in ("spread", "binpack"):
        placed = await snapshot.place(conn, demands, strategy)
        assert placed == scheduler.place(inside.index, demands, strategy)
    assert snapshot.content() == before  # its own writes are not left in the snapshot
    assert added.id not in before.allocations
    if roll_back:
        raise Rollback()


async def _get(conn: AsyncConnection, allocation_id: str) -> allocations.Allocation:
    found = await allocations.get(conn, allocation_id)
    assert found is not None
    return found


async def check(db: Database, snapshot: cluster.Snapshot) -> None:
    async with db.write() as conn:
        await snapshot.refresh(conn)
        fresh = await cluster.read(conn)
    assert snapshot.content() == fresh
    assert snapshot.addresses == {name: t.address for name, t in fresh.nodes.items()}
    draining = {name: "draining" for name, t in fresh.nodes.items() if t.draining}
    assert snapshot.node_states == draining


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=Steps)
# Always: an allocation created (so dirty), then removed in a transaction that
# refreshes there and rolls back: the snapshot must still read it again afterwards.
@example(
    steps=[("join", "n1", 1000, 1000, {}), ("create", 0, "t1", "web", 1, 10), ("own", 0, 0, True)]
)
async def test_the_snapshot_equals_a_fresh_read_after_any_writes(
    store: Database, steps: list[tuple[Any, ...]]
) -> None:
    """Creates, deletes, reports, node joins, leaves, cordons and capacity changes, some
    in transactions that place on the snapshot and roll back. Two snapshots watch: one
    that only ever re-reads what changed (it loads once), one with the default rule
    that rebuilds when much has changed."""
    incremental = cluster.Snapshot(store.feed, rebuild_min=10**9)
    default = cluster.Snapshot(store.feed)
    try:
        for snapshot in (incremental, default):
            await check(store, snapshot)
        for step in steps:
            with suppress(Rollback):
                await apply(store, incremental, step)
            if step[0] == "refresh":
                await check(store, incremental)
        for snapshot in (incremental, default):
            await check(store, snapshot)
        assert incremental.loads == 1
    finally:
        incremental.close()
        default.close()


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL every engine sends while inside."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", note)


def unfiltered(seen: list[str], table: str) -> list[str]:
    """The statements that read every row of `table`: from it, with no WHERE."""
    reads = [s for s in seen if re.search(rf"\bFROM {table}\b", s)]
    return [s for s in reads if "WHERE" not in s]


async def test_a_tenant_step_reads_the_rows_that_changed_not_the_fleet(store: Database) -> None:
    async with store.write() as conn:
        for name in NODES:
            await nodes.register(
                conn,
                name=name,
                address=f"{name}.test",
                labels={},
                capacity={"cpu_millicores": 4000, "memory_mb": 8192},
                now=NOW,
            )
        await allocations.add(conn, [allocation("n1", "other", "web", 10) for _ in range(5)])
    runtime = NodesRuntime(store)
    web = rollouts.template("web", replicas=2)
    await runtime.converge("acme", Instance(tenant="acme", templates=(web,)), now=NOW)
    async with store.read() as conn:
        first = {a.id for a in await allocations.for_tenant(conn, "acme")}
    async with store.write() as conn:  # the hub: a node leaves, another says hello again
        await nodes.disconnect(conn, "n2")
        await nodes.register(
            conn,
            name="n3",
            address="n3.test",
            labels={},
            capacity={"cpu_millicores": 1000, "memory_mb": 1024},
            now=NOW,
        )
    async with store.read() as conn:  # where a step reading the whole store would place
        fresh = await cluster.read(conn)
    demand = scheduler.Demand(key="web/2", group="acme/web")
    expected = scheduler.place(fresh.index, [demand]).assigned["web/2"]
    bigger = rollouts.template("web", replicas=3)
    with statements() as seen:
        outcome = await runtime.converge(
            "acme", Instance(tenant="acme", templates=(bigger,)), now=NOW
        )
    assert len(outcome.step.create) == 1 and outcome.unplaced == {}
    assert unfiltered(seen, "allocations") == []
    assert unfiltered(seen, "nodes") == []
    async with store.read() as conn:
        placed = await allocations.for_tenant(conn, "acme")
    [new] = [a for a in placed if a.id not in first]
    assert new.node == expected != "n2"  # n2 left: the snapshot knows without a full read

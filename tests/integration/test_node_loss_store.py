"""The node-loss controller against a real store (SQLite and Postgres), its clock
injected: what one check writes — the node's `lost_at`, the audit entry, a failed
report for a schedule run placed there, the feed change that wakes the tenants —
that a heartbeat landing after the judged one wins, and that a heartbeat or a
hello finds the node again."""

from __future__ import annotations

import datetime as dt

from armillary.control.node_loss import NodeLoss
from armillary.store import allocations, audit, feed, nodes
from armillary.store.database import Database

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def at(self, seconds: float) -> dt.datetime:
        self.now = T0 + dt.timedelta(seconds=seconds)
        return self.now


async def _node(db: Database, name: str, *, at: dt.datetime) -> None:
    async with db.write() as conn:
        await nodes.register(
            conn,
            name=name,
            address="127.0.0.1",
            labels={},
            capacity={"cpu_millicores": 1000, "memory_mb": 1024},
            now=at,
        )


def _allocation(id: str, node: str, *, run: str | None) -> allocations.Allocation:
    return allocations.Allocation(
        id=id,
        tenant="acme",
        component="job" if run else "web",
        replica=0,
        node=node,
        spec_hash="h",
        spec={},
        report={"id": id, "state": "running"},
        created_at=T0,
        reported_at=T0,
        schedule_run=run,
    )


async def _beat(db: Database, name: str, *, at: dt.datetime) -> list[str]:
    async with db.write() as conn:
        return await nodes.heartbeats(conn, [(name, {}, at)])


async def test_a_check_declares_the_silent_node_lost_in_one_write(store: Database) -> None:
    clock = Clock()
    for name in ("a", "b"):
        await _node(store, name, at=T0)
    async with store.write() as conn:
        await allocations.add(
            conn, [_allocation("r1", "a", run=None), _allocation("j1", "a", run="run-1")]
        )
    heard: list[feed.Change] = []
    store.feed.watch(heard.append)
    loss = NodeLoss(store, lost_after_s=6, start_grace_s=0, clock=clock)
    assert await loss.check() == []  # the watch starts: no node is judged before a window
    for second in range(1, 8):  # b beats every second, a never again
        await _beat(store, "b", at=clock.at(second))
        declared = await loss.check()
        assert declared == ([] if second <= 6 else ["a"]), second

    async with store.read() as conn:
        a, b = await nodes.require(conn, "a"), await nodes.require(conn, "b")
        entries = await audit.search(conn, audit.Filter(verb="lost", kind="Node"))
        run = await allocations.get(conn, "j1")
        replica = await allocations.get(conn, "r1")
    assert (a.status, b.status) == ("Lost", "Ready")
    assert [(e.entry.name, e.entry.principal) for e in entries] == [("a", "controller:node-loss")]
    assert entries[0].entry.detail["allocations"] == 2
    assert run is not None and run.report is not None
    assert (run.report["state"], run.report["reason"]) == ("failed", "NodeLost")
    assert replica is not None and replica.report == {"id": "r1", "state": "running"}
    assert any(c.kind == "Node" and c.name == "a" for c in heard)  # the tenants wake
    assert await loss.check() == []  # declared once

    # Heard again: Ready, announced, audited by the hub (here: the store's answer).
    heard.clear()
    assert await _beat(store, "a", at=clock.at(8)) == ["a"]
    assert await _beat(store, "a", at=clock.at(9)) == []
    async with store.read() as conn:
        assert (await nodes.require(conn, "a")).status == "Ready"
    assert any(c.kind == "Node" and c.name == "a" for c in heard)


async def test_a_server_that_starts_gives_every_node_a_grace_to_reconnect(
    store: Database,
) -> None:
    clock = Clock()
    for name in ("a", "b"):
        await _node(store, name, at=T0 - dt.timedelta(hours=1))  # before the server's start
    loss = NodeLoss(store, lost_after_s=2, start_grace_s=10, clock=clock)
    for tenth in range(0, 125, 5):  # b reconnects and beats; a does not come back
        clock.at(tenth / 10)
        if tenth >= 80:
            await _beat(store, "b", at=clock.now)
        assert await loss.check() == [], tenth
    clock.at(12.5)
    await _beat(store, "b", at=clock.now)
    assert await loss.check() == ["a"]


async def test_a_heartbeat_after_the_judged_one_wins(store: Database) -> None:
    await _node(store, "a", at=T0)
    async with store.read() as conn:
        [judged] = [s for s in await nodes.silent(conn) if s.name == "a"]
    await _beat(store, "a", at=T0 + dt.timedelta(seconds=7))
    async with store.write() as conn:
        marked = await nodes.mark_lost(
            conn, "a", silent_since=judged.heartbeat_at, now=T0 + dt.timedelta(seconds=7)
        )
    assert marked is None
    async with store.read() as conn:
        assert (await nodes.require(conn, "a")).lost_at is None


async def test_every_node_silent_at_once_is_none_lost(store: Database) -> None:
    clock = Clock()
    for name in ("a", "b"):
        await _node(store, name, at=T0)
    loss = NodeLoss(store, lost_after_s=2, start_grace_s=0, clock=clock)
    for tenth in range(0, 40, 4):
        clock.at(tenth / 10)
        assert await loss.check() == []
    assert loss.held_back == ("a", "b")


async def test_a_hello_finds_a_lost_node_again(store: Database) -> None:
    await _node(store, "a", at=T0)
    async with store.write() as conn:
        assert await nodes.mark_lost(conn, "a", silent_since=T0, now=T0) is not None
    await _node(store, "a", at=T0 + dt.timedelta(seconds=30))
    async with store.read() as conn:
        node = await nodes.require(conn, "a")
    assert (node.status, node.lost_at) == ("Ready", None)

"""The cluster as placement sees it, in memory: nodes, what each allocation takes,
and the scheduler's `NodeIndex`, kept current from the change feed.

`NodesRuntime` places replicas on every tenant step. Reading every node and every
allocation each time made a step cost as much as the fleet; the snapshot makes it
cost what changed since the last step. The store stays the truth: the feed only
says *which* rows to look at again (`Allocation` changes name the allocation, adds,
removes and reports alike; `Node` changes name the node: register, disconnect,
cordon, lost, found again), the callback marks them dirty, and `refresh(conn)`, at
the start of a step and inside its transaction, re-reads just those rows and
applies what it finds. A row that is gone is removed. `Assignments` changes (a
node's epoch moved) are not watched: an epoch moves only with Allocation changes of
its own, and the snapshot holds no epochs.

The snapshot is rebuilt from scratch (`load`) whenever it is in doubt:
- on first use, so it is built lazily, in the first step's transaction. The server
  marks the nodes it held disconnected at start (`nodes.disconnect_all`, which announces
  nothing) before it makes its runtime, so the first load sees that;
- when more rows are dirty than `REBUILD_FRACTION` of what it holds (and more than
  `REBUILD_MIN`): one full read is then cheaper than many small ones;
- after a refresh or load that failed, and after `invalidate()`.

A transaction may refresh after it has written (the schedule controller removes a
run's allocation before placing the next, in one transaction; a tenant step
removes replicas before it places their successors). What it wrote may yet be
rolled back, so the rows it wrote stay dirty, to be read by the next refresh
whether it commits or not. Its own refresh leaves them unread (a full load cannot,
and reads them as that transaction sees them, for that short while); `place`
counts them for that transaction's own placements only.

The feed carries the other server replicas' writes too (`store.listen`); when it may
have missed some it says `RESYNC`, and the snapshot is rebuilt. The index counts committed
allocations only; what a step places is counted once its transaction has committed
and the next refresh has read it, as when every step read the whole store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.runtime import scheduler
from armillary.store import allocations, feed, nodes

REBUILD_FRACTION = 0.25
REBUILD_MIN = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Content:
    """The snapshot's content in a comparable form: equal to `read(conn)` once refreshed."""

    nodes: dict[str, nodes.Target]
    allocations: dict[str, allocations.Share]
    index: scheduler.NodeIndex


async def read(conn: AsyncConnection) -> Content:
    """A fresh read of the whole store, in the form of `Snapshot.content()`."""
    targets = {t.name: t for t in await nodes.targets(conn)}
    shares = {s.id: s for s in await allocations.shares(conn)}
    index = scheduler.NodeIndex.build(
        (_info(t) for t in targets.values()), (_placed(s) for s in shares.values())
    )
    return Content(nodes=targets, allocations=shares, index=index)


class Snapshot:
    """Nodes and allocations in memory for placement, kept current from `changes`.
    Call `refresh(conn)` inside the transaction that is about to place; then
    `place` there, and read `addresses`."""

    def __init__(
        self,
        changes: feed.Feed,
        *,
        rebuild_fraction: float = REBUILD_FRACTION,
        rebuild_min: int = REBUILD_MIN,
    ) -> None:
        self._nodes: dict[str, nodes.Target] = {}
        self._addresses: dict[str, str] = {}
        self._states: dict[str, str] = {}  # nodes that are not plainly ready: "draining"
        self._allocations: dict[str, allocations.Share] = {}
        self._index = scheduler.NodeIndex.build([], [])
        self._dirty_nodes: set[str] = set()
        self._dirty_allocations: set[str] = set()
        self._stale = True  # nothing loaded yet
        # One refresh at a time: two interleaved could apply an older read of a row
        # over a newer one. A refresh only reads, so it never waits on a row lock.
        self._lock = asyncio.Lock()
        self._rebuild_fraction = rebuild_fraction
        self._rebuild_min = rebuild_min
        self.loads = 0  # full reads so far (what the tests watch)
        self.close: Callable[[], None] = changes.watch(self._heard)

    @property
    def index(self) -> scheduler.NodeIndex:
        """The scheduler's index as of the last refresh. `place` only reads it."""
        return self._index

    @property
    def addresses(self) -> Mapping[str, str]:
        """Node name → address, for URLs of replicas (kept, not built per call)."""
        return self._addresses

    @property
    def node_states(self) -> Mapping[str, str]:
        """Node name → `draining` for the nodes being drained (lost ones: `node_state`)."""
        return self._states

    def node_state(self, name: str) -> str:
        """Where a replica's node stands for `rollout.step`: "lost" when it was declared
        lost, "draining" while a drain is on, else "ready" (a node the snapshot does not
        know is judged by its rows' absence elsewhere, not here)."""
        target = self._nodes.get(name)
        if target is not None and target.lost:
            return "lost"
        return self._states.get(name, "ready")

    def content(self) -> Content:
        """A copy of what the snapshot holds, comparable with `read(conn)`."""
        index = self._index
        return Content(
            nodes=dict(self._nodes),
            allocations=dict(self._allocations),
            index=scheduler.NodeIndex(
                nodes=dict(index.nodes),
                eligible=list(index.eligible),
                free_cpu=dict(index.free_cpu),
                free_memory=dict(index.free_memory),
                replicas=dict(index.replicas),
                groups={g: dict(held) for g, held in index.groups.items()},
                by_room=list(index.by_room),
            ),
        )

    def invalidate(self) -> None:
        """Rebuild at the next refresh: something happened the feed did not tell."""
        self._stale = True

    async def load(self, conn: AsyncConnection) -> None:
        """Rebuild from the store. Rows changed while it reads stay dirty for the next
        refresh (a harmless second look)."""
        async with self._lock:
            await self._load(conn)

    async def refresh(self, conn: AsyncConnection) -> None:
        """Bring the snapshot up to date with the store, as seen by `conn`'s transaction."""
        async with self._lock:
            dirty = len(self._dirty_nodes) + len(self._dirty_allocations)
            held = len(self._nodes) + len(self._allocations)
            if self._stale or (dirty > self._rebuild_min and dirty > self._rebuild_fraction * held):
                await self._load(conn)
            elif dirty:
                await self._reread(conn)

    async def _load(self, conn: AsyncConnection) -> None:
        self._stale = True
        self._dirty_nodes.clear()
        self._dirty_allocations.clear()
        own = feed.pending(conn.info)
        try:
            fresh = await read(conn)
        finally:
            self._keep_dirty(own)
        self._nodes, self._allocations, self._index = fresh.nodes, fresh.allocations, fresh.index
        self._addresses = {name: t.address for name, t in fresh.nodes.items()}
        self._states = {name: "draining" for name, t in fresh.nodes.items() if t.draining}
        self._stale = False
        self.loads += 1

    async def _reread(self, conn: AsyncConnection) -> None:
        own_nodes, own_allocations = _named(feed.pending(conn.info))
        # Rows this transaction wrote itself are left dirty, unread: what it sees of
        # them is not committed yet (`place` counts them for its own placements).
        names = self._dirty_nodes - own_nodes
        ids = self._dirty_allocations - own_allocations
        self._dirty_nodes -= names
        self._dirty_allocations -= ids
        try:
            found = {t.name: t for t in await nodes.targets(conn, names)} if names else {}
            shares = {s.id: s for s in await allocations.shares(conn, ids)} if ids else {}
        except BaseException:
            self._stale = True  # what was dirty is forgotten: rebuild next time
            raise
        for name in names:
            self._apply_node(name, found.get(name))
        for allocation in ids:
            self._apply_allocation(allocation, shares.get(allocation))

    async def place(
        self,
        conn: AsyncConnection,
        demands: Sequence[scheduler.Demand],
        strategy: scheduler.Strategy,
    ) -> scheduler.Placement:
        """`scheduler.place` on the index as `conn`'s transaction sees it: the index as
        of the last refresh, with the allocations this transaction has itself added or
        removed so far (a step that removes a replica frees its room for the replica
        it creates, as a read of the store inside the transaction would show). Those
        are counted only for the call, so no other step ever sees them uncommitted."""
        _, own = _named(feed.pending(conn.info))
        mine = {s.id: s for s in await allocations.shares(conn, own)} if own else {}
        moves = [(self._allocations.get(i), mine.get(i)) for i in sorted(own)]
        # No await from here on: the index holds this transaction's view only inside.
        for before, after in moves:
            self._move(before, after)
        try:
            return scheduler.place(self._index, demands, strategy)
        finally:
            for before, after in reversed(moves):
                self._move(after, before)

    def _apply_node(self, name: str, target: nodes.Target | None) -> None:
        if target is None:
            if self._nodes.pop(name, None) is not None:
                del self._addresses[name]
                self._states.pop(name, None)
                self._index.drop_node(name)
            return
        if self._nodes.get(name) != target:
            self._nodes[name] = target
            self._addresses[name] = target.address
            if target.draining:
                self._states[name] = "draining"
            else:
                self._states.pop(name, None)
            self._index.put_node(_info(target))

    def _apply_allocation(self, allocation: str, share: allocations.Share | None) -> None:
        old = self._allocations.get(allocation)
        if old == share:
            return
        self._move(old, share)
        if share is None:
            del self._allocations[allocation]
        else:
            self._allocations[allocation] = share

    def _move(self, old: allocations.Share | None, new: allocations.Share | None) -> None:
        """Count `new` in the index in place of `old` (either may be None)."""
        if old == new:
            return
        if old is not None:
            self._index.remove(_placed(old))
        if new is not None:
            self._index.add(_placed(new))

    def _heard(self, change: feed.Change) -> None:
        if change.kind == "Allocation" and not change.report:  # a report moves nothing
            self._dirty_allocations.add(change.name)
        elif change.kind == "Node":
            self._dirty_nodes.add(change.name)
        elif change.kind == feed.RESYNC:  # changes of other replicas may have been missed
            self.invalidate()

    def _keep_dirty(self, changes: list[feed.Change]) -> None:
        """Rows the reading transaction wrote itself: read them again next time."""
        for change in changes:
            self._heard(change)


def _named(changes: list[feed.Change]) -> tuple[set[str], set[str]]:
    """The node names and allocation ids among `changes`."""
    names = {c.name for c in changes if c.kind == "Node"}
    ids = {c.name for c in changes if c.kind == "Allocation" and not c.report}
    return names, ids


def _info(target: nodes.Target) -> scheduler.NodeInfo:
    return scheduler.NodeInfo(
        name=target.name,
        cpu_millicores=target.cpu_millicores,
        memory_mb=target.memory_mb,
        labels=target.labels,
        ready=target.connected,
        schedulable=target.schedulable,
        lost=target.lost,
    )


def _placed(share: allocations.Share) -> scheduler.Placed:
    return scheduler.Placed(
        node=share.node,
        group=f"{share.tenant}/{share.component}",
        cpu_millicores=share.cpu_millicores,
        memory_mb=share.memory_mb,
    )

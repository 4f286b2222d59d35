"""The drain controller: says when a draining node is empty, and enforces deadlines.

A drain (`store.nodes.drain`) cordons a node; the tenant controller, woken by the
node's change, moves its service replicas away within their rollout budgets
(`runtime.rollout.step`), and jobs are left to finish where they run. This loop
watches what is left on each draining node and decides (`decide`, pure, the clock
passed in):

- nothing runs there any more (no allocation, or only finished jobs, which hold no
  process) → the node is marked drained (`nodes` shows `Drained`);
- the deadline has passed → whatever still runs there is stopped: its allocation is
  removed, so a tenant's replica or job is placed again on another node by the
  tenant controller, and a schedule's run ends as failed (`AllocationLost`). The
  node is found empty at the next look.

It wakes on the feed (a change of a draining node or of an allocation on it) and at
least every `interval_s` and at the nearest deadline. The drain's state lives in the
store, so a restarted server carries on where it was. It acts on what it reads in
one write transaction at a time, so running it twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from armillary.store import allocations, nodes
from armillary.store.database import Database, Tx
from armillary.store.feed import Change

log = logging.getLogger("armillary.control.drains")

INTERVAL_S = 1.0
FINISHED = ("succeeded", "failed")  # a job in these holds no process


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """An allocation on a draining node, as the decision needs it."""

    id: str
    job: bool
    state: str | None  # the node's last report; None before the first


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    drained: bool = False  # mark the node drained now
    stop: tuple[str, ...] = ()  # allocation ids to remove now: the deadline has passed
    recheck_s: float | None = None  # look again by then at the latest (the deadline)


def decide(held: Sequence[Held], *, deadline_at: dt.datetime | None, now: dt.datetime) -> Decision:
    """What to do about one draining node holding `held`."""
    left = [h for h in held if not (h.job and h.state in FINISHED)]
    if not left:
        return Decision(drained=True)
    if deadline_at is not None and now >= deadline_at:
        return Decision(stop=tuple(h.id for h in left))
    if deadline_at is None:
        return Decision()
    return Decision(recheck_s=(deadline_at - now).total_seconds())


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Drains:
    """The loop around `decide` for every draining node; `run()` until cancelled."""

    name = "drains"

    def __init__(
        self,
        db: Database,
        *,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._db = db
        self._interval_s = interval_s
        self._clock = clock
        self._wake = asyncio.Event()
        self._draining: set[str] = set()  # as of the last look

    def _heard(self, change: Change) -> None:
        if change.kind == "Node" or (change.kind == "Allocation" and change.node in self._draining):
            self._wake.set()

    async def run(self) -> None:
        stop_watching = self._db.feed.watch(self._heard)
        try:
            while True:
                self._wake.clear()
                try:
                    wait_s = await self.check()
                except Exception:  # a loop boundary: logged, and tried again next time
                    log.exception("checking draining nodes failed")
                    wait_s = self._interval_s
                with contextlib.suppress(TimeoutError):  # a look at least every wait_s
                    await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
        finally:
            stop_watching()

    async def check(self) -> float:
        """Look at every draining node once and act; returns how long until the next
        look at the latest."""
        now = self._clock()
        async with self._db.read() as conn:
            found = await nodes.draining(conn)
        self._draining = {n.name for n in found}
        wait_s = self._interval_s
        for node in found:
            decision = await self._settle(node.name, now=now)
            if decision.recheck_s is not None:
                wait_s = min(wait_s, max(decision.recheck_s, 0.0))
        return wait_s

    async def _settle(self, name: str, *, now: dt.datetime) -> Decision:
        """Decide on what the node holds; act, if there is something to do, on a
        second decision inside the write transaction (most looks change nothing, and
        never queue for the write lock)."""
        async with self._db.read() as conn:
            decision = await _decide(conn, name, now=now)
        if not decision.drained and not decision.stop:
            return decision
        async with self._db.write() as conn:
            decision = await _decide(conn, name, now=now)
            if decision.drained:
                await nodes.mark_drained(conn, name, now=now)
            if decision.stop:
                held = await allocations.by_ids(conn, name, decision.stop)
                await allocations.remove(conn, held)
        if decision.drained:
            log.info("node %s drained", name)
        if decision.stop:
            log.warning(
                "node %s: drain deadline passed; stopped %d allocation(s) still there",
                name,
                len(decision.stop),
            )
        return decision


async def _decide(conn: Tx, name: str, *, now: dt.datetime) -> Decision:
    node = await nodes.get(conn, name)
    if node is None or node.drain != "draining":
        return Decision()  # uncordoned (or gone) meanwhile
    held = await allocations.for_node(conn, name)
    return decide([_held(a) for a in held], deadline_at=node.drain_deadline_at, now=now)


def _held(allocation: allocations.Allocation) -> Held:
    return Held(
        id=allocation.id,
        job=allocation.spec.get("type") == "job",
        state=(allocation.report or {}).get("state"),
    )

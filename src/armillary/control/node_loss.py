"""The node-loss controller: declares silent nodes lost, so their replicas move.

`NodeLoss.run()` checks every `check_s` (a fraction of `lost_after_s`): it reads the
nodes not yet lost with their last heartbeat (one small query), asks
`liveness.judge` which have been silent longer than `lost_after_s`, and declares
those lost in one write transaction: `nodes.lost_at` set (conditional on the
heartbeat it judged, so a beat that landed meanwhile wins), the change announced on
the feed (which brings back the tenants with replicas there: `rollout.step` replaces
or holds them per `on_node_lost`; and placement stops taking the node), one audit
entry per node (verb `lost`, what `armillary audit` shows as the node's event), and
each schedule run placed there reported failed (`NodeLost`), so the schedule
controller records it and may fire the next. Loss is judged by heartbeat age, not
by the WebSocket: a stopped machine's socket stays open.

A node comes back by itself: its next hello or heartbeat clears `lost_at` (the hub),
and it is Ready again. Fencing is the assignments' job: a replaced replica's
allocation is gone, so the node's set no longer holds it and the node stops it; its
reports about allocations that are not its own are ignored by the store.

A server that starts gives every node its window plus `START_GRACE_S` (daemons
reconnect on their own schedule), so a server restart alone declares no node lost.
One server runs this loop for now (started by the app's lifespan); it keeps no state
a successor would need beyond when it started watching.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from armillary import protocol, timestamps
from armillary.control import liveness
from armillary.store import allocations, audit, nodes
from armillary.store.database import Database, Tx

log = logging.getLogger("armillary.node_loss")

CHECK_MAX_S = 0.5
"""The longest pause between two checks; shorter for a short `lost_after_s`."""
START_GRACE_S = 10.0
"""What a server that starts adds to every node's window: its daemons reconnect on
their own schedule (retries up to every 5 s, jittered ×1.5), and a node still
waiting for its next attempt is not silent."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NodeLoss:
    """Marks nodes lost once they have been silent for `lost_after_s`."""

    name = "node-loss"

    def __init__(
        self,
        db: Database,
        *,
        lost_after_s: float,
        start_grace_s: float = START_GRACE_S,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._db = db
        self.lost_after_s = lost_after_s
        self.start_grace_s = start_grace_s
        self.check_s = min(CHECK_MAX_S, lost_after_s / 4)
        self._clock = clock
        self._watching_since: dt.datetime | None = None
        self._previous_check: dt.datetime | None = None
        self.held_back: tuple[str, ...] = ()  # what the last check held back (all silent)

    async def run(self) -> None:
        """Check every `check_s` until cancelled; a failed check is logged and retried."""
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("checking for lost nodes failed; trying again")
            await asyncio.sleep(self.check_s)

    async def check(self) -> list[str]:
        """One check: the names of the nodes it declared lost."""
        now = self._clock()
        if self._watching_since is None:  # the first check: every node gets its grace
            since = now + dt.timedelta(seconds=self.start_grace_s)
        else:
            since = liveness.watching_from(
                self._watching_since,
                previous_check=self._previous_check,
                now=now,
                lost_after_s=self.lost_after_s,
            )
        self._watching_since, self._previous_check = since, now
        async with self._db.read() as conn:
            silent = await nodes.silent(conn)
        heard = [
            liveness.Heard(
                name=s.name,
                heartbeat_at=timestamps.utc(s.heartbeat_at) if s.heartbeat_at else None,
            )
            for s in silent
        ]
        verdict = liveness.judge(
            heard, now=now, lost_after_s=self.lost_after_s, watching_since=since
        )
        if verdict.held_back != self.held_back and verdict.held_back:
            log.warning(
                "every node (%s) is silent at once; none is declared lost: the fault is "
                "likelier this server's (its network, clock or store)",
                ", ".join(verdict.held_back),
            )
        self.held_back = verdict.held_back
        if not verdict.lost:
            return []
        beats = {s.name: s.heartbeat_at for s in silent}
        declared: list[str] = []
        async with self._db.write() as conn:
            for name in verdict.lost:
                node = await nodes.mark_lost(conn, name, silent_since=beats[name], now=now)
                if node is not None:
                    await _declared(
                        conn, node, now=now, silent_s=_silent_s(heard, name, now, since)
                    )
                    declared.append(name)
        for name in declared:
            log.warning("node %s is lost: silent for more than %gs", name, self.lost_after_s)
        return declared


def _silent_s(
    heard: list[liveness.Heard], name: str, now: dt.datetime, since: dt.datetime
) -> float:
    node = next(h for h in heard if h.name == name)
    return round(liveness.silent_s(node, now=now, since=since), 3)


async def _declared(conn: Tx, node: nodes.Node, *, now: dt.datetime, silent_s: float) -> None:
    """What declaring `node` lost writes beside its row: the audit entry, and a failed
    report for each schedule run placed there."""
    held = await allocations.for_node(conn, node.name)
    runs = [a for a in held if a.schedule_run is not None]
    await audit.record(
        conn,
        audit.Entry(
            at=now,
            verb="lost",
            outcome="ok",
            principal="controller:node-loss",
            principal_kind="controller",
            kind="Node",
            name=node.name,
            detail={
                "silent_s": silent_s,
                "heartbeat_at": timestamps.iso_or_none(node.heartbeat_at),
                "epoch": node.epoch,
                "allocations": len(held),
            },
        ),
    )
    reports = [
        protocol.encode(
            protocol.ReplicaReport(
                id=a.id,
                state="failed",
                reason="NodeLost",
                message=f"node {node.name} was declared lost (silent for {silent_s:g}s)",
            )
        )
        for a in runs
        if (a.report or {}).get("state") not in ("succeeded", "failed")
    ]
    if reports:
        await allocations.record_reports(conn, node.name, reports, now=now)

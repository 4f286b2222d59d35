"""The supervisor's record of one held allocation: its spec, its process, its counters.

Mutable on purpose and private to the node daemon: only `node.supervisor` writes it,
always from the event loop. Everything crossing a boundary is derived from it as a
value: `report()` for the server, `entry()` for the state file.

Invariant: `proc` is set exactly while a process of this allocation is watched; a
record with `proc` None has no process (it is pending, waiting out a backoff, or done).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from armillary.node import process, statefile
from armillary.node.procfs import Identity
from armillary.protocol import AllocationSpec, ReplicaReport, ReplicaState


@dataclass(slots=True, kw_only=True)
class Proc:
    """One running process of a replica."""

    identity: Identity
    watch: process.Watch
    started_mono: float  # loop time it started (derived from started_at when adopted)
    timed_out: bool = False
    exited: asyncio.Future[None] | None = None  # set while someone waits for the exit
    timer: asyncio.TimerHandle | None = None  # a job's timeout


@dataclass(slots=True, kw_only=True)
class Replica:
    """One held allocation."""

    spec: AllocationSpec
    ports: dict[str, int] = field(default_factory=dict)  # resolved: a spec port of 0 is picked here
    state: ReplicaState = "pending"
    proc: Proc | None = None
    spawned: bool = False  # a process was started at least once (restarts count after)
    restarts: int = 0
    consecutive: int = 0
    exit_code: int | None = None
    healthy: bool | None = None
    reason: str | None = None
    message: str | None = None
    started_at: float | None = None  # unix time the current process started
    stopping: bool = False
    restart_timer: asyncio.TimerHandle | None = None
    health_task: asyncio.Task[None] | None = None
    _report: ReplicaReport | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    def changed(self) -> None:
        """Forget the cached report: some field moved."""
        self._report = None

    def report(self) -> ReplicaReport:
        if self._report is None:
            self._report = ReplicaReport(
                id=self.spec.id,
                state=self.state,
                pid=self.proc.identity.pid if self.proc is not None else None,
                exit_code=self.exit_code,
                restarts=self.restarts,
                healthy=self.healthy,
                reason=self.reason,
                message=self.message,
                started_at=self.started_at if self.proc is not None else None,
                ports=dict(self.ports),
            )
        return self._report

    def entry(self) -> statefile.Entry:
        return statefile.Entry(
            spec=self.spec,
            report=self.report(),
            process=self.proc.identity if self.proc is not None else None,
            consecutive=self.consecutive,
            restart_pending=self.restart_timer is not None,
            spawned=self.spawned,
        )

    def cancel_activity(self) -> None:
        """Cancel the health task and any pending restart or timeout (not the process)."""
        if self.health_task is not None:
            self.health_task.cancel()
            self.health_task = None
        if self.restart_timer is not None:
            self.restart_timer.cancel()
            self.restart_timer = None
        if self.proc is not None and self.proc.timer is not None:
            self.proc.timer.cancel()
            self.proc.timer = None

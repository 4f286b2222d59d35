"""The leader's work: tasks that run on exactly one server replica at a time.

Every replica serves the API, webhooks and node sessions; the controllers (tenants,
schedules, retention, and whatever else must not run twice) are *leader tasks*:
`Leadership` starts them when this replica wins the election (`store.leader`) and
cancels them the moment it loses it (its lock's connection failed a check) or stops.
A leader task is a name and a factory of the coroutine to run: a fresh one each term,
so nothing of a previous term's queue carries over (a new term resyncs everything).

`start()` tries once, at server start: the first replica (and the sole server of a
SQLite store) leads before it serves its first request. `run()` then keeps or waits
for the lead until cancelled; a clean stop releases the lock at once, so a follower
takes over within its poll interval. `background` is the live dict of what runs
here (the app's `state.background`): leader tasks appear and go with the lead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from armillary import metrics
from armillary.store.leader import Election

log = logging.getLogger("armillary.api")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderTask:
    """A loop only the leader runs: `make()` returns a fresh coroutine each term."""

    name: str
    make: Callable[[], Coroutine[Any, Any, None]]


class Leadership:
    def __init__(
        self,
        election: Election,
        tasks: list[LeaderTask],
        *,
        background: dict[str, asyncio.Task[None]],
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._election = election
        self._tasks = tasks
        self._background = background
        self._on_change = on_change
        self._running: list[asyncio.Task[None]] = []
        self.leader = False
        self.since: float | None = None  # time.monotonic() when this term began

    def add(self, task: LeaderTask) -> None:
        """One more leader task (before `start`)."""
        self._tasks.append(task)

    async def start(self) -> None:
        """Try for the lead once, now; lead at once if won."""
        if await self._election.try_acquire():
            self._begin()

    async def run(self) -> None:
        """Keep the lead, or wait for it, until cancelled; give it back when cancelled."""
        try:
            while True:
                if not self.leader:
                    await self._election.acquire()
                    self._begin()
                await self._election.hold()  # returns once the lead is lost
                await self._end()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop the leader tasks and give the lead back at once (a clean stop); also
        when `run` was cancelled before it ever ran. Idempotent."""
        await self._end()
        await self._election.release()

    def _begin(self) -> None:
        self.leader = True
        self.since = time.monotonic()
        metrics.LEADER.set(1)
        log.warning("this server leads: starting %s", ", ".join(t.name for t in self._tasks))
        for task in self._tasks:
            running = asyncio.create_task(task.make(), name=task.name)
            self._running.append(running)
            self._background[task.name] = running
        if self._on_change is not None:
            self._on_change(True)

    async def _end(self) -> None:
        if not self.leader:
            return
        self.leader = False
        self.since = None
        metrics.LEADER.set(0)
        running, self._running = self._running, []
        for task in running:
            task.cancel()
            if self._background.get(task.get_name()) is task:
                del self._background[task.get_name()]
        await asyncio.gather(*running, return_exceptions=True)
        log.warning("this server no longer leads: its leader tasks stopped")
        if self._on_change is not None:
            self._on_change(False)

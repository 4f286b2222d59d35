"""Runs one controller: feeds its queue, serialises work per key, retries failures.

Keys arrive from the store's change feed (mapped by the controller's `keys_for`; the
driver watches specs only, so the statuses controllers write bring no key back) and
from a resync of every key (`all_keys`): all at once when the driver starts, then
every `resync_s` (5 minutes), spread evenly over that period, so a missed event only
delays convergence. The feed itself loses nothing, so the resync is a safety net,
not a heartbeat: at 5,000 tenants, all of them every 30 s at once was 166 reconciles
a second of nothing to do, in bursts. Workers call `reconcile(key)`; a `Result` with
`requeue_after_s` brings the key back later. What a failure asks for follows `errors.py`:

- a `TemporaryError` is retried after the delay it names;
- a `PermanentError` is terminal: the controller writes a condition saying why
  (`give_up`), and the key is not retried, not even by the resync, until an event
  names it again (its next change);
- any other exception is logged with the key and retried with capped exponential
  backoff.

The clock and the sleep between resyncs are injected, so tests drive time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from armillary import metrics
from armillary.control.queue import WorkQueue
from armillary.errors import PermanentError, TemporaryError
from armillary.store.feed import RESYNC, Change, Feed

log = logging.getLogger("armillary.control")

BACKOFF_FIRST_S = 0.1
RESYNC_S = 300.0
REPORT_GATHER_S = 0.05
"""How long a key a replica's report brings back waits, so that the reports of its
other replicas (which come in bursts: a tenant's replicas start together) are read by
one reconcile, not one each."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    requeue_after_s: float | None = None


class Controller(Protocol):
    name: str

    async def reconcile(self, key: str) -> Result: ...

    async def keys_for(self, event: Change) -> set[str]: ...

    async def all_keys(self) -> set[str]: ...

    async def give_up(self, key: str, reason: str) -> None:
        """Write, where the key's status is read, that its reconcile failed for good
        and why (a `PermanentError`); nothing retries it until it changes."""
        ...


class Driver:
    def __init__(
        self,
        controller: Controller,
        feed: Feed,
        *,
        workers: int = 4,
        resync_s: float = RESYNC_S,
        backoff_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.controller = controller
        self.queue = WorkQueue(clock=clock, name=controller.name)
        name = controller.name
        self._reconcile_time = metrics.RECONCILE_TIME.labels(name)
        self._results = {
            result: metrics.RECONCILES.labels(name, result)
            for result in ("success", "requeue_after", "error")
        }
        self._errors = metrics.RECONCILE_ERRORS.labels(name)
        self._retries = metrics.WORKQUEUE_RETRIES.labels(name)
        self._work_time = metrics.WORKQUEUE_WORK_DURATION.labels(name)
        self._feed = feed
        self._workers = workers
        self._resync_s = resync_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._failures: dict[str, int] = {}
        self.stopped: dict[str, str] = {}
        """Keys whose reconcile failed for good, and why: left alone until they change."""

    async def run(self) -> None:
        """Run until cancelled."""
        events = self._feed.subscribe()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._listen(events))
                group.create_task(self._resync())
                for _ in range(self._workers):
                    group.create_task(self._work())
        finally:
            self._feed.unsubscribe(events)

    async def changed(self, event: Change) -> None:
        """Queue the keys `event` concerns; a key stopped by a permanent failure starts
        again, since it (or something it uses) changed. A `RESYNC` (changes may have
        been missed) queues every key."""
        if event.kind == RESYNC:
            await self.resync()
            return
        delay_s = REPORT_GATHER_S if event.report else 0.0
        for key in await self.controller.keys_for(event):
            self.stopped.pop(key, None)
            self.queue.add_after(key, delay_s)

    async def resync(self, *, spread_s: float = 0.0) -> None:
        """Queue every key, except those stopped by a permanent failure: now, or due
        at even steps over the next `spread_s` seconds (in key order)."""
        keys = sorted(k for k in await self.controller.all_keys() if k not in self.stopped)
        step_s = spread_s / len(keys) if keys else 0.0
        for i, key in enumerate(keys):
            self.queue.add_after(key, i * step_s)

    async def process(self, key: str) -> None:
        """Reconcile `key` once and act on the outcome: requeue, back off, or stop."""
        began = time.perf_counter()
        try:
            result = await self.controller.reconcile(key)
        except PermanentError as exc:
            self._reconciled(began, "error")
            await self._stop(key, exc)
        except Exception as exc:
            self._reconciled(began, "error")
            self._retry(key, exc)
        else:
            self._reconciled(
                began, "success" if result.requeue_after_s is None else "requeue_after"
            )
            self._failures.pop(key, None)
            self.stopped.pop(key, None)
            if result.requeue_after_s is not None:
                self.queue.add_after(key, result.requeue_after_s)

    def _reconciled(self, began: float, result: str) -> None:
        self._reconcile_time.observe(time.perf_counter() - began)
        self._results[result].inc()
        if result == "error":
            self._errors.inc()

    async def _listen(self, events: asyncio.Queue[Change]) -> None:
        while True:
            event = await events.get()
            try:
                await self.changed(event)
            except Exception:
                log.exception("%s: mapping %s failed", self.controller.name, event)

    async def _resync(self) -> None:
        spread_s = 0.0  # the first: every key now (a server that starts converges all)
        while True:
            try:
                await self.resync(spread_s=spread_s)
            except Exception:
                log.exception("%s: resync failed", self.controller.name)
            await self._sleep(self._resync_s)
            spread_s = self._resync_s

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            began = time.perf_counter()
            try:
                await self.process(key)
            finally:
                self.queue.done(key)
                self._work_time.observe(time.perf_counter() - began)

    async def _stop(self, key: str, exc: PermanentError) -> None:
        reason = str(exc) or type(exc).__name__
        log.error("%s: reconcile %r failed for good: %s", self.controller.name, key, reason)
        try:
            await self.controller.give_up(key, reason)
        except Exception as failure:  # the condition is not written: try the key again
            self._retry(key, failure)
            return
        self._failures.pop(key, None)
        self.stopped[key] = reason

    def _retry(self, key: str, exc: Exception) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        self._retries.inc()
        delay = exc.delay_s if isinstance(exc, TemporaryError) else self._delay(failures)
        log.warning(
            "%s: reconcile %r failed (attempt %d, retry in %.1fs): %s",
            self.controller.name,
            key,
            failures,
            delay,
            exc,
            exc_info=not isinstance(exc, TemporaryError),
        )
        self.queue.add_after(key, delay)

    def _delay(self, failures: int) -> float:
        return float(min(self._backoff_max_s, BACKOFF_FIRST_S * 2 ** (failures - 1)))

"""Runs one controller: feeds its queue, serialises work per key, retries failures.

Keys arrive from the store's change feed (mapped by the controller's `keys_for`)
and from a periodic resync of every key (`all_keys`), so a missed event only
delays convergence. Workers call `reconcile(key)`; a `Result` with
`requeue_after_s` brings the key back later; an exception is logged with the key
and retried with capped exponential backoff (a `TemporaryError` says how long).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from armillary.control.queue import WorkQueue
from armillary.errors import TemporaryError
from armillary.store.feed import Change, Feed

log = logging.getLogger("armillary.control")


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    requeue_after_s: float | None = None


class Controller(Protocol):
    name: str

    async def reconcile(self, key: str) -> Result: ...

    async def keys_for(self, event: Change) -> set[str]: ...

    async def all_keys(self) -> set[str]: ...


class Driver:
    def __init__(
        self,
        controller: Controller,
        feed: Feed,
        *,
        workers: int = 4,
        resync_s: float = 30.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.controller = controller
        self.queue = WorkQueue()
        self._feed = feed
        self._workers = workers
        self._resync_s = resync_s
        self._backoff_max_s = backoff_max_s
        self._failures: dict[str, int] = {}

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

    async def _listen(self, events: asyncio.Queue[Change]) -> None:
        while True:
            event = await events.get()
            try:
                for key in await self.controller.keys_for(event):
                    self.queue.add(key)
            except Exception:
                log.exception("%s: mapping %s failed", self.controller.name, event)

    async def _resync(self) -> None:
        while True:
            try:
                for key in await self.controller.all_keys():
                    self.queue.add(key)
            except Exception:
                log.exception("%s: resync failed", self.controller.name)
            await asyncio.sleep(self._resync_s)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                result = await self.controller.reconcile(key)
            except Exception as exc:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
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
            else:
                self._failures.pop(key, None)
                if result.requeue_after_s is not None:
                    self.queue.add_after(key, result.requeue_after_s)
            finally:
                self.queue.done(key)

    def _delay(self, failures: int) -> float:
        return float(min(self._backoff_max_s, 0.1 * 2 ** (failures - 1)))

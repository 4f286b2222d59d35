"""A de-duplicating work queue of keys, with delays: the controller driver's inbox.

A key is in the queue at most once; a key being processed is never handed to a
second worker — if it is added meanwhile it is marked dirty and queued again when
the first worker calls `done`. `add_after` schedules a key for later (requeue and
backoff); an earlier immediate `add` wins over a pending delay. The clock is
injected so tests can drive time.

With a `name`, the queue counts itself in controller-runtime's terms
(`armillary_workqueue_depth`: keys due now; `armillary_workqueue_adds_total`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import deque
from collections.abc import Callable

from armillary import metrics


class WorkQueue:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, name: str = "") -> None:
        self._clock = clock
        self._depth = metrics.WORKQUEUE_DEPTH.labels(name or "unnamed")
        self._adds = metrics.WORKQUEUE_ADDS.labels(name or "unnamed")
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, str]] = []
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._ready)

    def ready(self) -> list[str]:
        """The keys due now, in the order they will be handed out."""
        self._promote()
        return list(self._ready)

    def delayed(self) -> dict[str, float]:
        """The keys queued for later, and when (by the queue's clock) each is due."""
        due: dict[str, float] = {}
        for at, key in sorted(self._delayed):
            due.setdefault(key, at)
        return due

    def add(self, key: str) -> None:
        """Queue `key` now (once, however often it is added)."""
        self._adds.inc()
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._depth.set(len(self._ready))
            self._wakeup.set()

    def add_after(self, key: str, delay_s: float) -> None:
        """Queue `key` once `delay_s` has passed."""
        if delay_s <= 0:
            self.add(key)
            return
        heapq.heappush(self._delayed, (self._clock() + delay_s, key))
        self._wakeup.set()

    async def get(self) -> str:
        """The next key to process; waits until one is due."""
        while True:
            self._promote()
            if self._ready:
                key = self._ready.popleft()
                self._depth.set(len(self._ready))
                self._queued.discard(key)
                self._processing.add(key)
                return key
            self._wakeup.clear()
            timeout = self._delayed[0][0] - self._clock() if self._delayed else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)

    def done(self, key: str) -> None:
        """Processing of `key` finished; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def _promote(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, key = heapq.heappop(self._delayed)
            self.add(key)

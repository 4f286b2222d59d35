"""The change feed: who changed what, announced after the transaction commits.

Repositories record a `Change` on the connection they write with (`record`);
`Database.write()` publishes the recorded changes once the commit succeeds, so a
subscriber never hears of a write that was rolled back. Subscribers (the controller
driver, the node hub) get their own queue and re-read state: a change only says
*where* to look, never what to believe. (Not to be confused with `store.events`:
the webhook events received from outside senders.)

In-process only: one server replica. Several replicas sharing Postgres will need
LISTEN/NOTIFY here; the subscribers do not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_KEY = "armillary.feed.events"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """Something of `kind` named `name` changed (`tenant` / `node` narrow it further)."""

    kind: str
    name: str
    tenant: str | None = None
    node: str | None = None


class Feed:
    """Fan-out of committed events to every subscriber's queue."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Change]] = []
        self._callbacks: list[Callable[[Change], None]] = []

    def watch(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback` with each event as it is published, before `publish` returns
        (so before the writer goes on); it must be quick and must not raise. Returns
        the function that stops it."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def subscribe(self) -> asyncio.Queue[Change]:
        queue: asyncio.Queue[Change] = asyncio.Queue()
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def publish(self, events: list[Change]) -> None:
        for callback in list(self._callbacks):
            for event in events:
                callback(event)
        for queue in self._queues:
            for event in events:
                queue.put_nowait(event)


def begin(info: dict[str, Any]) -> list[Change]:
    """Start collecting events for the transaction whose connection `info` this is."""
    events: list[Change] = []
    info[_KEY] = events
    return events


def end(info: dict[str, Any]) -> None:
    info.pop(_KEY, None)


def record(info: dict[str, Any], event: Change) -> None:
    """Note `event` for publication when the current transaction commits."""
    events = info.get(_KEY)
    if events is not None:
        events.append(event)

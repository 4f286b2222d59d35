"""The change feed: who changed what, announced after the transaction commits.

Repositories record an event on the connection they write with (`record`);
`Database.write()` publishes the recorded events once the commit succeeds, so a
subscriber never hears of a write that was rolled back. Subscribers (the controller
driver, the node hub) get their own queue and re-read state: an event only says
*where* to look, never what to believe.

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
class Event:
    """Something of `kind` named `name` changed (`tenant` / `node` narrow it further)."""

    kind: str
    name: str
    tenant: str | None = None
    node: str | None = None


class Feed:
    """Fan-out of committed events to every subscriber's queue."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Event]] = []
        self._callbacks: list[Callable[[Event], None]] = []

    def watch(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback` with each event as it is published, before `publish` returns
        (so before the writer goes on); it must be quick and must not raise. Returns
        the function that stops it."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def publish(self, events: list[Event]) -> None:
        for callback in list(self._callbacks):
            for event in events:
                callback(event)
        for queue in self._queues:
            for event in events:
                queue.put_nowait(event)


def begin(info: dict[str, Any]) -> list[Event]:
    """Start collecting events for the transaction whose connection `info` this is."""
    events: list[Event] = []
    info[_KEY] = events
    return events


def end(info: dict[str, Any]) -> None:
    info.pop(_KEY, None)


def record(info: dict[str, Any], event: Event) -> None:
    """Note `event` for publication when the current transaction commits."""
    events = info.get(_KEY)
    if events is not None:
        events.append(event)

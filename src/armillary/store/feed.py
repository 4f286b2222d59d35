"""The change feed: who changed what, announced after the transaction commits.

Repositories record a `Change` on the connection they write with (`record`);
`Database.write()` publishes the recorded changes once the commit succeeds, so a
subscriber never hears of a write that was rolled back. Subscribers (the controller
driver, the node hub) get their own queue and re-read state: a change only says
*where* to look, never what to believe. (Not to be confused with `store.events`:
the webhook events received from outside senders.)

Two topics: specs (anything users or the system change: specs, allocations, nodes,
revisions) and statuses (a controller's status write, `Change.status`). A subscriber
gets statuses only if it asks (`status=True`): a controller watching specs is never
woken by the status it has just written itself, which would re-queue the same key
for nothing. Whoever waits on what controllers report (a provisioning run waiting
for Ready) subscribes to both.

Across server replicas (Postgres): each write transaction also sends its changes with
NOTIFY (`store.notify`), and each replica's listener (`store.listen`) publishes the
changes of the others into its own feed, so subscribers do not change. When the
listener may have missed some (its connection dropped), it publishes one `RESYNC`
change: every subscriber re-lists what it watches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_KEY = "armillary.feed.events"
CREDENTIAL = "Credential"
"""The kind of a change that may end credentials: a key revoked, a tenant's tokens
revoked, a user changed or removed, a session closed. Its `name` says which one
(`token:<id>`, `tenant:<name>`, `user:<name>`, `session`); open streams re-check
their caller when they hear it (`api.security.until_refused`)."""


RESYNC = "Resync"
"""The kind of a change that stands for every change: changes may have been missed
(the listener of another replica's changes reconnected), so whoever watches re-reads
all it cares about (controllers resync every key; the node hub pushes each connected
node its whole set)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """Something of `kind` named `name` changed (`tenant` / `node` narrow it further;
    `run` marks the allocation of a schedule run, so a controller of runs need not
    look up every replica's report; `report` marks a change of an allocation's report
    alone, which neither its node's assignments nor placement care about). `status`
    marks a status write: only the resource's status changed."""

    kind: str
    name: str
    tenant: str | None = None
    node: str | None = None
    status: bool = False
    run: str | None = None  # an Allocation's: the schedule run it belongs to, if any
    report: bool = False  # an Allocation's report alone changed (not where or what it is)


class Feed:
    """Fan-out of committed events to every subscriber's queue."""

    def __init__(self) -> None:
        self._queues: dict[asyncio.Queue[Change], bool] = {}  # queue → wants statuses
        self._callbacks: list[tuple[Callable[[Change], None], bool]] = []

    def watch(
        self, callback: Callable[[Change], None], *, status: bool = False
    ) -> Callable[[], None]:
        """Call `callback` with each event as it is published, before `publish` returns
        (so before the writer goes on); it must be quick and must not raise. Status
        writes only with `status=True`. Returns the function that stops it."""
        entry = (callback, status)
        self._callbacks.append(entry)
        return lambda: self._callbacks.remove(entry) if entry in self._callbacks else None

    def subscribe(self, *, status: bool = False) -> asyncio.Queue[Change]:
        """A queue of every published event; of status writes too only with `status=True`."""
        queue: asyncio.Queue[Change] = asyncio.Queue()
        self._queues[queue] = status
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change]) -> None:
        self._queues.pop(queue, None)

    def publish(self, events: list[Change]) -> None:
        specs = [e for e in events if not e.status]
        for callback, status in list(self._callbacks):
            for event in events if status else specs:
                callback(event)
        for queue, status in self._queues.items():
            for event in events if status else specs:
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


def pending(info: dict[str, Any]) -> list[Change]:
    """What the current transaction on the connection `info` has recorded so far: its
    own writes, published if it commits, forgotten if it rolls back."""
    return list(info.get(_KEY, ()))

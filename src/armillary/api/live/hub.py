"""The live hub: one per server, between the change feed and every live socket.

It watches the feed (`Feed.watch`, statuses too) and notes, per source, which keys a
change may have touched (`sources.route`); its pump then waits a few milliseconds
for the rest of the burst and re-reads all noted keys in one read transaction, so a
burst costs one read whatever the number of subscribers. Each item read is compared
with the one it knew: a change gets the next number of this server's watch sequence
and goes to every subscription of its source that sees it (`frames.verdict`), as
text encoded once.

Cached sources (resources, replicas, nodes) keep their whole present state, listed
once when the first subscriber comes and kept up to date from then on: it is what a
new subscription gets as ADDED, with no read of its own. Their changes are also kept
in a bounded history (`history` changes) that a subscription may resume from. A
position is `EPOCH.SEQ`, EPOCH drawn at start: positions of another server, or of
this one before a restart, or older than the history, are `Expired` and the client
lists again. (Why a server-local sequence and not a global counter in the store:
docs/architecture.md, "Live updates".) Other sources (events, runs, rollouts) keep a
bounded record of the items they last sent (a hash each), to tell ADDED from
MODIFIED and to skip a re-read that changed nothing.

On a `RESYNC` (another replica's changes may have been missed) every cached source is
listed again and compared whole. Node heartbeats are not on the feed (one write per
beat batch for the whole fleet): while someone watches nodes, the hub reads the
nodes' stored usage every heartbeat interval (one read for all) and sends the beats
that are new; across replicas that is what makes them visible, as stored.

A subscriber is anything with `offer(text, counted=...)` that never blocks: the hub
never waits for a client (backpressure is the socket's: `socket.Client`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from armillary import timestamps
from armillary.api.live import frames, sources
from armillary.api.live.frames import Item, Spec
from armillary.store import feed, nodes
from armillary.store.database import Database

log = logging.getLogger("armillary.api.live")

GATHER_S = 0.005
"""How long the pump waits after the first change of a burst for the rest of it."""
SEEN_MAX = 10_000
"""Items an uncached source remembers, each as the hash of its text (to tell ADDED
from MODIFIED, and skip a re-read that changed nothing): an event's body or a run's
answer is never kept."""
RETRY_S = 1.0
YIELD_EVERY = 32


class Subscriber(Protocol):
    def offer(self, text: str, *, counted: bool = True) -> None:
        """Queue `text` to be sent; never blocks. `counted`: against the bound."""


@dataclass(eq=False, slots=True)
class Subscription:
    id: str
    spec: Spec
    client: Subscriber
    id_text: str = field(init=False)
    held: list[str] | None = field(default=None, init=False)
    """While its present state is being sent: the live changes that come meanwhile,
    sent after it (and its `SYNCED`)."""

    def __post_init__(self) -> None:
        self.id_text = frames.dumps(self.id)

    def send(self, text: str, *, counted: bool) -> None:
        if self.held is not None and counted:
            self.held.append(text)
        else:
            self.client.offer(text, counted=counted)


@dataclass(frozen=True, slots=True)
class Delta:
    seq: int
    source: str
    old: Item | None
    new: Item | None


def channel_of(source: str) -> str:
    return source.partition(":")[0]


class LiveHub:
    def __init__(
        self,
        db: Database,
        *,
        history: int = 10_000,
        heartbeat_s: float = 1.0,
        gather_s: float = GATHER_S,
    ) -> None:
        self._db = db
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self._history: deque[Delta] = deque()
        self._history_max = history
        self._forgotten = 0  # the newest sequence number no longer in the history
        self._caches: dict[str, dict[str, Item]] = {}
        self._since: dict[str, int] = {}  # a cached source's first sequence number
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._seen: dict[str, OrderedDict[str, int]] = {}  # key → hash of its last text
        self._subs: dict[str, set[Subscription]] = {}
        self._pending: dict[str, set[str]] = {}
        self._resync = False
        self._wake = asyncio.Event()
        self._gather_s = gather_s
        self._heartbeat_s = heartbeat_s
        self._beats: dict[str, dt.datetime | None] = {}
        self._stop: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.reads = 0  # re-reads made (for tests and metrics: one per burst)

    def start(self) -> None:
        self._stop = self._db.feed.watch(self._heard, status=True)
        self._tasks = [
            asyncio.create_task(self._pump(), name="live-pump"),
            asyncio.create_task(self._heartbeats(), name="live-heartbeats"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report)

    async def close(self) -> None:
        if self._stop is not None:
            self._stop()
        for task in [*self._tasks, *self._loading.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._loading.values(), return_exceptions=True)

    def position(self) -> str:
        return frames.position(self.epoch, self.seq)

    # --- the feed and the pump

    def _heard(self, change: feed.Change) -> None:
        if change.kind == feed.RESYNC:
            self._resync = True
            self._wake.set()
            return
        for source, key in sources.route(change):
            if source in self._caches or source in self._loading or self._subs.get(source):
                self._pending.setdefault(source, set()).add(key)
                self._wake.set()

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            if self._gather_s > 0:
                await asyncio.sleep(self._gather_s)
            self._wake.clear()
            resync, self._resync = self._resync, False
            ready = {s: k for s, k in self._pending.items() if s not in self._loading}
            for source in ready:
                del self._pending[source]
            if not ready and not resync:
                continue
            try:
                whole, found = await self._read(ready, resync=resync)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(
                    "live: re-reading %d source(s) failed; retrying", len(ready), exc_info=True
                )
                for source, keys in ready.items():
                    self._pending.setdefault(source, set()).update(keys)
                self._resync = self._resync or resync
                await asyncio.sleep(RETRY_S)
                self._wake.set()
                continue
            try:
                for source, items in whole.items():
                    if source in self._caches:
                        keys = set(self._caches[source]) | {i.key for i in items}
                        await self._apply(source, keys, items)
                for source, items in found.items():
                    await self._apply(source, ready[source], items)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad change never stops the pump for every client
                log.error("live: applying a change failed; it was skipped", exc_info=True)

    async def _read(
        self, ready: dict[str, set[str]], *, resync: bool
    ) -> tuple[dict[str, list[Item]], dict[str, list[Item]]]:
        whole: dict[str, list[Item]] = {}
        found: dict[str, list[Item]] = {}
        self.reads += 1
        async with self._db.read() as conn:
            if resync:
                for source in list(self._caches):
                    whole[source] = await sources.load_all(conn, source)
            for source, keys in ready.items():
                if source in self._caches or self._subs.get(source):
                    found[source] = await sources.load_some(self._db, conn, source, keys)
        return whole, found

    async def _apply(self, source: str, keys: set[str], items: list[Item]) -> None:
        """Compare what was read with what was known; emit what changed. Every
        `YIELD_EVERY` changes the writers get their turn: a burst of thousands is
        not queued whole before any of it is sent (a change is applied and fanned out
        at once, so a subscription made in between sees a consistent state)."""
        now = {i.key: i for i in items}
        emitted = 0
        cache = self._caches.get(source)
        if cache is not None:
            for key in sorted(keys):
                old, new = cache.get(key), now.get(key)
                if new is None:
                    if old is None:
                        continue
                    del cache[key]
                elif old is not None and old.text == new.text:
                    continue
                else:
                    cache[key] = new
                self._emit(source, old, new, keep=True)
                emitted += 1
                if emitted % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            return
        seen = self._seen.setdefault(source, OrderedDict())
        for new in items:
            digest = hash(new.text)
            before = seen.get(new.key)
            if before == digest:
                continue
            seen[new.key] = digest
            seen.move_to_end(new.key)
            if len(seen) > SEEN_MAX:
                seen.popitem(last=False)
            # What these channels filter on (tenant, source, kind) never changes for
            # an item: seen before, it was seen as it is now.
            self._emit(source, None if before is None else new, new, keep=False)
            emitted += 1
            if emitted % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _emit(self, source: str, old: Item | None, new: Item | None, *, keep: bool) -> None:
        self.seq += 1
        if keep:
            if len(self._history) >= self._history_max:
                self._forgotten = self._history.popleft().seq
            self._history.append(Delta(self.seq, source, old, new))
        subs = self._subs.get(source)
        if subs:
            self._fan_out(list(subs), source, old, new, self.position())

    @staticmethod
    def _fan_out(
        subs: list[Subscription],
        source: str,
        old: Item | None,
        new: Item | None,
        where: str,
        *,
        counted: bool = True,
    ) -> None:
        channel = channel_of(source)
        payloads: dict[int, str] = {}  # per item: at most two (old and new) per change
        for sub in subs:
            decided = frames.verdict(sub.spec, old, new)
            if decided is None:
                continue
            kind, thing = decided
            payload = payloads.get(id(thing))
            if payload is None:
                payload = payloads[id(thing)] = frames.payload_text(channel, source, thing, where)
            sub.send(frames.data_frame(channel, kind, sub.id_text, payload), counted=counted)

    # --- subscriptions

    async def subscribe(self, sub: Subscription, *, subscribed: str) -> None:
        """Put `sub` in place: `subscribed` (the confirmation's text) is offered first,
        then its present state or the changes since its position, then `SYNCED`;
        `frames.Error` (Expired) before anything is offered if it cannot resume."""
        spec = sub.spec
        cached = spec.channel in frames.CACHED
        if cached:
            for source in spec.sources:
                await self._ready(source)
        # The state to send is taken, and the subscription put in place, without
        # awaiting: the state and the changes that follow meet. The changes that come
        # while the state is sent (it yields every `YIELD_EVERY` frames, so a large
        # listing does not starve the loop) are held and sent after its SYNCED.
        start = self._resume_from(spec) if cached and spec.resume is not None else None
        sub.client.offer(subscribed, counted=False)
        at = self.position()
        state: list[Delta] = []
        if start is not None:
            state = [d for d in self._history if d.seq > start and d.source in spec.sources]
        elif cached:
            state = [
                Delta(self.seq, source, None, thing)
                for source in spec.sources
                for thing in self._caches[source].values()
            ]
        sub.held = []
        for source in spec.sources:
            self._subs.setdefault(source, set()).add(sub)
        try:
            for i, delta in enumerate(state, 1):
                where = frames.position(self.epoch, delta.seq)
                self._fan_out([sub], delta.source, delta.old, delta.new, where, counted=False)
                if i % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except BaseException:
            self.unsubscribe(sub)
            raise
        held, sub.held = sub.held, None
        synced = {"resourceVersion": at}
        sub.client.offer(frames.frame(spec.channel, "SYNCED", sub.id, synced), counted=False)
        for text in held:
            sub.client.offer(text)

    def unsubscribe(self, sub: Subscription) -> None:
        for source in sub.spec.sources:
            subs = self._subs.get(source)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[source]
                    if source not in self._caches:
                        self._seen.pop(source, None)
                        self._pending.pop(source, None)

    def _resume_from(self, spec: Spec) -> int:
        assert spec.resume is not None
        seq = frames.parse_position(spec.resume, self.epoch)
        oldest = max([self._forgotten, *(self._since[s] for s in spec.sources)])
        if seq is None or seq < oldest or seq > self.seq:
            raise frames.Error(
                "Expired",
                f"resourceVersion {spec.resume!r} is too old or of another server; "
                "list again and subscribe without it",
                field="payload.resourceVersion",
            )
        return seq

    async def _ready(self, source: str) -> None:
        if source in self._caches:
            return
        task = self._loading.get(source)
        if task is None:
            task = self._loading[source] = asyncio.create_task(self._load(source))
        await asyncio.shield(task)

    async def _load(self, source: str) -> None:
        try:
            async with self._db.read() as conn:
                items = await sources.load_all(conn, source)
            self._caches[source] = {i.key: i for i in items}
            self._since[source] = self.seq
        finally:
            self._loading.pop(source, None)
        if source in self._pending:
            self._wake.set()  # what changed while it was listed: re-read now

    # --- node heartbeats

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            subs = list(self._subs.get("nodes", ()))
            if not subs:
                self._beats.clear()
                continue
            try:
                async with self._db.read() as conn:
                    found = await nodes.list_all(conn)
            except Exception:
                log.warning("live: reading the nodes' heartbeats failed", exc_info=True)
                continue
            for node in found:
                if node.heartbeat_at is None or self._beats.get(node.name) == node.heartbeat_at:
                    continue
                self._beats[node.name] = node.heartbeat_at
                self._send_beat(subs, node)

    @staticmethod
    def _send_beat(subs: list[Subscription], node: nodes.Node) -> None:
        payload = frames.dumps(beat(node))
        probe = frames.item("nodes", node.name, None, {"name": node.name}, node.labels)
        for sub in subs:
            if frames.sees(sub.spec, probe):
                sub.send(
                    frames.data_frame("nodes", "heartbeat", sub.id_text, payload), counted=True
                )


def _report(task: asyncio.Task[None]) -> None:
    """A loop of the hub that ended otherwise than by being cancelled: say so."""
    if not task.cancelled() and task.exception() is not None:
        log.error("live: %s stopped", task.get_name(), exc_info=task.exception())


def beat(node: nodes.Node) -> dict[str, Any]:
    """A node's latest heartbeat as a `heartbeat` frame's payload."""
    usage = node.usage
    used, total = usage.get("memory_used_mb"), usage.get("memory_total_mb")
    memory = round(100.0 * used / total, 1) if used is not None and total else None
    return {
        "name": node.name,
        "cpu": usage.get("cpu_percent"),
        "memory": memory,
        "memoryUsedMb": used,
        "memoryTotalMb": total,
        "disk": usage.get("disk_used_percent"),
        "at": timestamps.iso_or_none(node.heartbeat_at),
    }

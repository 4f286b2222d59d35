"""Every `-w` of the CLI reads one mechanism: a subscription on the server's WebSocket
(`/api/v1/ws`, docs/api.md). This module turns the frames of one subscription into
what a command shows: first the whole state (`Update` with no `change`), then one
`Update` per change, with the state after it.

It does not open sockets: `Connect` opens one for a `Subscription` and yields its
frames (`subscribe.py` adapts `armillary.live_client`; the unit tests hand in lists of
frames), so the rules here are tested without a server:

- `resources` lists itself (ADDED for each object, then SYNCED) and every change
  carries a resourceVersion; after a dropped connection the subscription resumes from
  the last one seen, and when the server answers Expired (too old) it subscribes again
  without one and the new list is diffed against what was shown, as a Kubernetes
  reflector relists.
- on the other channels (replicas, nodes, events, runs, rollouts) the command lists
  over HTTP once the server says SYNCED (its subscription is in place: changes after
  that point wait in the socket), as docs/api.md advises, since `ps` shows Pending
  replicas no frame carries and events and runs have no present state on the socket;
  after a reconnect it lists again and diffs.
- a server error (Invalid, Forbidden, ...) ends the watch with that error, so the
  command prints it and exits with its code; a dropped connection is retried with a
  capped backoff, a bounded number of times in a row, each said on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from armillary.client import Unreachable
from armillary.errors import ArmillaryError, Forbidden, Invalid, Issue, Unauthorized

Doc = dict[str, Any]
Frame = Mapping[str, Any]
ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
CHANGES: frozenset[str] = frozenset({"ADDED", "MODIFIED", "DELETED"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    """What one `subscribe` frame asks for: a channel and its filters."""

    channel: str
    payload: Mapping[str, Any]


Connect = Callable[[Subscription], AsyncGenerator[Frame, None]]
"""Opens a socket, subscribes, and yields every frame of that subscription (its own
and the system `error` frame about it); raises `Dropped` (or simply ends) when the
connection is lost."""


class Dropped(Unreachable):
    """The connection ended (or the server dropped a watch that fell behind):
    reconnect; when it cannot be had again, the CLI's "unavailable" exit code 8."""


class Expired(Exception):
    """The resourceVersion a subscription resumed from is too old: list again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    type: ChangeType
    item: Doc


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """`items`: the state after `change`; `change` None for the first state (the list)."""

    items: tuple[Doc, ...]
    change: Change | None = None


Decode = Callable[[Frame, Mapping[str, Doc]], Change | None]
"""A data frame (and what is known, for frames that amend an item) → the change."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """One command's watch: what to subscribe to, how to tell items apart (`key`), how a
    frame becomes a change, how to list over HTTP (None: the channel lists itself, as
    `resources` does) and which items the command shows (`keep`, for filters the server
    does not apply)."""

    subscription: Subscription
    key: Callable[[Doc], str]
    decode: Decode
    relist: Callable[[], Awaitable[list[Doc]]] | None = None
    keep: Callable[[Doc], bool] = field(default=lambda _: True)
    forgets: bool = True
    """False for records (events, runs) the relist may leave out (`--limit`, retention)
    while they still exist: only new and changed ones count after a relist."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Waits between reconnects: doubling from `base_s` up to `cap_s`; after `attempts`
    failures in a row the watch gives up (with the last error)."""

    base_s: float = 0.2
    cap_s: float = 5.0
    attempts: int = 8

    def delay_s(self, failures: int) -> float | None:
        if failures > self.attempts:
            return None
        return float(min(self.cap_s, self.base_s * 2 ** (failures - 1)))


def error(payload: Mapping[str, Any]) -> ArmillaryError | Expired:
    """A system `error` frame's payload → the exception the CLI reports (Expired: list
    again; SlowConsumer, before the server closes a socket that fell behind: reconnect)."""
    code, message = str(payload.get("code")), str(payload.get("message") or "refused")
    where = payload.get("field")
    if code == "Expired":
        return Expired(message)
    if code == "SlowConsumer":
        return Dropped(f"the server found this watch too slow: {message}")
    if code == "Invalid":
        return Invalid([Issue(path=str(where or "subscribe"), message=message)])
    if code == "Forbidden":
        return Forbidden(message)
    if code == "Unauthorized":
        return Unauthorized(message)
    return ArmillaryError(f"{code}: {message}")


def differences(
    known: Mapping[str, Doc], listed: Mapping[str, Doc], *, deletes: bool = True
) -> list[tuple[str, Change]]:
    """Pure: the changes, by key, that turn `known` into `listed` (after a relist);
    without `deletes`, what `listed` leaves out is not taken as deleted."""
    changes = [
        (k, Change(type="ADDED" if k not in known else "MODIFIED", item=doc))
        for k, doc in listed.items()
        if known.get(k) != doc
    ]
    if deletes:
        gone = [(k, d) for k, d in known.items() if k not in listed]
        changes += [(k, Change(type="DELETED", item=d)) for k, d in gone]
    return changes


def _held(change: Change, known: Mapping[str, Doc], watch: Watch) -> Change | None:
    """`change` as the command sees it: an item that stops matching `keep` leaves
    (DELETED), one that never matched is not seen at all."""
    if change.type != "DELETED" and not watch.keep(change.item):
        if watch.key(change.item) in known:
            return Change(type="DELETED", item=change.item)
        return None
    seen = watch.key(change.item) in known
    if change.type == "DELETED" and not seen:
        return None
    if change.type == "MODIFIED" and not seen:  # it entered the selection
        return Change(type="ADDED", item=change.item)
    return change


@dataclass(slots=True)
class _State:
    known: dict[str, Doc] = field(default_factory=dict)
    started: bool = False
    resource_version: str | None = None
    listing: dict[str, Doc] | None = None  # a list under way (resources: until SYNCED)
    failures: int = 0  # reconnects in a row that did not get as far as SYNCED


async def updates(
    connect: Connect,
    watch: Watch,
    *,
    backoff: Backoff | None = None,
    said: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[Update, None]:
    """The watch's updates, the first one the whole list, until the caller stops;
    reconnects after a drop (telling `said`), relists when told Expired."""
    state, policy = _State(), backoff or Backoff()
    while True:
        try:
            async with contextlib.aclosing(_session(connect, watch, state)) as session:
                async for update in session:
                    yield update
            raise Dropped("the server ended the subscription")
        except Expired as exc:
            state.resource_version = None  # list again, at once
            state.failures += 1  # a list that keeps expiring must not spin for ever
            if state.failures > policy.attempts:
                raise Dropped(f"the server keeps answering Expired: {exc}") from exc
            continue
        except (Dropped, OSError) as exc:
            state.failures += 1
            delay_s = policy.delay_s(state.failures) if state.started else None
            if delay_s is None and isinstance(exc, Dropped):
                raise
            if delay_s is None:
                raise Dropped(str(exc)) from exc
            said(f"watch: connection lost ({exc}); reconnecting in {delay_s:g}s")
            await sleep(delay_s)


async def _session(connect: Connect, watch: Watch, state: _State) -> AsyncGenerator[Update, None]:
    """One connection: subscribe; the channel's present state until SYNCED (kept on
    `resources`; on the others the HTTP list read after SYNCED stands in for it, as it
    is at least as new); then changes. Resuming `resources` skips the list."""
    payload = dict(watch.subscription.payload)
    resuming = watch.relist is None and state.resource_version is not None
    if resuming:
        payload["resourceVersion"] = state.resource_version
    state.listing = None if resuming else {}
    subscription = Subscription(channel=watch.subscription.channel, payload=payload)
    async with contextlib.aclosing(connect(subscription)) as frames:
        async for update in _updates(frames, watch, state):
            yield update


async def _updates(
    frames: AsyncGenerator[Frame, None], watch: Watch, state: _State
) -> AsyncGenerator[Update, None]:
    """The updates the frames of one subscription make."""
    async for frame in frames:
        kind = frame.get("type")
        body: Mapping[str, Any] = frame.get("payload") or {}
        if frame.get("channel") == "system":
            if kind == "error":
                raise error(body)
            continue
        if kind == "SYNCED":
            for update in await _synced(watch, state, body):
                yield update
            continue
        change = watch.decode(frame, state.known)
        if change is None:
            continue
        if body.get("resourceVersion") is not None:
            state.resource_version = str(body["resourceVersion"])
        if state.listing is not None:  # the present state, before SYNCED
            if watch.relist is None and watch.keep(change.item):
                state.listing[watch.key(change.item)] = change.item
            continue
        held = _held(change, state.known, watch)
        if held is None:
            continue
        key = watch.key(held.item)
        if held.type != "DELETED" and state.known.get(key) == held.item:
            continue  # a change that changes nothing (the list had it already)
        _apply(state.known, key, held)
        yield Update(items=tuple(state.known.values()), change=held)


async def _synced(watch: Watch, state: _State, body: Mapping[str, Any]) -> list[Update]:
    """SYNCED: the list is complete (the channel's, or now read over HTTP)."""
    state.failures = 0
    if body.get("resourceVersion") is not None:
        state.resource_version = str(body["resourceVersion"])
    if state.listing is None:  # resumed: no list came
        return []
    listed = state.listing
    state.listing = None
    if watch.relist is not None:
        listed = {watch.key(d): d for d in await watch.relist() if watch.keep(d)}
    return _listed(state, listed, deletes=watch.forgets)


def _listed(state: _State, listed: dict[str, Doc], *, deletes: bool) -> list[Update]:
    """The first list as the whole state, a later one as the changes since."""
    if not state.started:
        state.started, state.known = True, dict(listed)
        return [Update(items=tuple(listed.values()))]
    found = []
    for key, change in differences(state.known, listed, deletes=deletes):
        _apply(state.known, key, change)
        found.append(Update(items=tuple(state.known.values()), change=change))
    return found


def _apply(known: dict[str, Doc], key: str, change: Change) -> None:
    if change.type == "DELETED":
        known.pop(key, None)
    else:
        known[key] = change.item


# Decoders of the channels' data frames -------------------------------------------------


def decode_resource(frame: Frame, _known: Mapping[str, Doc]) -> Change | None:
    """`resources`: payload {object, resourceVersion}."""
    return _wrapped(frame, "object")


def wrapped(name: str) -> Decode:
    """replicas, nodes, events, runs, rollouts: payload {NAME: item}."""
    return lambda frame, _known: _wrapped(frame, name)


def _wrapped(frame: Frame, name: str) -> Change | None:
    kind, body = frame.get("type"), frame.get("payload") or {}
    item = body.get(name)
    if kind not in CHANGES or not isinstance(item, dict):
        return None
    return Change(type=kind, item=item)


def decode_node(frame: Frame, known: Mapping[str, Doc]) -> Change | None:
    """`nodes`: changes of a node, and heartbeats that amend its usage."""
    if frame.get("type") != "heartbeat":
        return _wrapped(frame, "node")
    beat: Mapping[str, Any] = frame.get("payload") or {}
    node = known.get(str(beat.get("name")))
    if node is None:
        return None
    usage = dict(node.get("usage") or {})
    for ours, theirs in (("cpuPercent", "cpu"), ("memoryUsedMb", "memoryUsedMb")):
        if isinstance(beat.get(theirs), int | float):
            usage[ours] = beat[theirs]
    heartbeat_at = beat.get("at") or node.get("heartbeatAt")
    return Change(type="MODIFIED", item={**node, "usage": usage, "heartbeatAt": heartbeat_at})


def by(*fields: str) -> Callable[[Doc], str]:
    """The key of items told apart by `fields` (`by("id")`)."""
    return lambda doc: "/".join(str(doc.get(f)) for f in fields)


def resource_key(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc['metadata']['name']}"


def matching(filters: Mapping[str, str | None]) -> Callable[[Doc], bool]:
    """Items whose fields equal every filter given (None: any)."""
    wanted: Sequence[tuple[str, str]] = [(k, v) for k, v in filters.items() if v is not None]
    return lambda doc: all(str(doc.get(k)) == v for k, v in wanted)

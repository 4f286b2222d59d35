"""Inbound webhook events in the store: record once, find replays, list.

Called by the webhook intake (ingress/intake.py), which calls `record_many` for a
batch of deliveries — or `record` for one, when a batch has to be retried one by one —
inside the write transaction that also writes their runs and audit rows
(`Database.write_sync`: these two take a synchronous connection), and commits before
any of them is answered; and by `GET /api/v1/events` (`search`).

Invariant: at most one row per (source, delivery id) and per (source, replay hash),
kept by unique constraints, so two servers (or two retries racing) cannot both store
a delivery: the loser's insert fails inside a savepoint and it is told `duplicate`.
Bodies are stored as UTF-8 text when they are that (and hold no NUL, which Postgres
text cannot), else as base64; `body_encoding` says which. Rows never leave this module.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ClauseElement,
    Connection,
    Row,
    and_,
    any_,
    bindparam,
    insert,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary import ids, timestamps
from armillary.store import bulk, feed
from armillary.store.tables import events

KIND = "Event"
"""The feed kind of a new event (its `name` the event's id, `tenant` where it goes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """A verified delivery to record."""

    source: str
    delivery_id: str | None
    replay_hash: str | None  # the body's SHA-256 when the delivery id cannot be trusted
    body_sha256: str
    received_at: dt.datetime
    event_type: str | None
    tenant: str | None
    routing_key: str | None
    state: str  # routed | unrouted
    content_type: str | None
    headers: dict[str, str]
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """The outcome of `record`: the event's id, and whether it was there already."""

    id: str
    duplicate: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """An event as stored; `body` is text in `body_encoding` (utf-8 or base64)."""

    id: str
    source: str
    delivery_id: str | None
    received_at: dt.datetime
    event_type: str | None
    tenant: str | None
    routing_key: str | None
    state: str
    content_type: str | None
    headers: dict[str, str]
    body_sha256: str
    body_encoding: str
    body: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """What `search` returns: every given field must match; newest first, by
    (`received_at`, `id`), starting strictly after `after` (a page's last) if given."""

    source: str | None = None
    tenant: str | None = None
    state: str | None = None
    limit: int = 50
    after: tuple[dt.datetime, str] | None = None


def encode(body: bytes) -> tuple[str, str]:
    """(encoding, text) of `body` as the store keeps it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(body).decode("ascii")
    if "\x00" in text:
        return "base64", base64.b64encode(body).decode("ascii")
    return "utf-8", text


def record(conn: Connection, delivery: Delivery) -> Recorded:
    """Store `delivery` on `conn` (committed with the caller's transaction), unless the
    source already has it: then the earlier event's id, with `duplicate` set."""
    seen = _earlier(conn, delivery)
    if seen is not None:
        return Recorded(id=seen, duplicate=True)
    event_id = ids.new_id()
    try:
        with conn.begin_nested():
            conn.execute(insert(events).values(**_values(event_id, delivery)))
            _announce(conn, event_id, delivery)
    except IntegrityError:  # the same delivery, committed meanwhile by another request
        again = _earlier(conn, delivery)
        if again is None:
            raise
        return Recorded(id=again, duplicate=True)
    return Recorded(id=event_id, duplicate=False)


def record_many(conn: Connection, deliveries: list[Delivery]) -> list[Recorded]:
    """`record` for each of `deliveries` in order, in one query for the ones seen before
    and one insert for the rest. A delivery repeating an earlier one of the same list
    is a duplicate of it. A row another transaction inserted meanwhile makes the insert
    fail with `IntegrityError` (the caller then records one by one)."""
    earlier = _seen(conn, deliveries)
    recorded: list[Recorded] = []
    rows: list[dict[str, Any]] = []
    for delivery in deliveries:
        keys = _replay_keys(delivery)
        seen = next((earlier[k] for k in keys if k in earlier), None)
        if seen is not None:
            recorded.append(Recorded(id=seen, duplicate=True))
            continue
        event_id = ids.new_id()
        earlier.update(dict.fromkeys(keys, event_id))
        rows.append(_values(event_id, delivery))
        _announce(conn, event_id, delivery)
        recorded.append(Recorded(id=event_id, duplicate=False))
    if rows:
        bulk.insert_rows(conn, events, rows)
    return recorded


def _announce(conn: Connection, event_id: str, delivery: Delivery) -> None:
    """A new event, on the feed's status topic once it commits (no controller watches
    events): for the live channel `events` (api/live)."""
    feed.record(
        conn.info, feed.Change(kind=KIND, name=event_id, tenant=delivery.tenant, status=True)
    )


def _earlier(conn: Connection, delivery: Delivery) -> str | None:
    """The id of the stored event `delivery` repeats, if any."""
    found = _seen(conn, [delivery])
    return next((found[k] for k in _replay_keys(delivery) if k in found), None)


def _replay_keys(delivery: Delivery) -> list[tuple[str, str, str]]:
    keys = []
    if delivery.delivery_id is not None:
        keys.append((delivery.source, "id", delivery.delivery_id))
    if delivery.replay_hash is not None:
        keys.append((delivery.source, "hash", delivery.replay_hash))
    return keys


def _seen_query(ids: int, hashes: int) -> ClauseElement:
    """Events of one source with any of `ids` delivery ids or `hashes` replay hashes:
    each half a lookup in one of the two unique indexes (an OR of the two would let
    SQLite settle for scanning every event of the source)."""
    c = events.c
    halves = []
    if ids:
        halves.append(
            select(c.id, c.delivery_id, null().label("replay_hash")).where(
                c.source == bindparam("source"),
                c.delivery_id.in_([bindparam(f"i{n}") for n in range(ids)]),
            )
        )
    if hashes:
        halves.append(
            select(c.id, null().label("delivery_id"), c.replay_hash).where(
                c.source == bindparam("source"),
                c.replay_hash.in_([bindparam(f"h{n}") for n in range(hashes)]),
            )
        )
    return halves[0] if len(halves) == 1 else union_all(*halves)


def _seen_arrays_query() -> ClauseElement:
    """`_seen_query` for Postgres, its ids and hashes each one array parameter: the
    same statement whatever their number, where a list of parameters would be a new
    statement to parse, plan and prepare (a round trip) for nearly every batch."""
    c = events.c
    by_id = select(c.id, c.delivery_id, null().label("replay_hash")).where(
        c.source == bindparam("source"), c.delivery_id == any_(bindparam("ids"))
    )
    by_hash = select(c.id, null().label("delivery_id"), c.replay_hash).where(
        c.source == bindparam("source"), c.replay_hash == any_(bindparam("hashes"))
    )
    return union_all(by_id, by_hash)


def _seen(conn: Connection, deliveries: list[Delivery]) -> dict[tuple[str, str, str], str]:
    """The stored events any of `deliveries` repeats, by replay key (one statement per
    source, compiled once per number of ids and hashes: `bulk.select_rows`)."""
    wanted: dict[str, tuple[set[str], set[str]]] = {}
    for delivery in deliveries:
        ids, hashes = wanted.setdefault(delivery.source, (set(), set()))
        if delivery.delivery_id is not None:
            ids.add(delivery.delivery_id)
        if delivery.replay_hash is not None:
            hashes.add(delivery.replay_hash)
    found: dict[tuple[str, str, str], str] = {}
    arrays = conn.dialect.name == "postgresql"
    for source, (ids, hashes) in wanted.items():
        if not ids and not hashes:
            continue
        values: dict[str, Any] = {"source": source}
        if arrays:  # one statement for every batch: prepared once per connection
            values.update({"ids": sorted(ids), "hashes": sorted(hashes)})
            key: tuple[Any, ...] = ("events.seen.arrays",)
            build = _seen_arrays_query
        else:
            values.update({f"i{n}": v for n, v in enumerate(ids)})
            values.update({f"h{n}": v for n, v in enumerate(hashes)})
            key = ("events.seen", len(ids), len(hashes))
            build = functools.partial(_seen_query, len(ids), len(hashes))
        for row in bulk.select_rows(conn, key, build, values):
            event_id, delivery_id, replay_hash = row[0], row[1], row[2]
            if delivery_id is not None and delivery_id in ids:
                found[(source, "id", delivery_id)] = str(event_id)
            if replay_hash is not None and replay_hash in hashes:
                found[(source, "hash", replay_hash)] = str(event_id)
    return found


def _values(event_id: str, delivery: Delivery) -> dict[str, Any]:
    encoding, text = encode(delivery.body)
    return {
        "id": event_id,
        "source": delivery.source,
        "delivery_id": delivery.delivery_id,
        "replay_hash": delivery.replay_hash,
        "body_sha256": delivery.body_sha256,
        "received_at": timestamps.utc(delivery.received_at),
        "event_type": delivery.event_type,
        "tenant": delivery.tenant,
        "routing_key": delivery.routing_key,
        "state": delivery.state,
        "content_type": delivery.content_type,
        "headers": delivery.headers,
        "body_encoding": encoding,
        "body": text,
    }


def _event(row: Row[Any]) -> Event:
    return Event(
        id=row.id,
        source=row.source,
        delivery_id=row.delivery_id,
        received_at=row.received_at,
        event_type=row.event_type,
        tenant=row.tenant,
        routing_key=row.routing_key,
        state=row.state,
        content_type=row.content_type,
        headers=dict(row.headers),
        body_sha256=row.body_sha256,
        body_encoding=row.body_encoding,
        body=row.body,
    )


async def search(conn: AsyncConnection, wanted: Filter) -> list[Event]:
    """Events matching `wanted`, newest first (every value a bound parameter). The
    order is total — (`received_at`, `id`), both descending — so a page that starts
    after the last row of the one before lists every older event exactly once, however
    many arrive meanwhile (they are newer, or at most land after the cursor)."""
    query = select(events)
    if wanted.after is not None:
        at, last = wanted.after
        at = timestamps.utc(at)
        query = query.where(
            or_(
                events.c.received_at < at,
                and_(events.c.received_at == at, events.c.id < last),
            )
        )
    if wanted.source is not None:
        query = query.where(events.c.source == wanted.source)
    if wanted.tenant is not None:
        query = query.where(events.c.tenant == wanted.tenant)
    if wanted.state is not None:
        query = query.where(events.c.state == wanted.state)
    query = query.order_by(events.c.received_at.desc(), events.c.id.desc()).limit(wanted.limit)
    return [_event(row) for row in await conn.execute(query)]


async def get(conn: AsyncConnection, event_id: str) -> Event | None:
    """The event `event_id`, if it is stored."""
    row = (await conn.execute(select(events).where(events.c.id == event_id))).first()
    return None if row is None else _event(row)


async def get_many(conn: AsyncConnection, event_ids: Collection[str]) -> dict[str, Event]:
    """The stored events among `event_ids`, by id (the run worker's batch of runs)."""
    if not event_ids:
        return {}
    rows = await conn.execute(select(events).where(events.c.id.in_(sorted(event_ids))))
    return {row.id: _event(row) for row in rows}

"""Inbound webhook events in the store: record once, find replays, list.

Called by the webhook endpoint (api/routes/webhooks.py), which calls `record` inside
the write transaction that also writes the event's audit row, and commits before it
answers the sender; and by `GET /api/v1/events` (`search`).

Invariant: at most one row per (source, delivery id) and per (source, replay hash),
kept by unique constraints, so two servers (or two retries racing) cannot both store
a delivery: the loser's insert fails inside a savepoint and it is told `duplicate`.
Bodies are stored as UTF-8 text when they are that (and hold no NUL, which Postgres
text cannot), else as base64; `body_encoding` says which. Rows never leave this module.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary import timestamps
from armillary.store.tables import events


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
    """What `search` returns: every given field must match; newest first."""

    source: str | None = None
    tenant: str | None = None
    state: str | None = None
    limit: int = 50


def encode(body: bytes) -> tuple[str, str]:
    """(encoding, text) of `body` as the store keeps it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(body).decode("ascii")
    if "\x00" in text:
        return "base64", base64.b64encode(body).decode("ascii")
    return "utf-8", text


async def replayed(
    conn: AsyncConnection, source: str, *, delivery_id: str | None, replay_hash: str | None
) -> str | None:
    """The id of the event of `source` with this delivery id or replay hash, if any."""
    keys = []
    if delivery_id is not None:
        keys.append(events.c.delivery_id == delivery_id)
    if replay_hash is not None:
        keys.append(events.c.replay_hash == replay_hash)
    if not keys:
        return None
    query = select(events.c.id).where(events.c.source == source, or_(*keys)).limit(1)
    found = (await conn.execute(query)).scalar_one_or_none()
    return None if found is None else str(found)


async def record(conn: AsyncConnection, delivery: Delivery) -> Recorded:
    """Store `delivery` on `conn` (committed with the caller's transaction), unless the
    source already has it: then the earlier event's id, with `duplicate` set."""
    seen = await replayed(
        conn, delivery.source, delivery_id=delivery.delivery_id, replay_hash=delivery.replay_hash
    )
    if seen is not None:
        return Recorded(id=seen, duplicate=True)
    event_id = str(uuid.uuid4())
    encoding, text = encode(delivery.body)
    values = {
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
    try:
        async with conn.begin_nested():
            await conn.execute(insert(events).values(**values))
    except IntegrityError:  # the same delivery, committed meanwhile by another request
        again = await replayed(
            conn,
            delivery.source,
            delivery_id=delivery.delivery_id,
            replay_hash=delivery.replay_hash,
        )
        if again is None:
            raise
        return Recorded(id=again, duplicate=True)
    return Recorded(id=event_id, duplicate=False)


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
    """Events matching `wanted`, newest first (every value a bound parameter)."""
    query = select(events)
    if wanted.source is not None:
        query = query.where(events.c.source == wanted.source)
    if wanted.tenant is not None:
        query = query.where(events.c.tenant == wanted.tenant)
    if wanted.state is not None:
        query = query.where(events.c.state == wanted.state)
    query = query.order_by(events.c.received_at.desc(), events.c.id).limit(wanted.limit)
    return [_event(row) for row in await conn.execute(query)]


async def get(conn: AsyncConnection, event_id: str) -> Event | None:
    """The event `event_id`, if it is stored."""
    row = (await conn.execute(select(events).where(events.c.id == event_id))).first()
    return None if row is None else _event(row)

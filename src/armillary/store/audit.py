"""The audit log in the store: append, search, and expire after the retention.

Written by the API's audit middleware (one row per mutating API call, or one per
changed document of an apply) and, later, by webhook ingress, which records each
inbound event with `record` inside the transaction that persists the event, so the
event and its audit row commit together. Any other caller without an HTTP request
builds an `Entry` with an action name as its `verb` and records it the same way.

The log is append-only: this module has no update and no delete of single rows.
The one way out is retention (store/retention.py), which removes whole rows older
than the retention.
Every filter value is a bound parameter; nothing a caller sends becomes SQL text.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary import timestamps
from armillary.store import bulk
from armillary.store.tables import audit_log


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One audited action: who, what, when, from where, and how it ended."""

    at: dt.datetime
    verb: str  # the HTTP method, or an action name for callers without a request
    outcome: str  # a short result: created, configured, ok, invalid, forbidden, …
    principal: str | None = None  # `token:3f2a…`, `user:ana`; None when unknown
    principal_kind: str | None = None  # token | user | tenant | webhook | …
    role: str | None = None
    tenant: str | None = None  # the principal's tenant (tenant tokens, routed events)
    path: str | None = None
    kind: str | None = None
    name: str | None = None
    generation_before: int | None = None
    generation_after: int | None = None
    status: int | None = None  # the HTTP status answered
    source: str | None = None  # the client's address
    request_id: str | None = None
    duration_ms: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # never secret values


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """An entry as stored, with its id (ids only grow: newer rows have larger ids)."""

    id: int
    entry: Entry


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """What `search` returns: every given field must match exactly; `since` and
    `until` bound `at` (inclusive, exclusive); `before_id` pages back from a row."""

    principal: str | None = None
    kind: str | None = None
    name: str | None = None
    tenant: str | None = None
    verb: str | None = None
    status: int | None = None
    outcome: str | None = None
    request_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before_id: int | None = None
    limit: int = 100


async def record(conn: AsyncConnection, entry: Entry) -> int:
    """Append `entry` on `conn` (committed with the caller's transaction); its id."""
    values = _values(entry)
    result = await conn.execute(insert(audit_log).values(**values).returning(audit_log.c.id))
    return int(result.scalar_one())


def record_many(conn: Connection, entries: list[Entry]) -> None:
    """Append `entries` in one insert on a synchronous connection (see
    `Database.write_sync`; committed with the caller's transaction)."""
    if entries:
        bulk.insert_rows(conn, audit_log, [_values(entry) for entry in entries])


def _values(entry: Entry) -> dict[str, Any]:
    return {
        "at": timestamps.utc(entry.at),
        "verb": entry.verb,
        "outcome": entry.outcome,
        "principal": entry.principal,
        "principal_kind": entry.principal_kind,
        "role": entry.role,
        "tenant": entry.tenant,
        "path": entry.path,
        "kind": entry.kind,
        "name": entry.name,
        "generation_before": entry.generation_before,
        "generation_after": entry.generation_after,
        "status": entry.status,
        "source": entry.source,
        "request_id": entry.request_id,
        "duration_ms": entry.duration_ms,
        "detail": entry.detail,
    }


async def search(conn: AsyncConnection, wanted: Filter) -> list[Recorded]:
    """The entries matching `wanted`, newest first, at most `wanted.limit`."""
    c = audit_log.c
    query = select(audit_log)
    exact = {
        c.principal: wanted.principal,
        c.kind: wanted.kind,
        c.name: wanted.name,
        c.tenant: wanted.tenant,
        c.verb: wanted.verb,
        c.status: wanted.status,
        c.outcome: wanted.outcome,
        c.request_id: wanted.request_id,
    }
    for column, value in exact.items():
        if value is not None:
            query = query.where(column == value)
    if wanted.since is not None:
        query = query.where(c.at >= timestamps.utc(wanted.since))
    if wanted.until is not None:
        query = query.where(c.at < timestamps.utc(wanted.until))
    if wanted.before_id is not None:
        query = query.where(c.id < wanted.before_id)
    rows = await conn.execute(query.order_by(c.id.desc()).limit(wanted.limit))
    return [_recorded(row) for row in rows]


def _recorded(row: Row[Any]) -> Recorded:
    entry = Entry(
        at=timestamps.utc(row.at),
        verb=row.verb,
        outcome=row.outcome,
        principal=row.principal,
        principal_kind=row.principal_kind,
        role=row.role,
        tenant=row.tenant,
        path=row.path,
        kind=row.kind,
        name=row.name,
        generation_before=row.generation_before,
        generation_after=row.generation_after,
        status=row.status,
        source=row.source,
        request_id=row.request_id,
        duration_ms=row.duration_ms,
        detail=row.detail,
    )
    return Recorded(id=int(row.id), entry=entry)

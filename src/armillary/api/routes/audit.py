"""`GET /api/v1/audit`: the audit log, newest first, for admins only.

Every filter is an exact match passed to the store as a bound parameter, so no
value can change the query; a value of the wrong shape (a date that is not ISO
8601, a limit out of range) is a 422. Paging goes back in time: pass the `next`
of one page as `before_id` to get the one before it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from armillary import timestamps, wire
from armillary.api import openapi, paging
from armillary.api.security import Admin, Db
from armillary.errors import Invalid, Issue
from armillary.store import audit

router = APIRouter(prefix="/api/v1", tags=["audit"])

MAX_LIMIT = 1000
NO_NUL = r"^[^\x00]*$"  # Postgres text cannot hold NUL: refuse it as input, not fail
Text = Annotated[str | None, Query(min_length=1, max_length=300, pattern=NO_NUL)]
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$"
)


def _date_time_text(value: object) -> object:
    """Only a date, or a date and time, as text: pydantic alone would take `0.5` as a
    Unix time, which the OpenAPI document (`date-time` or `date`) does not promise."""
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("expected an ISO 8601 time such as 2026-12-01T10:00:00Z or a date")
    return value


Instant = Annotated[
    dt.datetime | None,
    BeforeValidator(_date_time_text),
    Query(
        description="ISO 8601 date and time, or a date (its midnight); naive means UTC",
        json_schema_extra={
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
            ]
        },
    ),
]


def entry_document(recorded: audit.Recorded) -> dict[str, Any]:
    e = recorded.entry
    return {
        "id": recorded.id,
        "at": timestamps.iso(e.at),
        "principal": e.principal,
        "principalKind": e.principal_kind,
        "role": e.role,
        "tenant": e.tenant,
        "verb": e.verb,
        "path": e.path,
        "kind": e.kind,
        "name": e.name,
        "generationBefore": e.generation_before,
        "generationAfter": e.generation_after,
        "status": e.status,
        "outcome": e.outcome,
        "source": e.source,
        "requestId": e.request_id,
        "durationMs": e.duration_ms,
        "detail": e.detail,
    }


@router.get(
    "/audit", summary="Search the audit log, newest first", **openapi.answer(wire.AuditPage)
)
async def list_audit(
    db: Db,
    _who: Admin,
    principal: Text = None,
    kind: Text = None,
    name: Text = None,
    tenant: Text = None,
    verb: Text = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    outcome: Text = None,
    request_id: Annotated[str | None, Query(min_length=1, max_length=128, pattern=NO_NUL)] = None,
    since: Instant = None,
    until: Instant = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    token: Annotated[
        str | None,
        Query(
            alias="continue",
            description="Where to go on: the `metadata.continue` of the previous page "
            "(the rows older than that id)",
            pattern=r"^[0-9]{1,18}$",
        ),
    ] = None,
) -> dict[str, Any]:
    """Newest first, by `id`. Pages either way: `metadata.continue` (as every list)
    or the older `next`, passed back as `before_id`; both are the page's last id."""
    older = [b for b in (before_id, None if token is None else int(token)) if b is not None]
    wanted = audit.Filter(
        principal=principal,
        kind=kind,
        name=name,
        tenant=tenant,
        verb=verb,
        status=status,
        outcome=outcome,
        request_id=request_id,
        since=_utc(since, "since"),
        until=_utc(until, "until"),
        before_id=min(older) if older else None,
        limit=limit + 1,  # one more than the page: whether another follows
    )
    async with db.read() as conn:
        found = await audit.search(conn, wanted)
    taken = found[:limit]
    metadata = {"continue": str(taken[-1].id)} if len(found) > limit else {}
    return paging.answer(
        [entry_document(r) for r in taken],
        metadata,
        next=taken[-1].id if len(taken) == limit else None,
    )


def _utc(value: dt.datetime | None, field: str) -> dt.datetime | None:
    """`value` in UTC; 422 for an instant that has none (year 1 or 9999 with an offset)."""
    if value is None:
        return None
    try:
        return timestamps.utc(value)
    except OverflowError:
        message = "expected an ISO 8601 time between the years 1 and 9999 in UTC"
        raise Invalid([Issue(path=f"query.{field}", message=message)]) from None

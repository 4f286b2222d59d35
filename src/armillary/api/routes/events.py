"""`GET /api/v1/events`: inbound webhook events, newest first.

Paged (api/paging.py): at most `limit` (default 50, at most 100 — bodies come with
the events) and, when more may follow, `metadata.continue`, a keyset cursor on
(`receivedAt`, `id`); the next page starts strictly after it, so an event stored
before paging began is listed exactly once while new ones keep arriving.

Viewers see every event; a tenant token must name its own tenant in `?tenant=` and
sees only the events routed to it (`TenantQuery`), never unrouted ones. Each filter
is an exact match passed to the store as a bound parameter. Events are written only
by the webhook endpoint (routes/webhooks.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from armillary import timestamps, wire
from armillary.api import openapi, paging
from armillary.api.security import Db, TenantQuery, visible
from armillary.store import events

router = APIRouter(prefix="/api/v1", tags=["events"])

MAX_LIMIT = 100  # bodies come with the events; keep a page bounded
Text = Annotated[str | None, Query(min_length=1, max_length=253, pattern=r"^[^\x00]*$")]


def event_document(event: events.Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "source": event.source,
        "deliveryId": event.delivery_id,
        "receivedAt": timestamps.iso(event.received_at),
        "eventType": event.event_type,
        "tenant": event.tenant,
        "routingKey": event.routing_key,
        "state": event.state,
        "contentType": event.content_type,
        "headers": event.headers,
        "bodySha256": event.body_sha256,
        "bodyEncoding": event.body_encoding,
        "body": event.body,
    }


@router.get(
    "/events",
    summary="List inbound webhook events, newest first",
    **openapi.answer(wire.EventList),
)
async def list_events(
    db: Db,
    who: TenantQuery,
    source: Text = None,
    tenant: Text = None,
    state: Annotated[Literal["routed", "unrouted"] | None, Query()] = None,
    limit: Annotated[
        int,
        Query(ge=1, le=MAX_LIMIT, description="At most this many items on a page"),
    ] = 50,
    token: paging.KeysetContinue = None,
) -> dict[str, Any]:
    if who.role == "tenant":
        visible(who, tenant)  # `TenantQuery` admitted it for its own tenant only
    wanted = events.Filter(
        source=source,
        tenant=tenant,
        state=state,
        limit=limit + 1,  # one more than the page: whether another follows
        after=None if token is None else paging.after(token),
    )
    async with db.read() as conn:
        found = await events.search(conn, wanted)
    page = found[:limit]
    listed: dict[str, Any] = {}
    if len(found) > limit:
        listed["metadata"] = {"continue": paging.keyset(page[-1].received_at, page[-1].id)}
    listed["items"] = [event_document(e) for e in page if who.sees(e.tenant)]
    return listed

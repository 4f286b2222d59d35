"""The server replicas sharing this store: who serves, which one leads, who is gone."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter

from armillary import timestamps, wire
from armillary.api import openapi, presence
from armillary.api.security import Db, Viewer
from armillary.store import servers

router = APIRouter(prefix="/api/v1", tags=["health"])


def server_document(server: servers.Server, *, now: dt.datetime) -> dict[str, Any]:
    stale = presence.stale(server, now=now)
    return {
        "name": server.name,
        "address": server.address,
        "version": server.version,
        # A stale row's flag is what it last said: it leads no more once it is gone.
        "leader": server.leader and not stale,
        "state": "stale" if stale else "live",
        "startedAt": timestamps.iso(server.started_at),
        "seenAt": timestamps.iso(server.seen_at),
    }


@router.get(
    "/servers",
    summary="List the server replicas sharing the store",
    **openapi.answer(wire.ServerList),
)
async def list_servers(db: Db, _who: Viewer) -> dict[str, Any]:
    """In name order; each replica refreshes its row every second."""
    async with db.read() as conn:
        found = await servers.list_all(conn)
    now = dt.datetime.now(dt.UTC)
    return {"items": [server_document(s, now=now) for s in found]}

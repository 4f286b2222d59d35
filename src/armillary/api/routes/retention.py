"""`GET /api/v1/retention`: what is kept and for how long, for `armillary retention`.

Per kept history (store/retention.py `KINDS`): its policy from the settings, how many
rows it holds now and the time of the oldest, and what this server's last retention
pass removed (the leader runs the passes: on another replica nothing is shown as
removed; see control/retention.py). Viewers may
read it: it names no tenant and no secret, only counts and times.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from armillary import timestamps, wire
from armillary.api import openapi
from armillary.api.security import Db, Viewer
from armillary.config import Settings
from armillary.control import retention
from armillary.store import retention as kept_rows

router = APIRouter(prefix="/api/v1", tags=["health"])


@router.get(
    "/retention",
    summary="What history is kept, and for how long",
    **openapi.answer(wire.Retention),
)
async def show_retention(request: Request, db: Db, _who: Viewer) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    loop: retention.Retention = request.app.state.retention
    last = loop.last
    kinds = []
    async with db.read() as conn:
        for kind in kept_rows.KINDS:
            policy = loop.policies[kind]
            now = await kept_rows.kept(conn, kind)
            kinds.append(
                {
                    "kind": kind,
                    "maxAgeS": policy.max_age_s,
                    "maxCount": policy.max_count,
                    "kept": now.count,
                    "oldest": None if now.oldest is None else timestamps.iso(now.oldest),
                    "lastRemoved": None if last is None else last.removed.get(kind, 0),
                    "removedSinceStart": loop.removed_total[kind],
                    "batchesSinceStart": loop.batches_total[kind],
                }
            )
    return {
        "enabled": settings.retention_enabled,
        "intervalS": loop.interval_s,
        "batch": loop.batch,
        "lastPass": None if last is None else timestamps.iso(last.at),
        "kinds": kinds,
    }

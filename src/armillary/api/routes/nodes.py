"""Node daemons: the WebSocket they connect to, the node list, cordon/uncordon, drain.

A drain cordons the node and records its deadline in the store; the tenant controller
moves the replicas and `control.drains` says when the node is empty. Uncordon ends it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, WebSocket
from pydantic import ConfigDict, Field

from armillary import timestamps, wire
from armillary.api import openapi, paging, reports
from armillary.api.hub import Hub
from armillary.api.security import Admin, Db, Viewer
from armillary.resources import text
from armillary.store import allocations, nodes

DEADLINE_MAX_S = 30 * 86400

router = APIRouter(prefix="/api/v1", tags=["nodes"])


def node_document(node: nodes.Node, replicas: int) -> dict[str, Any]:
    return {
        "name": node.name,
        "address": node.address,
        "labels": node.labels,
        "capacity": reports.document(node.capacity),
        # Per-replica usage rides in the node's (one write per heartbeat); it is
        # shown per replica, by /api/v1/replicas.
        "usage": reports.document({k: v for k, v in node.usage.items() if k != "replicas"}),
        "status": node.status,
        "connected": node.connected,
        "schedulable": node.schedulable,
        "replicas": replicas,
        "isolation": node.isolation,
        "server": node.server,
        "registeredAt": timestamps.iso_or_none(node.registered_at),
        "heartbeatAt": timestamps.iso_or_none(node.heartbeat_at),
        "lostAt": timestamps.iso_or_none(node.lost_at),
        "drain": _drain_document(node),
    }


def _drain_document(node: nodes.Node) -> dict[str, Any] | None:
    if node.drain is None or node.drain_started_at is None:
        return None
    return {
        "state": node.drain,
        "startedAt": timestamps.iso(node.drain_started_at),
        "deadlineAt": timestamps.iso_or_none(node.drain_deadline_at),
        "drainedAt": timestamps.iso_or_none(node.drained_at),
    }


@router.websocket("/nodes/connect")
async def connect(websocket: WebSocket) -> None:
    """A node daemon's session (see armillary.protocol)."""
    hub: Hub = websocket.app.state.hub
    await hub.serve(websocket)


@router.get("/nodes", summary="List nodes", **openapi.answer(wire.NodeList))
async def list_nodes(
    db: Db, _who: Viewer, limit: paging.Limit = None, token: paging.Continue = None
) -> dict[str, Any]:
    """In name order; pages by name (api/paging.py)."""
    async with db.read() as conn:
        found = await nodes.list_all(conn)
        held = await allocations.list_all(conn)
    counts: dict[str, int] = {}
    for allocation in held:
        counts[allocation.node] = counts.get(allocation.node, 0) + 1
    taken, metadata = paging.page(found, lambda n: n.name, limit=limit, token=token)
    return paging.answer([node_document(n, counts.get(n.name, 0)) for n in taken], metadata)


async def _schedulable(db: Db, name: str, value: bool) -> dict[str, Any]:
    async with db.write() as conn:
        node = await nodes.set_schedulable(conn, name, schedulable=value)
        count = len(await allocations.for_node(conn, name))
    return node_document(node, count)


@router.post(
    "/nodes/{name}/cordon",
    summary="Stop placing new replicas on a node",
    **openapi.answer(wire.Node, 404),
)
async def cordon(name: str, db: Db, _who: Admin) -> dict[str, Any]:
    return await _schedulable(db, name, False)


@router.post(
    "/nodes/{name}/uncordon",
    summary="Allow placing replicas on a node again",
    **openapi.answer(wire.Node, 404),
)
async def uncordon(name: str, db: Db, _who: Admin) -> dict[str, Any]:
    return await _schedulable(db, name, True)


class DrainRequest(text.Storable):
    # strict: 1 is an integer and "1" is not, as the OpenAPI document says
    model_config = ConfigDict(extra="forbid", strict=True)

    deadline_s: Annotated[
        int | None,
        Field(
            ge=0,
            le=DEADLINE_MAX_S,
            description="Seconds from now until what still runs on the node is stopped "
            "(0: at once; null: never). Draining a node again sets a new deadline.",
        ),
    ] = None


@router.post(
    "/nodes/{name}/drain",
    summary="Cordon a node and move its replicas elsewhere",
    **openapi.answer(wire.Node, 404),
)
async def drain(name: str, db: Db, _who: Admin, body: DrainRequest | None = None) -> dict[str, Any]:
    """Services move within their rollout budgets (successor first); jobs are left to
    finish until the deadline. `drain.state` turns `drained` once nothing runs there."""
    now = dt.datetime.now(dt.UTC)
    deadline_s = body.deadline_s if body is not None else None
    deadline_at = None if deadline_s is None else now + dt.timedelta(seconds=deadline_s)
    async with db.write() as conn:
        node = await nodes.drain(conn, name, deadline_at=deadline_at, now=now)
        count = len(await allocations.for_node(conn, name))
    return node_document(node, count)

"""Node daemons: the WebSocket they connect to, and the node list with cordon/uncordon."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, WebSocket

from armillary import timestamps, wire
from armillary.api import openapi, paging, reports
from armillary.api.hub import Hub
from armillary.api.security import Admin, Db, Viewer
from armillary.store import allocations, nodes

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
        "registeredAt": timestamps.iso_or_none(node.registered_at),
        "heartbeatAt": timestamps.iso_or_none(node.heartbeat_at),
        "lostAt": timestamps.iso_or_none(node.lost_at),
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

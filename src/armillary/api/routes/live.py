"""`/api/v1/ws`: the live channels' WebSocket (api/live; docs/api.md "Live channels").

Authenticated in the handshake by the socket itself (4001 when not), not by an
`Allow`: a WebSocket has no HTTP answer to carry a 401.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from armillary.api.live import socket

router = APIRouter(prefix="/api/v1", tags=["live"])


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    """One client's live socket: subscriptions to resources, replicas, nodes, logs,
    events, runs and rollouts."""
    await socket.serve(websocket)

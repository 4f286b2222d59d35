"""Replicas (allocations with what their node reports), their logs and exec.

The list also names the replicas no node takes (`unplaced`: Pending, Unschedulable,
with the scheduler's counts per reason), read from the tenants' status, so the CLI
and any other client show "could not place" from one source.

Logs and exec are relayed: the request names a replica, the server finds its node's
session in the hub and opens a stream there; the node reads the log file or runs the
command in the replica's env and cwd and streams chunks back. Exec answers NDJSON
lines `{"fd": "stdout"|"stderr", "data": base64}` and a last `{"exit_code": n}`
(or `{"error": …}` when the node goes away mid-way).

A stream lasts only as long as its caller's credential: `_while_allowed` ends it
(closing the node's side) once `security.until_refused` says the token was revoked
or expired, the session closed or the tenant deleted, with a last line saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from armillary import protocol, timestamps, wire
from armillary.api import openapi, paging, reports, security
from armillary.api.hub import Hub, Session
from armillary.api.routes.resources import Selector
from armillary.api.security import Admin, Db, TenantChecked, TenantQuery, visible
from armillary.config import Settings
from armillary.errors import Invalid, NotFound
from armillary.resources import naming, selectors
from armillary.store import allocations, nodes, repository

router = APIRouter(prefix="/api/v1", tags=["replicas"])


def replica_document(
    allocation: allocations.Allocation, *, node: nodes.Node | None = None
) -> dict[str, Any]:
    """The replica as the API shows it; with its `node`, the usage that node measured
    at its last heartbeat (`usage`: None until it has one)."""
    spec = allocation.spec
    measured = ((node.usage if node else {}).get("replicas") or {}).get(allocation.id)
    usage = (
        {
            "cpuPercent": measured.get("cpu_percent"),
            "memoryMb": measured.get("memory_mb"),
            "measuredAt": timestamps.iso_or_none(node.heartbeat_at),
        }
        if measured and node is not None
        else None
    )
    return {
        "id": allocation.id,
        "tenant": allocation.tenant,
        "component": allocation.component,
        "replica": allocation.replica,
        "name": spec.get("name"),
        "node": allocation.node,
        "type": spec.get("type"),
        "specHash": allocation.spec_hash,
        "ports": (allocation.report or {}).get("ports") or spec.get("ports", {}),
        "report": reports.document(allocation.report),
        "usage": usage,
        "createdAt": timestamps.iso(allocation.created_at),
    }


@router.get(
    "/replicas",
    summary="List replicas with what their nodes report",
    **openapi.answer(wire.ReplicaList),
)
async def list_replicas(
    db: Db,
    _who: TenantQuery,
    tenant: Annotated[
        str | None, Query(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ] = None,
    component: Annotated[
        str | None, Query(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ] = None,
    selector: Selector = None,
    limit: paging.Limit = None,
    token: paging.Continue = None,
) -> dict[str, Any]:
    """With `selector`, only the replicas of tenants whose labels it matches: a
    replica carries its tenant's labels, as a pod carries its template's. By tenant,
    component, replica number (and id); pages by that key (`unplaced` is on every
    page, whole)."""
    chosen = selectors.parse(selector)
    async with db.read() as conn:
        found = await (
            allocations.for_tenant(conn, tenant) if tenant else allocations.list_all(conn)
        )
        tenants = (
            [t for t in [await repository.get(conn, "Tenant", tenant)] if t is not None]
            if tenant
            else await repository.list_kind(conn, "Tenant")
        )
        by_name = {n.name: n for n in await nodes.list_all(conn)}
    if component:
        found = [a for a in found if a.component == component]
    if chosen:
        tenants = [t for t in tenants if selectors.matches(chosen, t.labels)]
        found = [a for a in found if a.tenant in {t.name for t in tenants}]
    taken, metadata = paging.page(
        found,
        lambda a: f"{a.tenant} {a.component} {a.replica:09d} {a.id}",
        limit=limit,
        token=token,
    )
    return {
        **({"metadata": metadata} if metadata else {}),
        "items": [replica_document(a, node=by_name.get(a.node)) for a in taken],
        "unplaced": [
            u
            for t in tenants
            for u in unplaced_documents(t)
            if not component or u["component"] == component
        ],
    }


def unplaced_documents(tenant: repository.Stored) -> list[dict[str, Any]]:
    """The replicas of `tenant` its last reconcile could place on no node, as its
    status says (`components.<name>.unplaced`, `unplacedReplicas`): each Pending,
    Unschedulable, with the scheduler's counts per reason."""
    documents: list[dict[str, Any]] = []
    components = (tenant.status or {}).get("components") or {}
    for component, entry in sorted(components.items()):
        why = entry.get("unplaced")
        if not why:
            continue
        documents.extend(
            {
                "tenant": tenant.name,
                "component": component,
                "replica": index,
                "name": naming.replica_name(component, tenant.name, index),
                "state": "Pending",
                "reason": "Unschedulable",
                "message": why,
            }
            for index in entry.get("unplacedReplicas") or ()
        )
    return documents


async def _locate(
    request: Request, db: Db, replica_id: str
) -> tuple[allocations.Allocation, Session]:
    async with db.read() as conn:
        found = await allocations.get(conn, replica_id)
    if found is None:
        raise NotFound(f"replica {replica_id!r} not found")
    hub: Hub = request.app.state.hub
    return found, hub.session(found.node)


async def _relay(
    session: Session, kind: str, opening: Callable[[str], protocol.LogsOpen | protocol.ExecOpen]
) -> AsyncGenerator[dict[str, Any]]:
    """Open a stream on the node with the message `opening(stream id)`; its chunks."""
    stream, queue = session.open_stream()
    await session.send(kind, protocol.encode(opening(stream)))
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        await session.close_stream(stream)


async def _while_allowed(
    request: Request, items: AsyncGenerator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """`items` until they end or the caller's credential is refused; then one last
    `{"error": …}` item saying why, and `items` is closed (its node stream with it)."""
    settings: Settings = request.app.state.settings
    refused = asyncio.create_task(
        security.until_refused(request, recheck_s=settings.stream_recheck_s)
    )
    try:
        while True:
            following = asyncio.ensure_future(anext(items))
            await asyncio.wait({following, refused}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                yield {"error": f"the stream ended: {refused.result()}"}
                return
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        refused.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refused
        await items.aclose()


class TextStream(StreamingResponse):
    media_type = "text/plain; charset=utf-8"


class NdjsonStream(StreamingResponse):
    media_type = "application/x-ndjson"


def _streamed(media_type: str, schema: dict[str, Any], *statuses: int) -> dict[str, Any]:
    """Decorator arguments of a route that streams `media_type`."""
    ok = {"description": "Streamed", "content": {media_type: {"schema": schema}}}
    return {"responses": {200: ok, **openapi.declared(*statuses)}}


_EXEC_LINE = {
    "type": "string",
    "description": 'NDJSON: {"fd": "stdout"|"stderr", "data": base64}… then {"exit_code": n} '
    '(or {"error": "…"} when the node goes away)',
}


@router.get(
    "/replicas/{replica_id}/logs",
    summary="A replica's output, optionally followed",
    response_class=TextStream,
    **_streamed(TextStream.media_type, {"type": "string"}),
)
async def logs(
    replica_id: str,
    request: Request,
    db: Db,
    who: TenantChecked,
    follow: bool = False,
    tail: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    since_s: Annotated[float | None, Query(ge=0)] = None,
    previous: Annotated[
        bool, Query(description="The last finished run's output instead (not followed)")
    ] = False,
    timestamps: Annotated[
        bool, Query(description="Prefix each line with when the node first saw it (RFC 3339)")
    ] = False,
) -> Response:
    allocation, session = await _locate(request, db, replica_id)
    visible(who, allocation.tenant)

    async def body() -> AsyncIterator[bytes]:
        def opening(stream: str) -> protocol.LogsOpen:
            return protocol.LogsOpen(
                stream=stream,
                allocation=allocation.id,
                follow=follow and not previous,
                tail=tail,
                since_s=since_s,
                previous=previous,
                timestamps=timestamps,
            )

        async for item in _while_allowed(request, _relay(session, "logs.open", opening)):
            if item.get("error"):
                yield f"\n[armillary: {item['error']}]\n".encode()
            elif item.get("data"):
                yield str(item["data"]).encode()

    return TextStream(body())


class ExecRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    command: list[str] = Field(min_length=1, max_length=256)
    timeout_s: float | None = Field(default=None, gt=0, le=86400)


@router.post(
    "/replicas/{replica_id}/exec",
    summary="Run a command in a replica's env and cwd",
    response_class=NdjsonStream,
    **_streamed(NdjsonStream.media_type, _EXEC_LINE, 404),
)
async def exec_in(
    replica_id: str, body: ExecRequest, request: Request, db: Db, _who: Admin
) -> Response:
    allocation, session = await _locate(request, db, replica_id)
    if not body.command[0]:
        raise Invalid("command[0] must name a program")

    async def lines() -> AsyncIterator[bytes]:
        def opening(stream: str) -> protocol.ExecOpen:
            return protocol.ExecOpen(
                stream=stream,
                allocation=allocation.id,
                command=body.command,
                timeout_s=body.timeout_s,
            )

        async for item in _while_allowed(request, _relay(session, "exec.open", opening)):
            # {"fd", "data"} chunks, then {"exit_code"} (or {"error"} if the node went away)
            yield (json.dumps({k: v for k, v in item.items() if k != "stream"}) + "\n").encode()

    return NdjsonStream(lines())

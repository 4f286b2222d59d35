"""`/api/v1/provision`: onboard a tenant in one call, remove it in another, and follow
either run step by step."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ConfigDict, Field

from armillary import timestamps, wire
from armillary.api import openapi, paging
from armillary.api.security import Db, Developer, TenantChecked, TenantQuery, visible
from armillary.control.provisioning import Provisioner
from armillary.errors import NotFound
from armillary.resources import text
from armillary.store import provisioning_runs, repository

router = APIRouter(prefix="/api/v1/provision", tags=["provisioning"])


class ProvisionRequest(text.Storable):
    """What a new tenant needs; the fields of Org and Tenant are checked as in `apply`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    org: str = Field(min_length=1, max_length=63)
    org_display_name: str | None = None
    tenant: str = Field(min_length=1, max_length=63)
    stack: str = Field(min_length=1, max_length=63)
    display_name: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    overrides: dict[str, Any] = Field(default_factory=dict)
    routing: dict[str, list[str]] = Field(default_factory=dict)
    schedules: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    labels: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)


def run_document(run: provisioning_runs.Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "action": run.action,
        "org": run.org,
        "tenant": run.tenant,
        "idempotencyKey": run.idempotency_key,
        "state": run.state,
        "error": run.error,
        "createdAt": timestamps.iso_or_none(run.created_at),
        "startedAt": timestamps.iso_or_none(run.started_at),
        "finishedAt": timestamps.iso_or_none(run.finished_at),
        "steps": [
            {
                "name": s.name,
                "state": s.state,
                "startedAt": timestamps.iso_or_none(s.started_at),
                "finishedAt": timestamps.iso_or_none(s.finished_at),
                "error": s.error,
                "detail": {k: v for k, v in s.detail.items() if not k.startswith("_")},
            }
            for s in run.steps
        ],
    }


def _provisioner(request: Request) -> Provisioner:
    provisioner: Provisioner = request.app.state.provisioner
    return provisioner


@router.post(
    "/tenants",
    status_code=202,
    summary="Provision a tenant: a recorded run of steps",
    **openapi.answer(
        wire.ProvisionRun, 409, also={200: "The run this idempotency key already started"}
    ),
)
async def provision(
    body: ProvisionRequest, request: Request, response: Response, _who: Developer
) -> dict[str, Any]:
    payload = body.model_dump(exclude={"idempotency_key"}, exclude_none=True)
    run, created = await _provisioner(request).submit(
        payload, action="provision", idempotency_key=body.idempotency_key
    )
    if not created:
        response.status_code = 200  # the run this idempotency key already started
    return run_document(run)


@router.delete(
    "/tenants/{tenant}",
    status_code=202,
    summary="Deprovision a tenant: a recorded run",
    **openapi.answer(
        wire.ProvisionRun, 404, 409, also={200: "The run this idempotency key already started"}
    ),
)
async def deprovision(
    tenant: str,
    request: Request,
    response: Response,
    db: Db,
    _who: Developer,
    idempotency_key: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> dict[str, Any]:
    async with db.read() as conn:
        stored = await repository.get(conn, "Tenant", tenant)
    if stored is None and idempotency_key is None:
        raise NotFound(f"tenant {tenant!r} not found")
    org = str(stored.spec.get("org", "")) if stored else ""
    run, created = await _provisioner(request).submit(
        {"tenant": tenant, "org": org}, action="deprovision", idempotency_key=idempotency_key
    )
    if not created:
        response.status_code = 200
    return run_document(run)


@router.post(
    "/runs/{run_id}/token",
    summary="Collect, once, the tenant key a run issued",
    **openapi.answer(wire.TenantKey, 404, 409, 410),
)
async def collect_token(run_id: str, request: Request, _who: Developer) -> dict[str, Any]:
    return await _provisioner(request).collect_token(run_id)


@router.get("/runs", summary="List provisioning runs", **openapi.answer(wire.ProvisionRunList))
async def list_runs(
    db: Db,
    _who: TenantQuery,
    tenant: Annotated[
        str | None, Query(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ] = None,
    limit: paging.Limit = None,
    token: paging.Continue = None,
) -> dict[str, Any]:
    """Oldest first, by (`createdAt`, `id`); pages by that key (api/paging.py)."""
    found = await provisioning_runs.list_runs(db, tenant=tenant)
    taken, metadata = paging.page(
        found, lambda r: f"{paging.instant(r.created_at)}_{r.id}", limit=limit, token=token
    )
    return paging.answer([run_document(r) for r in taken], metadata)


@router.get(
    "/runs/{run_id}",
    summary="One provisioning run with its step timeline",
    **openapi.answer(wire.ProvisionRun, 404),
)
async def get_run(run_id: str, db: Db, who: TenantChecked) -> dict[str, Any]:
    run = await provisioning_runs.get(db, run_id)
    visible(who, run.tenant)
    return run_document(run)

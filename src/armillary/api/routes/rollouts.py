"""Rollout history and undo of a tenant's components.

`GET /api/v1/tenants/{tenant}/rollouts` lists the revisions the tenant controller
recorded (newest last per component) with the tenant's rollout status; `POST
.../rollouts/{component}/undo` pins the component back to an earlier revision's
release — a spec change of the Tenant made through the same apply path as a user's,
so it is validated, versioned and rolled out like any other.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from armillary import timestamps, wire
from armillary.api import audit, openapi, paging
from armillary.api.security import Db, Developer, TenantPath
from armillary.control import apply, revisions
from armillary.control import rollouts as control_rollouts
from armillary.errors import Invalid, Issue, NotFound
from armillary.store import repository, rollouts

router = APIRouter(prefix="/api/v1", tags=["rollouts"])


def revision_document(row: rollouts.Revision) -> dict[str, Any]:
    template = row.template
    return {
        "tenant": row.tenant,
        "component": row.component,
        "revision": row.revision,
        "release": row.release,
        "state": row.state,
        "reason": row.reason,
        "templateHash": row.template_hash,
        "command": template.get("command"),
        "startedAt": timestamps.iso(row.started_at),
        "finishedAt": timestamps.iso(row.finished_at) if row.finished_at else None,
    }


@router.get(
    "/tenants/{tenant}/rollouts",
    summary="A tenant's rollout revisions and status",
    **openapi.answer(wire.Rollouts, 404),
)
async def list_rollouts(
    tenant: str,
    db: Db,
    _who: TenantPath,
    component: Annotated[
        str | None, Query(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ] = None,
    limit: paging.Limit = None,
    token: paging.Continue = None,
) -> dict[str, Any]:
    """Revisions by component, then revision number; pages by that key (`status` is on
    every page)."""
    async with db.read() as conn:
        stored = await repository.require(conn, "Tenant", tenant)
        rows = await rollouts.history(conn, tenant, component)
    taken, metadata = paging.page(
        rows, lambda r: f"{r.component} {r.revision:018d}", limit=limit, token=token
    )
    return paging.answer(
        [revision_document(r) for r in taken],
        metadata,
        tenant=tenant,
        status=stored.status.get("rollouts", {}),
    )


class UndoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    to_revision: Annotated[int, Field(ge=1)] | None = None


@router.post(
    "/tenants/{tenant}/rollouts/{component}/undo",
    summary="Pin a component back to an earlier revision's release",
    **openapi.answer(wire.Undone, 404, 409),
)
async def undo_rollout(
    tenant: str,
    component: str,
    request: Request,
    db: Db,
    _who: Developer,
    body: UndoRequest | None = None,
) -> dict[str, Any]:
    body = body or UndoRequest()  # every field has a default: no body is fine
    audit.note(request, kind="Tenant", name=tenant, extra={"component": component})
    async with db.read() as conn:
        stored = await repository.require(conn, "Tenant", tenant)
        rows = await rollouts.history(conn, tenant, component)
    if not rows:
        raise NotFound(f"tenant/{tenant} has no revisions of component {component!r}")
    history = [control_rollouts.revision(r) for r in rows]
    try:
        target = revisions.undo_target(history, to_revision=body.to_revision)
    except ValueError as exc:
        raise Invalid([Issue(path="to_revision", message=str(exc))]) from None
    document = stored.document()
    overrides = document["spec"].setdefault("overrides", {})
    overrides[component] = {**overrides.get(component, {}), "release": target.release}
    document["metadata"] = {
        **document["metadata"],
        "resourceVersion": str(stored.resource_version),
    }
    document.pop("status", None)
    parsed = apply.parse_documents([document])
    [applied] = await apply.apply(db, parsed, prune=False, now=dt.datetime.now(dt.UTC))
    audit.note(
        request,
        kind="Tenant",
        name=tenant,
        generation_before=applied.generation_before,
        generation_after=applied.stored.generation,
        result=applied.result,
        extra={"component": component, "revision": target.number, "release": target.release},
        replace=True,
    )
    return {
        "tenant": tenant,
        "component": component,
        "revision": target.number,
        "release": target.release,
        "result": applied.result,
        "generation": applied.stored.generation,
    }

"""Agent runs: start one for a tenant, list and read them, retry a failed or dead one.

- `POST /api/v1/agents/run` (developer): queue a run of a tenant's agent with an
  input; 202 with the run. The operator's credentials stay here: the worker
  (ingress/runner.py) sends the agent a token of that tenant, minted per attempt.
- `GET /api/v1/runs` (viewers; a tenant token with its own `?tenant=`), filtered by
  tenant, state and event, newest first; `GET /api/v1/runs/{run_id}` (viewers, and a
  tenant token for its own tenant's runs).
- `POST /api/v1/runs/{run_id}/retry` (developer): a `failed` or `dead` run is queued
  again with a fresh budget of attempts; 409 in any other state.

Runs are created here and by the webhook endpoint (routes/webhooks.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from armillary import timestamps, wire
from armillary.api import audit, openapi, paging
from armillary.api.security import Db, Developer, TenantChecked, TenantQuery, visible
from armillary.resources import text, validate
from armillary.resources.meta import Name
from armillary.resources.stack import ComponentName
from armillary.store import agent_runs, repository

router = APIRouter(prefix="/api/v1", tags=["agent runs"])

MAX_LIMIT = 200
MAX_INPUT_KEYS = 1000
State = Literal["queued", "running", "succeeded", "failed", "dead"]


class RunRequest(BaseModel):
    """An operator's run: which tenant's agent, with what input."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tenant: Name
    component: ComponentName = "agent"
    input: dict[str, Any] = Field(default_factory=dict, max_length=MAX_INPUT_KEYS)

    @field_validator("input")
    @classmethod
    def _storable_text(cls, value: dict[str, Any]) -> dict[str, Any]:
        # NUL: Postgres JSON cannot hold one; a lone surrogate: no answer could encode it.
        for loc, message in text.problems(value):
            raise ValueError(f"{validate.format_path(loc)}: {message}")
        return value


def run_document(run: agent_runs.AgentRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "tenant": run.tenant,
        "component": run.component,
        "event": run.event_id,
        "input": run.input,
        "requestedBy": run.requested_by,
        "state": run.state,
        "attempts": run.attempts,
        "maxAttempts": run.max_attempts,
        "nextAttemptAt": timestamps.iso(run.next_attempt_at),
        "claimedBy": run.claimed_by,
        "leaseUntil": timestamps.iso_or_none(run.lease_until),
        "createdAt": timestamps.iso(run.created_at),
        "startedAt": timestamps.iso_or_none(run.started_at),
        "finishedAt": timestamps.iso_or_none(run.finished_at),
        "statusCode": run.status_code,
        "answer": run.answer,
        "durationMs": run.duration_ms,
        "error": run.error,
        "history": run.history,
    }


@router.post(
    "/agents/run",
    status_code=202,
    summary="Start a run of a tenant's agent",
    **openapi.answer(wire.AgentRun, 404),
)
async def start_run(body: RunRequest, request: Request, db: Db, who: Developer) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    async with db.write() as conn:
        await repository.require(conn, "Tenant", body.tenant)
        queued = agent_runs.Request(
            tenant=body.tenant,
            component=body.component,
            input=body.input,
            requested_by=f"{who.kind}:{who.id}",
            max_attempts=request.app.state.settings.agent_run_max_attempts,
        )
        run_id = await agent_runs.create(conn, queued, now=now)
        run = await agent_runs.get(conn, run_id)
    audit.note(request, kind="AgentRun", name=run_id, extra={"tenant": body.tenant})
    return run_document(run)


Text = Annotated[str | None, Query(min_length=1, max_length=253, pattern=r"^[^\x00]*$")]
RunId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]


@router.get("/runs", summary="List agent runs, newest first", **openapi.answer(wire.AgentRunList))
async def list_runs(
    db: Db,
    who: TenantQuery,
    tenant: Text = None,
    state: Annotated[State | None, Query()] = None,
    event: Text = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="At most this many items on a page")
    ] = 50,
    token: paging.KeysetContinue = None,
) -> dict[str, Any]:
    """Paged newest first by (`createdAt`, `id`): `metadata.continue` is a keyset
    cursor on a page's last run, as for events."""
    if who.role == "tenant":
        visible(who, tenant)  # `TenantQuery` admitted it for its own tenant only
    wanted = agent_runs.Filter(
        tenant=tenant,
        state=state,
        event_id=event,
        limit=limit + 1,  # one more than the page: whether another follows
        after=None if token is None else paging.after(token),
    )
    async with db.read() as conn:
        found = await agent_runs.search(conn, wanted)
    taken = found[:limit]
    metadata = (
        {"continue": paging.keyset(taken[-1].created_at, taken[-1].id)}
        if len(found) > limit
        else {}
    )
    return paging.answer([run_document(r) for r in taken if who.sees(r.tenant)], metadata)


@router.get(
    "/runs/{run_id}",
    summary="One agent run, with its attempts",
    **openapi.answer(wire.AgentRun, 404),
)
async def get_run(run_id: RunId, db: Db, who: TenantChecked) -> dict[str, Any]:
    async with db.read() as conn:
        run = await agent_runs.get(conn, run_id)
    visible(who, run.tenant)
    return run_document(run)


@router.post(
    "/runs/{run_id}/retry",
    summary="Queue a failed or dead agent run again",
    **openapi.answer(wire.AgentRun, 404, 409),
)
async def retry_run(run_id: RunId, request: Request, db: Db, _who: Developer) -> dict[str, Any]:
    async with db.write() as conn:
        run = await agent_runs.retry(conn, run_id, now=dt.datetime.now(dt.UTC))
    audit.note(request, kind="AgentRun", name=run_id, extra={"tenant": run.tenant})
    return run_document(run)

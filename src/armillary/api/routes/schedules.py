"""Schedules as they fire: every schedule with its last and next run, a run started
now, and a schedule's runs.

A schedule is named as the schedule controller keys it: a Schedule resource by its
name, a tenant's inline schedule as `<tenant>/<name>` (so `{name}` may hold one `/`).
The Schedule resources themselves are read and written at `/api/v1/schedules` like
every kind; `/api/v1/scheduled-jobs` lists both kinds with what firing has recorded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic.alias_generators import to_camel

from armillary import timestamps, wire
from armillary.api import openapi, paging, reports
from armillary.api.security import Db, Developer, TenantChecked, visible
from armillary.control.schedule_targets import inline_key, resolve
from armillary.control.schedules import ScheduleController
from armillary.errors import NotFound
from armillary.resources import kinds
from armillary.store import allocations, repository, schedule_runs

router = APIRouter(prefix="/api/v1", tags=["schedules"])

_TIMING = ("component", "cron", "time_zone", "concurrency_policy", "starting_deadline_s")
_MORE = ("history_limit", "suspend")


def schedule_document(
    name: str, *, source: str, tenant: str, spec: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    """One schedule as `armillary schedules` shows it: its timing with every default
    spelled out (camelCase, as every field the API answers; the resource's spec spells
    them snake_case), and the status the controller last wrote (empty before it has)."""
    full = kinds.lookup("Schedule").expand({**spec, "tenant": tenant})
    return {
        "name": name,
        "source": source,  # Schedule | Tenant
        "tenant": tenant,
        **{to_camel(key): full.get(key) for key in (*_TIMING, *_MORE)},
        "status": status,
    }


def run_document(
    run: schedule_runs.Run, allocation: allocations.Allocation | None = None
) -> dict[str, Any]:
    return {
        "id": run.id,
        "schedule": run.schedule,
        "tenant": run.tenant,
        "component": run.component,
        "trigger": run.trigger,
        "scheduledTime": timestamps.iso(run.scheduled_at),
        "state": run.state,
        "node": run.node,
        "allocation": run.allocation_id,
        "exitCode": run.exit_code,
        "reason": run.reason,
        "message": run.message,
        "createdAt": timestamps.iso(run.created_at),
        "startedAt": timestamps.iso_or_none(run.started_at),
        "finishedAt": timestamps.iso_or_none(run.finished_at),
        "report": reports.document(allocation.report) if allocation is not None else None,
    }


@router.get(
    "/scheduled-jobs",
    summary="Every schedule, resource or inline, with last/next run",
    **openapi.answer(wire.ScheduledJobList),
)
async def list_schedules(
    db: Db, who: TenantChecked, limit: paging.Limit = None, token: paging.Continue = None
) -> dict[str, Any]:
    """In name order; pages by name (api/paging.py)."""
    async with db.read() as conn:
        states = {s.schedule: s.status for s in await schedule_runs.list_states(conn)}
        items = [
            schedule_document(
                s.name,
                source="Schedule",
                tenant=str(s.spec.get("tenant")),
                spec={k: v for k, v in s.spec.items() if k != "tenant"},
                status=states.get(s.name, {}),
            )
            for s in await repository.list_kind(conn, "Schedule")
        ]
        for tenant in await repository.list_kind(conn, "Tenant"):
            for item in tenant.spec.get("schedules") or []:
                key = inline_key(tenant.name, str(item["name"]))
                spec = {k: v for k, v in item.items() if k != "name"}
                items.append(
                    schedule_document(
                        key,
                        source="Tenant",
                        tenant=tenant.name,
                        spec=spec,
                        status=states.get(key, {}),
                    )
                )
    mine = [i for i in items if who.sees(str(i["tenant"]))]  # a tenant token: its own
    taken, metadata = paging.page(mine, lambda i: str(i["name"]), limit=limit, token=token)
    return paging.answer(taken, metadata)


@router.post(
    "/schedules/{name:path}/run",
    status_code=202,
    summary="Start a run of a schedule now",
    **openapi.answer(wire.ScheduleRun, 404, 409),
)
async def run_now(name: str, request: Request, _who: Developer) -> dict[str, Any]:
    controller: ScheduleController = request.app.state.schedules
    return run_document(await controller.run_now(name))


@router.get(
    "/schedules/{name:path}/runs",
    summary="A schedule's runs, newest first",
    **openapi.answer(wire.ScheduleRunList, 404),
)
async def list_runs(
    name: str,
    db: Db,
    who: TenantChecked,
    limit: paging.Limit = None,
    token: paging.Continue = None,
) -> dict[str, Any]:
    """Newest first, by (fire time, `id`); pages by that key (api/paging.py)."""
    async with db.read() as conn:
        found = await schedule_runs.runs_of(conn, name)
        target = await resolve(conn, name)
        tenant = found[0].tenant if found else (target.tenant if target is not None else None)
        if tenant is None:
            raise NotFound(f"schedule {name!r} not found")
        visible(who, tenant)  # a tenant token sees its own tenant's schedules only
        taken, metadata = paging.page(
            found,
            lambda r: f"{paging.instant(r.scheduled_at)}_{r.id}",
            limit=limit,
            token=token,
            newest_first=True,
        )
        documents = []
        for run in taken:
            allocation = (
                await allocations.get(conn, run.allocation_id)
                if run.active and run.allocation_id
                else None
            )
            documents.append(run_document(run, allocation))
    return paging.answer(documents, metadata)

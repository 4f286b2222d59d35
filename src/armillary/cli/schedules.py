"""`armillary schedules`, `armillary schedule run-now` and `armillary schedule runs`:
what fires when, a run started by hand, and what the runs did.

Schedules are named as the server keys them: a Schedule resource by its name, a
tenant's inline schedule as `TENANT/NAME`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import output, paging
from armillary.cli.console import call, out
from armillary.client import Client

app = typer.Typer(help="One schedule: run it now, list its runs.")
FINAL = {"succeeded", "failed", "stopped"}
WAIT_POLL_S = 0.2

Name = Annotated[str, typer.Argument(help="A Schedule's name, or TENANT/NAME for an inline one.")]


def _moment(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _relative(text: str | None, *, now: dt.datetime) -> str:
    """`5m ago` for a past moment, `in 55m` for a future one, `-` for none."""
    moment = _moment(text)
    if moment is None:
        return "-"
    if moment <= now:
        return f"{output.age(text, now=now)} ago"
    return f"in {output.age(now.isoformat(), now=moment)}"


def _state(status: dict[str, Any], suspend: bool) -> str:
    """Degraded (with its reason) over not Ready (its reason) over Ready."""
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    if not conditions:
        return "Suspended" if suspend else "Pending"
    degraded = conditions.get("Degraded", {})
    if degraded.get("status") == "True":
        return f"Degraded:{degraded.get('reason', '')}"
    ready = conditions.get("Ready", {})
    return "Ready" if ready.get("status") == "True" else str(ready.get("reason", "NotReady"))


def list_schedules(
    ctx: typer.Context,
    output_format: output.Output = output.Format.table,
    limit: paging.Limit = None,
) -> None:
    """Every schedule (Schedule resources and tenants' inline ones), last and next run."""

    async def work(api: Client) -> list[wire.ScheduledJob]:
        return await api.scheduled_jobs(limit=limit)

    now = dt.datetime.now(dt.UTC)
    listing = output.Listing(
        items=[wire.dump(i) for i in call(ctx, work)],
        columns=_schedule_columns(now),
        wide=[("SOURCE", lambda d: d["source"]), ("HISTORY", lambda d: str(d["historyLimit"]))],
        name=lambda d: f"schedule/{d['name']}",
        empty="No schedules.",
    )
    output.show(listing, output_format)


def _schedule_columns(now: dt.datetime) -> list[output.Column]:
    def status(d: dict[str, Any]) -> dict[str, Any]:
        return d.get("status") or {}

    return [
        ("NAME", lambda d: str(d["name"])),
        ("TENANT", lambda d: str(d["tenant"])),
        ("COMPONENT", lambda d: str(d.get("component"))),
        ("CRON", lambda d: str(d.get("cron"))),
        ("TIME ZONE", lambda d: str(d.get("timeZone"))),
        ("POLICY", lambda d: str(d.get("concurrencyPolicy"))),
        ("ACTIVE", lambda d: str(len(status(d).get("active", [])))),
        ("LAST", lambda d: _relative(status(d).get("lastScheduleTime"), now=now)),
        ("NEXT", lambda d: _relative(status(d).get("nextScheduleTime"), now=now)),
        ("STATUS", lambda d: _state(status(d), bool(d.get("suspend")))),
    ]


def _summary(run: wire.ScheduleRun) -> str:
    """`run ID of SCHEDULE STATE [(exit code N)] [on NODE][: message]`."""
    line = f"run {run.id} of {run.schedule} {run.state}"
    if run.state in ("succeeded", "failed"):
        line += f" (exit code {run.exit_code})"
    if run.node:
        line += f" on {run.node}"
    if run.message and run.state != "succeeded":
        line += f": {run.message}"
    return line


async def _until_done(api: Client, run: wire.ScheduleRun) -> wire.ScheduleRun:
    while run.state not in FINAL:
        await asyncio.sleep(WAIT_POLL_S)
        found = [r for r in await api.schedule_runs(run.schedule) if r.id == run.id]
        if not found:  # pruned by history_limit, or its schedule was deleted
            gone = {"state": "stopped", "message": "the run is no longer recorded"}
            return run.model_copy(update=gone)
        run = found[0]
    return run


@app.command("run-now")
def run_now(
    ctx: typer.Context,
    name: Name,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the run ends; exit 1 unless it succeeded.")
    ] = False,
    output_format: output.Output = output.Format.table,
) -> None:
    """Start a run of a schedule now (its concurrency policy applies)."""

    async def work(api: Client) -> wire.ScheduleRun:
        run = await api.run_schedule(name)
        return await _until_done(api, run) if wait else run

    run = call(ctx, work)
    if output_format in (output.Format.table, output.Format.wide):
        out.print(_summary(run), markup=False)
    else:
        output.show(replace(_runs([run]), document=True), output_format)
    if wait and run.state != "succeeded":
        raise typer.Exit(1)


@app.command("runs")
def runs(
    ctx: typer.Context,
    name: Name,
    output_format: output.Output = output.Format.table,
    limit: paging.Limit = None,
) -> None:
    """A schedule's runs still recorded (at most its history_limit finished), newest first."""

    async def work(api: Client) -> list[wire.ScheduleRun]:
        return await api.schedule_runs(name, limit=limit)

    listing = replace(_runs(call(ctx, work)), empty=f"No runs of {name}.")
    output.show(listing, output_format)


def _runs(items: list[wire.ScheduleRun]) -> output.Listing:
    now = dt.datetime.now(dt.UTC)

    def duration(d: dict[str, Any]) -> str:
        started, finished = _moment(d.get("startedAt")), _moment(d.get("finishedAt"))
        return f"{((finished or now) - started).total_seconds():.1f}s" if started else "-"

    return output.Listing(
        items=[wire.dump(i) for i in items],
        columns=[
            ("RUN", lambda d: d["id"]),
            ("TRIGGER", lambda d: d["trigger"]),
            ("SCHEDULED", lambda d: d["scheduledTime"]),
            ("STATE", lambda d: d["state"]),
            ("NODE", lambda d: d.get("node") or "-"),
            ("EXIT", lambda d: "-" if d.get("exitCode") is None else str(d["exitCode"])),
            ("DURATION", duration),
            ("MESSAGE", lambda d: (d.get("message") or "")[:80]),
        ],
        wide=[("REASON", lambda d: d.get("reason") or "-"), ("TENANT", lambda d: d["tenant"])],
        name=lambda d: f"run/{d['id']}",
    )


def register(root: typer.Typer) -> None:
    root.command("schedules")(list_schedules)
    root.add_typer(app, name="schedule")

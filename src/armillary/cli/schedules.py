"""`armillary schedules`, `armillary schedule run-now` and `armillary schedule runs`:
what fires when, a run started by hand, and what the runs did.

Schedules are named as the server keys them: a Schedule resource by its name, a
tenant's inline schedule as `TENANT/NAME`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid

app = typer.Typer(help="One schedule: run it now, list its runs.")
FINAL = {"succeeded", "failed", "stopped"}
WAIT_POLL_S = 0.2

Name = Annotated[str, typer.Argument(help="A Schedule's name, or TENANT/NAME for an inline one.")]
Format = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml")]


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


def _print(value: Any, output_format: str) -> bool:
    """Print `value` as json or yaml; False for table (the caller prints it)."""
    if output_format == "json":
        out.print(output.to_json(value), markup=False)
    elif output_format == "yaml":
        out.print(output.to_yaml(value), markup=False, end="")
    elif output_format == "table":
        return False
    else:
        fail(Invalid(f"--output: expected table, json or yaml, got {output_format!r}"))
    return True


def list_schedules(ctx: typer.Context, output_format: Format = "table") -> None:
    """Every schedule — Schedule resources and tenants' inline ones — with its last and
    next run."""

    async def work(api: Client) -> list[wire.ScheduledJob]:
        return await api.scheduled_jobs()

    items = call(ctx, work)
    if _print([wire.dump(i) for i in items], output_format):
        return
    if not items:
        out.print("No schedules.")
        return
    now = dt.datetime.now(dt.UTC)
    rows = [["NAME", "TENANT", "COMPONENT", "CRON", "TIME ZONE", "POLICY", "ACTIVE"]]
    rows[0] += ["LAST", "NEXT", "STATUS"]
    for item in items:
        status = item.status or {}
        rows.append(
            [
                str(item.name),
                str(item.tenant),
                str(item.component),
                str(item.cron),
                str(item.time_zone),
                str(item.concurrency_policy),
                str(len(status.get("active", []))),
                _relative(status.get("lastScheduleTime"), now=now),
                _relative(status.get("nextScheduleTime"), now=now),
                _state(status, bool(item.suspend)),
            ]
        )
    out.print(output.align(rows), markup=False)


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
    output_format: Format = "table",
) -> None:
    """Start a run of a schedule now (its concurrency policy applies)."""

    async def work(api: Client) -> wire.ScheduleRun:
        run = await api.run_schedule(name)
        return await _until_done(api, run) if wait else run

    run = call(ctx, work)
    if not _print(wire.dump(run), output_format):
        out.print(_summary(run), markup=False)
    if wait and run.state != "succeeded":
        raise typer.Exit(1)


@app.command("runs")
def runs(ctx: typer.Context, name: Name, output_format: Format = "table") -> None:
    """A schedule's runs still recorded (at most its history_limit finished), newest first."""

    async def work(api: Client) -> list[wire.ScheduleRun]:
        return await api.schedule_runs(name)

    items = call(ctx, work)
    if _print([wire.dump(i) for i in items], output_format):
        return
    if not items:
        out.print(f"No runs of {name}.")
        return
    now = time.time()
    rows = [["RUN", "TRIGGER", "SCHEDULED", "STATE", "NODE", "EXIT", "DURATION", "MESSAGE"]]
    for run in items:
        started, finished = _moment(run.started_at), _moment(run.finished_at)
        end = finished or dt.datetime.fromtimestamp(now, dt.UTC)
        duration = f"{(end - started).total_seconds():.1f}s" if started else "-"
        exit_code = run.exit_code
        rows.append(
            [
                run.id,
                run.trigger,
                run.scheduled_time,
                run.state,
                run.node or "-",
                "-" if exit_code is None else str(exit_code),
                duration,
                (run.message or "")[:80],
            ]
        )
    out.print(output.align(rows), markup=False)


def register(root: typer.Typer) -> None:
    root.command("schedules")(list_schedules)
    root.add_typer(app, name="schedule")

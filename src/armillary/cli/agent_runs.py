"""`armillary runs …` and `armillary agents run`: the agent run queue from the terminal.

`runs` lists runs (`-w` then prints a line per change, read from the server's
WebSocket), `runs show ID` prints one with its attempts, `runs retry ID` queues a
failed or dead run again, and `agents run TENANT --input JSON` queues a run of a
tenant's agent (with `--wait`, it prints each change of the run until it ends, and
exits 1 if the run ends dead). All through the API (`/api/v1/runs`,
`/api/v1/agents/run`); `-w` and `--wait` follow the `runs` channel of its WebSocket
(cli/watching.py): nothing polls.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import live, output, subscribe, watching
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid

runs_app = typer.Typer(
    help="Agent runs: list, watch, show, retry.", invoke_without_command=True, no_args_is_help=False
)
agents_app = typer.Typer(help="Tenants' agents: start a run.")
ENDED = {"succeeded", "dead"}


COLUMNS: list[output.Column] = [
    ("ID", lambda d: d["id"]),
    ("CREATED", lambda d: d["createdAt"]),
    ("TENANT", lambda d: d["tenant"]),
    ("COMPONENT", lambda d: d["component"]),
    ("STATE", lambda d: d["state"]),
    ("ATTEMPTS", lambda d: f"{d['attempts']}/{d['maxAttempts']}"),
    ("STATUS", lambda d: "-" if d.get("statusCode") is None else str(d["statusCode"])),
    ("TRIGGER", lambda d: f"event {d['event']}" if d.get("event") else d["requestedBy"]),
]
WIDE: list[output.Column] = [
    ("STARTED", lambda d: d.get("startedAt") or "-"),
    ("FINISHED", lambda d: d.get("finishedAt") or "-"),
    ("NEXT ATTEMPT", lambda d: d["nextAttemptAt"]),
    ("ERROR", lambda d: d.get("error") or "-"),
]


def listing(items: list[wire.AgentRun]) -> output.Listing:
    return output.Listing(
        items=[wire.dump(i) for i in items],
        columns=COLUMNS,
        wide=WIDE,
        name=lambda d: f"run/{d['id']}",
        empty="no agent runs match",
    )


@runs_app.callback()
def list_runs(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's runs.")] = None,
    state: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or dead.")
    ] = None,
    event: Annotated[str | None, typer.Option(help="The run of this event.")] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many (newest first); without it, every one."),
    ] = None,
    out_format: output.Output = output.Format.table,
    watch: live.WatchOption = False,
    watch_events: live.EventsOption = False,
) -> None:
    """List agent runs, newest first; with -w, then a line for each run that starts or
    changes state."""
    if ctx.invoked_subcommand is not None:
        return
    filters: dict[str, str | None] = {"tenant": tenant, "state": state, "event": event}

    def render(items: list[wire.AgentRun]) -> str:
        return output.render(listing(items), out_format)

    async def once(api: Client) -> str:
        return render(await api.agent_runs(filters, limit=limit))

    if not watch:
        out.print(call(ctx, once), markup=False)
        return
    _watch(ctx, filters, limit=limit, fmt=out_format, events=watch_events)


def _watch(
    ctx: typer.Context,
    filters: dict[str, str | None],
    *,
    limit: int | None,
    fmt: output.Format,
    events: bool,
) -> None:
    """`runs -w`: the `runs` channel, agent runs of one tenant or all."""
    payload: dict[str, Any] = {"kind": "agent"}
    if filters.get("tenant"):
        payload["tenant"] = filters["tenant"]

    def watch(api: Client) -> watching.Watch:
        async def relist() -> list[dict[str, Any]]:
            return [wire.dump(i) for i in await api.agent_runs(filters, limit=limit)]

        return watching.Watch(
            subscription=watching.Subscription(channel="runs", payload=payload),
            key=watching.by("id"),
            decode=decode,
            relist=relist,
            keep=watching.matching(filters),
            forgets=False,
        )

    def view(items: list[dict[str, Any]]) -> output.Listing:
        return replace(listing([]), items=items)

    subscribe.follow(ctx, watch, view, fmt, events=events)


def decode(frame: watching.Frame, known: Mapping[str, watching.Doc]) -> watching.Change | None:
    """An agent run's frame on the `runs` channel (provisioning runs share it)."""
    if (frame.get("payload") or {}).get("kind") != "agent":
        return None
    return watching.wrapped("run")(frame, known)


def describe(run: wire.AgentRun) -> str:
    """One run as people read it: what it is, then one line per attempt."""
    lines = [
        f"run {run.id}  {run.tenant}/{run.component}  {run.state}",
        f"  requested by {run.requested_by}" + (f" for event {run.event}" if run.event else ""),
        f"  attempts {run.attempts}/{run.max_attempts}"
        + (f", next at {run.next_attempt_at}" if run.state in ("queued", "failed") else ""),
    ]
    for entry in run.history:
        status = entry.get("status")
        outcome = entry.get("error") or f"answered {status}"
        lines.append(f"  attempt {entry.get('attempt')}: {outcome}  ({entry.get('durationMs')} ms)")
    if run.answer is not None:
        lines.append(f"answer ({run.status_code}): {run.answer}")
    return "\n".join(lines)


@runs_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    out_format: output.Output = output.Format.table,
) -> None:
    """Show one agent run with its attempts and the agent's last answer (the table
    formats print it as text)."""

    async def work(api: Client) -> wire.AgentRun:
        return await api.agent_run(run_id)

    run = call(ctx, work)
    if out_format in (output.Format.table, output.Format.wide):
        out.print(describe(run), markup=False)
        return
    output.show(replace(listing([run]), document=True), out_format)


@runs_app.command("retry")
def retry(ctx: typer.Context, run_id: Annotated[str, typer.Argument(help="The run's id.")]) -> None:
    """Queue a failed or dead run again, with a fresh budget of attempts."""

    async def work(api: Client) -> wire.AgentRun:
        return await api.retry_agent_run(run_id)

    run = call(ctx, work)
    out.print(f"run {run.id} {run.state}", markup=False)


def _change(run: wire.AgentRun) -> str:
    """The line printed when a followed run moves."""
    state = run.state
    if state == "running":
        return f"attempt {run.attempts}/{run.max_attempts} running"
    if state == "failed":
        error, due = run.error, run.next_attempt_at
        return f"attempt {run.attempts} failed: {error}; next at {due}"
    if state == "succeeded":
        return f"succeeded: the agent answered {run.status_code} in {run.duration_ms} ms"
    if state == "dead":
        return f"dead after {run.attempts} attempts: {run.error}"
    return str(state)


async def _follow(api: Client, run: wire.AgentRun) -> wire.AgentRun:
    """Print a line per change of `run` (state, attempt) until it ends, from the `runs`
    channel of the server's WebSocket (relisted over HTTP after a reconnect)."""

    async def relist() -> list[dict[str, Any]]:
        return [wire.dump(await api.agent_run(run.id))]

    watch = watching.Watch(
        subscription=watching.Subscription(
            channel="runs", payload={"tenant": run.tenant, "kind": "agent"}
        ),
        key=watching.by("id"),
        decode=decode,
        relist=relist,
        keep=lambda d: d.get("id") == run.id,
    )
    seen = None
    updates = watching.updates(subscribe.connect(api), watch, said=subscribe.say)
    async with contextlib.aclosing(updates) as feed:
        async for update in feed:
            if update.items:
                run = wire.AgentRun.model_validate(update.items[0])
            mark = (run.state, run.attempts)
            if mark != seen:
                out.print(_change(run), markup=False)
                seen = mark
            if run.state in ENDED:
                break
    return run


@agents_app.command("run")
def run_agent(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="The tenant whose agent runs.")],
    input_json: Annotated[str, typer.Option("--input", help="The input, a JSON object.")] = "{}",
    component: Annotated[str, typer.Option(help="The agent component.")] = "agent",
    wait: Annotated[bool, typer.Option(help="Follow the run until it ends.")] = False,
) -> None:
    """Start a run of TENANT's agent with --input; the agent gets a token of TENANT only."""
    try:
        value = json.loads(input_json)
    except ValueError as exc:
        fail(Invalid(f"--input: not JSON: {exc}"))
    if not isinstance(value, dict):
        fail(Invalid(f"--input: expected a JSON object, got {type(value).__name__}"))

    async def work(api: Client) -> wire.AgentRun:
        run = await api.start_agent_run(tenant, input=value, component=component)
        out.print(f"run {run.id} queued", markup=False)
        return await _follow(api, run) if wait else run

    try:
        run = call(ctx, work)
    except KeyboardInterrupt:  # stops following, not the run
        raise typer.Exit(0) from None
    if run.answer is not None and run.state in ENDED:
        out.print(run.answer, markup=False)
    if run.state == "dead":
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.add_typer(runs_app, name="runs")
    root.add_typer(agents_app, name="agents")

"""`armillary provision …` and `armillary deprovision`: onboard or remove a tenant as a
recorded run, and watch its step timeline live.

Following a run (`provision tenant`, `deprovision`, `provision watch RUN`, `provision
status RUN -w`) and `provision runs -w` read the `runs` channel of the server's
WebSocket (cli/watching.py); nothing here polls."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.text import Text

from armillary import wire
from armillary.cli import live as lives
from armillary.cli import output, paging, subscribe, watching
from armillary.cli.console import call, err, fail, out
from armillary.client import Client
from armillary.errors import Invalid
from armillary.resources import loader

app = typer.Typer(help="Provisioning runs: onboard a tenant in one call, follow its steps.")
MARKS = {
    "succeeded": "✓",
    "failed": "✗",
    "running": "…",
    "rolled-back": "↺",
    "skipped": "·",
    "pending": " ",
}
DONE = {"succeeded", "failed", "rolled-back"}


def _pairs(values: list[str], option: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            fail(Invalid(f"{option}: expected KEY=VALUE, got {value!r}"))
        found[key] = rest
    return found


def _seconds(start: str | None, end: str | None) -> str:
    if not start:
        return ""
    begin = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    finish = (
        dt.datetime.fromisoformat(end.replace("Z", "+00:00")) if end else dt.datetime.now(dt.UTC)
    )
    return f"{(finish - begin).total_seconds():.2f}s"


def timeline(run: wire.ProvisionRun) -> str:
    """The run as people read it: one line per step, the reason for any failure."""
    head = (
        f"run {run.id}  {run.action} {run.org}/{run.tenant}  {run.state}"
        f"  {_seconds(run.started_at, run.finished_at)}"
    )
    rows = [
        [
            MARKS.get(s.state, "?"),
            s.name,
            s.state,
            _seconds(s.started_at, s.finished_at),
            s.error or "",
        ]
        for s in run.steps
    ]
    lines = [head, *("  " + line for line in output.align(rows).splitlines())]
    if run.error:
        lines.append(f"error: {run.error}")
    return "\n".join(lines)


async def _follow(api: Client, run: wire.ProvisionRun) -> wire.ProvisionRun:
    """Follow `run` on the `runs` channel until it ends: its timeline redrawn on each
    change on a terminal; elsewhere (a pipe, a file) the final timeline once."""
    if run.state in DONE:
        if not out.is_terminal:
            out.print(timeline(run), markup=False)
        return run
    live = Live(Text(timeline(run)), console=out, auto_refresh=False) if out.is_terminal else None
    try:
        if live is not None:
            live.start()
        updates = watching.updates(subscribe.connect(api), _one_run(api, run), said=subscribe.say)
        async with contextlib.aclosing(updates) as feed:
            async for update in feed:
                if update.items:
                    run = wire.ProvisionRun.model_validate(update.items[0])
                if live is not None:
                    live.update(Text(timeline(run)), refresh=True)
                if run.state in DONE:
                    break
    finally:
        if live is not None:
            live.stop()
    if live is None:
        out.print(timeline(run), markup=False)
    return run


def _one_run(api: Client, run: wire.ProvisionRun) -> watching.Watch:
    """One provisioning run on the `runs` channel (filtered to its tenant by the server,
    to its id here), listed again over HTTP after a reconnect."""

    async def relist() -> list[dict[str, Any]]:
        return [wire.dump(await api.provision_run(run.id))]

    return watching.Watch(
        subscription=watching.Subscription(
            channel="runs", payload={"tenant": run.tenant, "kind": "provision"}
        ),
        key=watching.by("id"),
        decode=decode,
        relist=relist,
        keep=lambda d: d.get("id") == run.id,
    )


def decode(frame: watching.Frame, known: Mapping[str, watching.Doc]) -> watching.Change | None:
    """A provisioning run's frame on the `runs` channel (agent runs share it)."""
    if (frame.get("payload") or {}).get("kind") != "provision":
        return None
    return watching.wrapped("run")(frame, known)


def _finish(run: wire.ProvisionRun) -> None:
    if run.state != "succeeded" and run.state in DONE:
        raise typer.Exit(1)


@app.command("tenant")
def provision_tenant(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The tenant to create.")],
    org: Annotated[str, typer.Option(help="Its org (created if absent).")],
    stack: Annotated[str, typer.Option(help="The stack it runs (must exist).")],
    env: Annotated[list[str], typer.Option(help="KEY=VALUE for every component.")] = [],  # noqa: B006
    replicas: Annotated[list[str], typer.Option(help="COMPONENT=N.")] = [],  # noqa: B006
    routing: Annotated[list[str], typer.Option(help="SPACE=KEY, e.g. github=acme/app.")] = [],  # noqa: B006
    label: Annotated[list[str], typer.Option(help="KEY=VALUE label.")] = [],  # noqa: B006
    filename: Annotated[
        Path | None, typer.Option("-f", help="A YAML/JSON request with the rest.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Same key → the same run, once.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for health.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the steps until the run ends.")] = True,
) -> None:
    """Provision a tenant: org, tenant, routing, stack up and healthy, seed jobs, schedules."""
    request: dict[str, Any] = {}
    if filename is not None:
        try:
            request = dict(loader.read_mapping(filename))
        except Invalid as exc:
            fail(exc)
    request.update(tenant=name, org=org, stack=stack)
    if env:
        request["env"] = {**request.get("env", {}), **_pairs(env, "--env")}
    for component, count in _pairs(replicas, "--replicas").items():
        if not count.isdigit():
            fail(Invalid(f"--replicas: expected COMPONENT=N, got {component}={count}"))
        request.setdefault("overrides", {}).setdefault(component, {})["replicas"] = int(count)
    for space, key in _pairs(routing, "--routing").items():
        request.setdefault("routing", {}).setdefault(space, []).append(key)
    if label:
        request["labels"] = {**request.get("labels", {}), **_pairs(label, "--label")}
    if idempotency_key:
        request["idempotency_key"] = idempotency_key
    if timeout:
        request["timeout_s"] = timeout

    async def work(api: Client) -> tuple[wire.ProvisionRun, wire.TenantKey | None]:
        run = await api.provision(request)
        if not wait:
            return run, None
        run = await _follow(api, run)
        if run.state == "succeeded":
            return run, await api.collect_tenant_key(run.id)
        return run, None

    run, issued = call(ctx, work)
    if not wait:
        out.print(f"run {run.id} {run.state}  (armillary provision watch {run.id})")
    if issued is not None:
        _print_key(issued)
    _finish(run)


def _print_key(issued: wire.TenantKey) -> None:
    err.print(f"tenant key {issued.id} for {issued.tenant} (shown once; store it now):")
    out.print(issued.token, markup=False)


@app.command()
def token(ctx: typer.Context, run_id: Annotated[str, typer.Argument(metavar="RUN")]) -> None:
    """Collect the tenant key a provisioning run issued (once; later calls say so)."""

    async def work(api: Client) -> wire.TenantKey:
        return await api.collect_tenant_key(run_id)

    _print_key(call(ctx, work))


@app.command()
def status(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN")],
    output_format: output.Output = output.Format.table,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow the run until it ends (as `watch`).")
    ] = False,
) -> None:
    """A run's step timeline, as it stands (the table formats print the timeline). With
    -w, follow it until it ends (as `provision watch RUN`; exit 1 unless it succeeded)."""
    if watch:
        watch_run(ctx, run_id)
        return

    async def work(api: Client) -> wire.ProvisionRun:
        return await api.provision_run(run_id)

    run = call(ctx, work)
    if output_format in (output.Format.table, output.Format.wide):
        out.print(timeline(run), markup=False)
        return
    output.show(replace(_listing([run]), document=True), output_format)


@app.command("watch")
def watch_run(ctx: typer.Context, run_id: Annotated[str, typer.Argument(metavar="RUN")]) -> None:
    """Follow a run live until it ends; exit 1 unless it succeeded."""

    async def work(api: Client) -> wire.ProvisionRun:
        return await _follow(api, await api.provision_run(run_id))

    try:
        run = call(ctx, work)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    _finish(run)


@app.command("runs")
def list_runs(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option()] = None,
    output_format: output.Output = output.Format.table,
    limit: paging.Limit = None,
    watch: lives.WatchOption = False,
    watch_events: lives.EventsOption = False,
) -> None:
    """Provisioning runs, oldest first; with -w, then a line for each run that starts
    or changes state."""
    if watch:
        _watch_runs(ctx, tenant=tenant, limit=limit, fmt=output_format, events=watch_events)
        return

    async def work(api: Client) -> list[wire.ProvisionRun]:
        return await api.provision_runs(tenant=tenant, limit=limit)

    output.show(_listing(call(ctx, work)), output_format)


def _watch_runs(
    ctx: typer.Context, *, tenant: str | None, limit: int | None, fmt: output.Format, events: bool
) -> None:
    payload: dict[str, Any] = {"kind": "provision"}
    if tenant is not None:
        payload["tenant"] = tenant

    def watch(api: Client) -> watching.Watch:
        async def relist() -> list[dict[str, Any]]:
            return [wire.dump(r) for r in await api.provision_runs(tenant=tenant, limit=limit)]

        return watching.Watch(
            subscription=watching.Subscription(channel="runs", payload=payload),
            key=watching.by("id"),
            decode=decode,
            relist=relist,
            keep=watching.matching({"tenant": tenant}),
            forgets=False,
        )

    def view(items: list[dict[str, Any]]) -> output.Listing:
        return replace(_listing([]), items=items)

    subscribe.follow(ctx, watch, view, fmt, events=events)


def _listing(items: list[wire.ProvisionRun]) -> output.Listing:
    return output.Listing(
        items=[wire.dump(r) for r in items],
        columns=[
            ("RUN", lambda d: d["id"]),
            ("ACTION", lambda d: d["action"]),
            ("ORG", lambda d: d["org"]),
            ("TENANT", lambda d: d["tenant"]),
            ("STATE", lambda d: d["state"]),
            ("CREATED", lambda d: d.get("createdAt") or ""),
            ("ERROR", lambda d: (d.get("error") or "")[:60]),
        ],
        wide=[
            ("STARTED", lambda d: d.get("startedAt") or "-"),
            ("FINISHED", lambda d: d.get("finishedAt") or "-"),
            ("STEPS", lambda d: str(len(d.get("steps") or []))),
        ],
        name=lambda d: f"run/{d['id']}",
        empty="No provisioning runs.",
    )


def deprovision(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument()],
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option(help="Follow the steps until the run ends.")] = True,
) -> None:
    """Remove a tenant and everything it runs, as a recorded run."""

    async def work(api: Client) -> wire.ProvisionRun:
        run = await api.deprovision(tenant, idempotency_key=idempotency_key)
        return await _follow(api, run) if wait else run

    run = call(ctx, work)
    if not wait:
        out.print(f"run {run.id} {run.state}  (armillary provision watch {run.id})")
    _finish(run)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="provision")
    root.command()(deprovision)

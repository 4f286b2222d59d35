"""`armillary rollout status|history|undo TENANT[/COMPONENT]`: a tenant's revisions.

Every change of a service component is a revision; the tenant controller rolls it
out health-gated and rolls a failed one back (see docs/releases.md). `undo` pins the
component to an earlier revision's release, like `kubectl rollout undo`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from typing import Annotated

import typer

from armillary import wire
from armillary.cli import output, standing, subscribe, watching
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid

app = typer.Typer(help="Rollouts: revisions of a tenant's components, and undo.")


def _target(value: str, *, component_required: bool = False) -> tuple[str, str | None]:
    tenant, _, component = value.partition("/")
    if not tenant or (component_required and not component):
        shape = "TENANT/COMPONENT" if component_required else "TENANT[/COMPONENT]"
        fail(Invalid(f"expected {shape}, got {value!r}"))
    return tenant, component or None


def _fetch(ctx: typer.Context, target: str) -> wire.Rollouts:
    tenant, component = _target(target)

    async def work(api: Client) -> wire.Rollouts:
        return await api.rollouts(tenant, component=component)

    found = call(ctx, work)
    if component is not None:
        status = {k: v for k, v in found.status.items() if k == component}
        found = found.model_copy(update={"status": status})
    return found


STATUS_COLUMNS: list[output.Column] = [
    ("COMPONENT", lambda d: d["component"]),
    ("REVISION", lambda d: str(d.get("revision", ""))),
    ("RELEASE", lambda d: d.get("release") or "-"),
    ("STATE", lambda d: d.get("state", "")),
    ("MESSAGE", lambda d: d.get("held") or d.get("message") or ""),
]


@app.command()
def status(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="TENANT[/COMPONENT]")],
    out_format: output.Output = output.Format.table,
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="Wait until the rollout is done (or fails)."),
    ] = False,
    timeout: Annotated[str, typer.Option(help="How long -w waits (exit 8 after it).")] = "10m",
) -> None:
    """The current revision of each component: its release, state, and why. With -w,
    first follow the tenant (progress on stderr, as it changes) until it is Ready or
    its rollout failed; exit 1 if it failed, 8 if --timeout passed first."""
    if watch:
        _watch(ctx, target, timeout=timeout)
    found = _fetch(ctx, target)
    docs = [{"component": c, **entry} for c, entry in sorted(found.status.items())]
    recorded = Counter(item.component for item in found.items)
    listing = output.Listing(
        items=docs,
        columns=STATUS_COLUMNS,
        wide=[
            ("REVISIONS", lambda d: str(recorded[d["component"]])),
            ("ROLLED BACK TO", lambda d: str(d.get("rolledBackTo") or "-")),
        ],
        name=lambda d: f"rollout/{found.tenant}/{d['component']}",
        empty=f"tenant/{found.tenant}: no revisions recorded yet",
    )
    output.show(listing, out_format)


HISTORY_COLUMNS: list[output.Column] = [
    ("COMPONENT", lambda d: d["component"]),
    ("REVISION", lambda d: str(d["revision"])),
    ("RELEASE", lambda d: d.get("release") or "-"),
    ("STATE", lambda d: d["state"]),
    ("STARTED", lambda d: d["startedAt"]),
    ("FINISHED", lambda d: d.get("finishedAt") or "-"),
    ("REASON", lambda d: d.get("reason") or ""),
]
HISTORY_WIDE: list[output.Column] = [("TEMPLATE", lambda d: d["templateHash"])]


def _watch(ctx: typer.Context, target: str, *, timeout: str) -> None:
    """Wait as `apply --wait` does, for one tenant; print the table after, then exit
    non-zero if it did not become Ready."""
    tenant, _ = _target(target)
    try:
        timeout_s = standing.duration_s(timeout)
    except Invalid as exc:
        fail(exc)

    async def work(api: Client) -> list[standing.Standing]:
        await api.get("Tenant", tenant)  # NotFound now rather than "deleted" later
        return [await _settled(api, tenant, timeout_s=timeout_s)]

    try:
        standings = call(ctx, work)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    if standing.outcome(standings) != "ready":
        status(ctx, target)
        standing.finish(standings, timeout_s=timeout_s)


async def _settled(api: Client, tenant: str, *, timeout_s: float) -> standing.Standing:
    """Follow the tenant on the `resources` channel until it is Ready or failed (or
    `timeout_s` passes), saying each change of its standing on stderr."""
    watch = watching.Watch(
        subscription=watching.Subscription(
            channel="resources", payload={"kinds": ["Tenant"], "name": tenant}
        ),
        key=watching.resource_key,
        decode=watching.decode_resource,
    )
    last = standing.Standing(tenant=tenant, state="progressing", message="waiting for the server")

    async def follow() -> None:
        nonlocal last
        updates = watching.updates(subscribe.connect(api), watch, said=subscribe.say)
        async with contextlib.aclosing(updates) as feed:
            async for update in feed:
                now = judged(tenant, update.items)
                if now != last:
                    standing.to_stderr(now)
                    last = now
                if now.state != "progressing":
                    return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(follow(), timeout_s)
    return last


def judged(tenant: str, items: Sequence[watching.Doc]) -> standing.Standing:
    """Where the watched tenant stands (deleted: failed)."""
    if not items:
        return standing.Standing(tenant=tenant, state="failed", message="the tenant was deleted")
    return standing.judge(items[0])


@app.command()
def history(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="TENANT[/COMPONENT]")],
    out_format: output.Output = output.Format.table,
) -> None:
    """Every recorded revision, oldest first per component."""
    listing = output.Listing(
        items=[wire.dump(i) for i in _fetch(ctx, target).items],
        columns=HISTORY_COLUMNS,
        wide=HISTORY_WIDE,
        name=lambda d: f"revision/{d['tenant']}/{d['component']}/{d['revision']}",
        empty="no revisions recorded yet",
    )
    output.show(listing, out_format)


@app.command()
def undo(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="TENANT/COMPONENT")],
    to_revision: Annotated[
        int | None, typer.Option(min=1, help="Go back to this revision (default: the previous).")
    ] = None,
) -> None:
    """Pin the component back to an earlier revision's release and roll to it."""
    tenant, component = _target(target, component_required=True)
    assert component is not None

    async def work(api: Client) -> wire.Undone:
        return await api.undo_rollout(tenant, component, to_revision=to_revision)

    result = call(ctx, work)
    out.print(
        f"tenant/{tenant} {result.result}: {component} pinned to {result.release} "
        f"(revision {result.revision})"
    )


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="rollout")

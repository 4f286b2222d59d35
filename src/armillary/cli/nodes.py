"""`armillary nodes`: the machines running node daemons; cordon and uncordon them."""

from __future__ import annotations

from typing import Annotated

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call, out
from armillary.client import Client

app = typer.Typer(help="Node daemons: list, cordon, uncordon.", invoke_without_command=True)


@app.callback()
def nodes(
    ctx: typer.Context,
    output_format: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """List nodes with their state, capacity, usage and replica count."""
    if ctx.invoked_subcommand is not None:
        return

    async def work(api: Client) -> list[wire.Node]:
        return await api.nodes()

    items = call(ctx, work)
    if output_format == "json":
        out.print(output.to_json([wire.dump(n) for n in items]), markup=False)
        return
    if not items:
        out.print("No nodes. Start one with: armillary node --server URL --token TOKEN")
        return
    rows = [["NAME", "STATUS", "ADDRESS", "CPU", "MEMORY", "REPLICAS", "ISOLATION", "LABELS"]]
    for node in items:
        status = "Ready" if node.connected else "NotReady"
        if not node.schedulable:
            status += ",SchedulingDisabled"
        usage = node.usage or {}
        capacity = node.capacity or {}
        cpu = f"{usage.get('cpu_percent', 0):.0f}% of {capacity.get('cpu_millicores', 0) // 1000}"
        memory = f"{usage.get('memory_used_mb', 0)}/{capacity.get('memory_mb', 0)}Mi"
        labels = ",".join(f"{k}={v}" for k, v in node.labels.items()) or "<none>"
        rows.append(
            [
                node.name,
                status,
                node.address,
                cpu,
                memory,
                str(node.replicas),
                node.isolation,
                labels,
            ]
        )
    out.print(output.align(rows), markup=False)
    shared = [n.name for n in items if n.isolation == "shared-user"]
    if shared:  # said every time: it is a property of the node, not a passing event
        out.print(
            f"Tenants share one OS user on {', '.join(shared)} (the daemon is not root): "
            "their replicas can read each other's files and environment. "
            "See docs/security.md.",
            markup=False,
        )


def _set(ctx: typer.Context, name: str, *, schedulable: bool) -> None:
    async def work(api: Client) -> wire.Node:
        return await api.set_schedulable(name, schedulable=schedulable)

    call(ctx, work)
    out.print(f"node/{name} {'uncordoned' if schedulable else 'cordoned'}")


@app.command()
def cordon(ctx: typer.Context, name: str) -> None:
    """Place no new replicas on NAME (running ones stay)."""
    _set(ctx, name, schedulable=False)


@app.command()
def uncordon(ctx: typer.Context, name: str) -> None:
    """Allow placing replicas on NAME again."""
    _set(ctx, name, schedulable=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="nodes")

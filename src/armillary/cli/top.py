"""`armillary top`: CPU and memory per node, as each node's last heartbeat reported
them (`GET /api/v1/nodes`), like `kubectl top nodes`.

Per replica figures are not here: the node reports them with each replica, and `ps`
shows them; `top pods` and `top replicas` say so rather than guess.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid

ELSEWHERE = ("pod", "pods", "po", "replica", "replicas")


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def rows(nodes: list[wire.Node], *, now: dt.datetime) -> list[list[str]]:
    """One row per node: usage from its heartbeat against its capacity. A node with no
    heartbeat yet, or disconnected, shows `<unknown>` rather than stale numbers."""
    table = [["NAME", "CPU%", "CPU(cores)", "MEMORY(Mi)", "MEMORY%", "REPLICAS", "HEARTBEAT"]]
    for node in nodes:
        usage, capacity = node.usage or {}, node.capacity or {}
        cores = capacity.get("cpu_millicores", 0) / 1000
        memory_mb = capacity.get("memory_mb", 0)
        if not node.connected or not usage:
            cpu = cpu_cores = used = used_percent = "<unknown>"
        else:
            cpu = f"{usage.get('cpu_percent', 0):.0f}%"
            cpu_cores = f"{cores * usage.get('cpu_percent', 0) / 100:.2f}/{cores:g}"
            used = f"{usage.get('memory_used_mb', 0)}/{memory_mb}"
            used_percent = _percent(usage.get("memory_used_mb", 0), memory_mb)
        heartbeat = output.age(node.heartbeat_at, now=now) if node.heartbeat_at else "-"
        table.append([node.name, cpu, cpu_cores, used, used_percent, str(node.replicas), heartbeat])
    return table


def top(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(help="nodes (the only one so far).")] = "nodes",
    output_format: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """CPU and memory of each node, from its last heartbeat."""
    if what.lower() in ELSEWHERE:
        fail(Invalid(f"`top {what}` is not there yet; `armillary ps` shows each replica"))
    if what.lower() not in ("node", "nodes", "no"):
        fail(Invalid(f"expected `top nodes`, got {what!r}"))

    async def work(api: Client) -> list[wire.Node]:
        return await api.nodes()

    nodes = call(ctx, work)
    if output_format == "json":
        shown = [
            {"name": n.name, "connected": n.connected, "usage": n.usage, "capacity": n.capacity}
            for n in nodes
        ]
        out.print(output.to_json(shown), markup=False)
        return
    if not nodes:
        out.print("No nodes.")
        return
    out.print(output.align(rows(nodes, now=dt.datetime.now(dt.UTC))), markup=False)


def register(app: typer.Typer) -> None:
    app.command()(top)

"""`armillary nodes`: the machines running node daemons; cordon and uncordon them."""

from __future__ import annotations

from typing import Any

import typer

from armillary import wire
from armillary.cli import output, paging
from armillary.cli.console import call, out
from armillary.client import Client

app = typer.Typer(help="Node daemons: list, cordon, uncordon.", invoke_without_command=True)


@app.callback()
def nodes(
    ctx: typer.Context,
    output_format: output.Output = output.Format.table,
    limit: paging.Limit = None,
) -> None:
    """List nodes with their state, capacity, usage and replica count."""
    if ctx.invoked_subcommand is not None:
        return

    async def work(api: Client) -> list[wire.Node]:
        return await api.nodes(limit=limit)

    items = call(ctx, work)
    listing = output.Listing(
        items=[wire.dump(n) for n in items],
        columns=COLUMNS,
        wide=WIDE,
        name=lambda d: f"node/{d['name']}",
        empty="No nodes. Start one with: armillary node --server URL --token TOKEN",
    )
    output.show(listing, output_format)
    shared = [n.name for n in items if n.isolation == "shared-user"]
    tabular = output_format in (output.Format.table, output.Format.wide)
    if shared and tabular:  # said every time: it is a property of the node, not a passing event
        out.print(
            f"Tenants share one OS user on {', '.join(shared)} (the daemon is not root): "
            "their replicas can read each other's files and environment. "
            "See docs/security.md.",
            markup=False,
        )


def _status(doc: dict[str, Any]) -> str:
    status = doc.get("status") or ("Ready" if doc["connected"] else "NotReady")
    return status if doc["schedulable"] else status + ",SchedulingDisabled"


def _cpu(doc: dict[str, Any]) -> str:
    usage, capacity = doc.get("usage") or {}, doc.get("capacity") or {}
    return f"{usage.get('cpuPercent', 0):.0f}% of {capacity.get('cpuMillicores', 0) // 1000}"


def _memory(doc: dict[str, Any]) -> str:
    usage, capacity = doc.get("usage") or {}, doc.get("capacity") or {}
    return f"{usage.get('memoryUsedMb', 0)}/{capacity.get('memoryMb', 0)}Mi"


COLUMNS: list[output.Column] = [
    ("NAME", lambda d: d["name"]),
    ("STATUS", _status),
    ("ADDRESS", lambda d: d["address"]),
    ("CPU", _cpu),
    ("MEMORY", _memory),
    ("REPLICAS", lambda d: str(d["replicas"])),
    ("ISOLATION", lambda d: d.get("isolation", "shared-user")),
    ("LABELS", lambda d: ",".join(f"{k}={v}" for k, v in d["labels"].items()) or "<none>"),
]
WIDE: list[output.Column] = [
    ("REGISTERED", lambda d: d.get("registeredAt") or "-"),
    ("HEARTBEAT", lambda d: d.get("heartbeatAt") or "-"),
    ("LOST", lambda d: d.get("lostAt") or "-"),
]


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

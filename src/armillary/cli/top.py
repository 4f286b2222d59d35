"""`armillary top`: CPU and memory per node, as each node's last heartbeat reported
them (`GET /api/v1/nodes`), like `kubectl top nodes`.

Per replica figures are not here: the node reports them with each replica, and `ps`
shows them; `top pods` and `top replicas` say so rather than guess.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call, fail
from armillary.client import Client
from armillary.errors import Invalid

ELSEWHERE = ("pod", "pods", "po", "replica", "replicas")
UNKNOWN = "<unknown>"


def _measured(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The node's usage, when it is connected and has sent one; else None (a stale or
    missing figure is shown as unknown, never as a number)."""
    usage = doc.get("usage")
    return usage if doc.get("connected") and usage else None


def _cpu_percent(doc: dict[str, Any]) -> str:
    usage = _measured(doc)
    return f"{usage.get('cpuPercent', 0):.0f}%" if usage else UNKNOWN


def _cpu_cores(doc: dict[str, Any]) -> str:
    usage = _measured(doc)
    cores = (doc.get("capacity") or {}).get("cpuMillicores", 0) / 1000
    if not usage:
        return UNKNOWN
    return f"{cores * usage.get('cpuPercent', 0) / 100:.2f}/{cores:g}"


def _memory(doc: dict[str, Any]) -> str:
    usage = _measured(doc)
    total = (doc.get("capacity") or {}).get("memoryMb", 0)
    return f"{usage.get('memoryUsedMb', 0)}/{total}" if usage else UNKNOWN


def _memory_percent(doc: dict[str, Any]) -> str:
    usage = _measured(doc)
    total = (doc.get("capacity") or {}).get("memoryMb", 0)
    if not usage or not total:
        return UNKNOWN
    return f"{100 * usage.get('memoryUsedMb', 0) / total:.0f}%"


def columns(*, now: dt.datetime) -> list[output.Column]:
    """The table: usage from the last heartbeat against capacity, and its age."""
    return [
        ("NAME", lambda d: str(d["name"])),
        ("CPU%", _cpu_percent),
        ("CPU(cores)", _cpu_cores),
        ("MEMORY(Mi)", _memory),
        ("MEMORY%", _memory_percent),
        ("REPLICAS", lambda d: str(d.get("replicas", 0))),
        ("HEARTBEAT", lambda d: output.age(d.get("heartbeatAt"), now=now)),
    ]


def top(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(help="nodes (the only one so far).")] = "nodes",
    output_format: output.Output = output.Format.table,
) -> None:
    """CPU and memory of each node, from its last heartbeat."""
    if what.lower() in ELSEWHERE:
        fail(Invalid(f"`top {what}` is not there yet; `armillary ps` shows each replica"))
    if what.lower() not in ("node", "nodes", "no"):
        fail(Invalid(f"expected `top nodes`, got {what!r}"))

    async def work(api: Client) -> list[wire.Node]:
        return await api.nodes()

    docs = [wire.dump(n) for n in call(ctx, work)]
    listing = output.Listing(
        items=docs,
        columns=columns(now=dt.datetime.now(dt.UTC)),
        wide=[("STATUS", lambda d: "Ready" if d.get("connected") else "NotReady")],
        name=lambda d: f"node/{d['name']}",
        empty="No nodes.",
    )
    output.show(listing, output_format)


def register(app: typer.Typer) -> None:
    app.command()(top)

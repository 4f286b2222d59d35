"""`armillary nodes`: the machines running node daemons; cordon, drain and uncordon them.

`drain` asks the server to drain a node, then (unless `--no-wait`) follows it until
the node is Drained, printing on stderr what is left there, what has moved and what
waits for its health check elsewhere, as `rollout status -w` does for a tenant.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import live, output, paging, subscribe, watching
from armillary.cli.console import call, err, fail, out
from armillary.client import Client
from armillary.errors import Conflict, Invalid

app = typer.Typer(help="Node daemons: list, cordon, drain, uncordon.", invoke_without_command=True)
POLL_S = 0.5
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
FINISHED = ("succeeded", "failed")  # a job in these holds no process: the drain is past it


@app.callback()
def nodes(
    ctx: typer.Context,
    output_format: output.Output = output.Format.table,
    limit: paging.Limit = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Keep the table current (state, usage) until Ctrl-C; redrawn on a terminal.",
        ),
    ] = False,
    watch_events: live.EventsOption = False,
) -> None:
    """List nodes with their state, capacity, usage and replica count. With -w the table
    is redrawn on each change and heartbeat (a line per change when stdout is not a
    terminal)."""
    if ctx.invoked_subcommand is not None:
        return
    if watch:
        _watch(ctx, limit=limit, fmt=output_format, events=watch_events)
        return

    async def work(api: Client) -> list[wire.Node]:
        return await api.nodes(limit=limit)

    items = call(ctx, work)
    output.show(view([wire.dump(n) for n in items]), output_format)
    shared = [n.name for n in items if n.isolation == "shared-user"]
    tabular = output_format in (output.Format.table, output.Format.wide)
    if shared and tabular:  # said every time: it is a property of the node, not a passing event
        out.print(
            f"Tenants share one OS user on {', '.join(shared)} (the daemon is not root): "
            "their replicas can read each other's files and environment. "
            "See docs/security.md.",
            markup=False,
        )


def view(items: list[dict[str, Any]]) -> output.Listing:
    return output.Listing(
        items=items,
        columns=COLUMNS,
        wide=WIDE,
        name=lambda d: f"node/{d['name']}",
        empty="No nodes. Start one with: armillary node --server URL --token TOKEN",
    )


def _watch(ctx: typer.Context, *, limit: int | None, fmt: output.Format, events: bool) -> None:
    """`nodes -w`: the `nodes` channel, its changes and heartbeats."""

    def watch(api: Client) -> watching.Watch:
        async def relist() -> list[dict[str, Any]]:
            return [wire.dump(n) for n in await api.nodes(limit=limit)]

        return watching.Watch(
            subscription=watching.Subscription(channel="nodes", payload={}),
            key=watching.by("name"),
            decode=watching.decode_node,
            relist=relist,
        )

    subscribe.follow(ctx, watch, view, fmt, redraw=True, events=events)


def _status(doc: dict[str, Any]) -> str:
    status = doc.get("status") or ("Ready" if doc["connected"] else "NotReady")
    drain = (doc.get("drain") or {}).get("state")
    if drain is not None:  # a drain cordons: its state says more than SchedulingDisabled
        return f"{status},{drain.capitalize()}"
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
    ("SERVER", lambda d: d.get("server") or "-"),
    ("REGISTERED", lambda d: d.get("registeredAt") or "-"),
    ("HEARTBEAT", lambda d: d.get("heartbeatAt") or "-"),
    ("DRAIN DEADLINE", lambda d: (d.get("drain") or {}).get("deadlineAt") or "-"),
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
    """Allow placing replicas on NAME again (ends a drain)."""
    _set(ctx, name, schedulable=True)


def deadline_s(text: str) -> int:
    """`--deadline`: `90s`, `15m`, `1h`, `2d`, or a number of seconds (`0`: at once)."""
    found = _DURATION.match(text.strip())
    if found is None:
        fail(Invalid(f"--deadline: expected a duration like 90s, 15m or 1h, got {text!r}"))
    return int(found.group(1)) * _UNITS[found.group(2)]


@app.command()
def drain(
    ctx: typer.Context,
    name: str,
    deadline: Annotated[
        str,
        typer.Option(help="Stop what still runs on NAME after this long (0: at once)."),
    ] = "1h",
    no_deadline: Annotated[
        bool, typer.Option("--no-deadline", help="Wait for the replicas and jobs however long.")
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Start the drain and return at once.")
    ] = False,
) -> None:
    """Cordon NAME and move its replicas to other nodes, each within its rollout budget
    (the replacement first, the old one once it is healthy); jobs may finish until the
    deadline, which stops what is left. Waits until NAME is Drained unless --no-wait;
    `uncordon` ends the drain."""
    seconds = None if no_deadline else deadline_s(deadline)

    async def work(api: Client) -> wire.Node:
        before = await _on_node(api, name)
        node = await api.drain(name, deadline_s=seconds)
        if no_wait:
            return node
        return await _follow(api, name, before)

    node = call(ctx, work)
    if node.drain is not None and node.drain.state == "drained":
        out.print(f"node/{name} drained")
    else:
        out.print(f"node/{name} draining")


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """How far a drain has come, for its slots (tenant, component, replica) that
    were on the node when it started."""

    left: int  # still on the node (finished jobs aside)
    moved: int  # running elsewhere, and gone from the node
    waiting: int  # placed elsewhere, not running (healthy) yet

    def line(self, name: str) -> str:
        return (
            f"node/{name}: draining: {self.left} left, {self.moved} moved, "
            f"{self.waiting} waiting for health"
        )


Slot = tuple[str, str, int]


def progress(name: str, before: set[Slot], replicas: list[wire.Replica]) -> Progress:
    """Pure: count `before`'s slots among `replicas` as they are now."""
    left: set[Slot] = set()
    running: set[Slot] = set()
    placed: set[Slot] = set()
    for r in replicas:
        slot = (r.tenant, r.component, r.replica)
        if r.node == name and not _finished(r):
            left.add(slot)
        elif r.node != name and slot in before:
            running_now = (r.report or {}).get("state") == "running"
            (running if running_now else placed).add(slot)
    return Progress(
        left=len(left),
        moved=len(running - left),
        waiting=len(placed - running),  # successors not ready yet, the old one there or not
    )


async def _on_node(api: Client, name: str) -> set[Slot]:
    return {
        (r.tenant, r.component, r.replica)
        for r in await api.replicas()
        if r.node == name and not _finished(r)
    }


def _finished(replica: wire.Replica) -> bool:
    """A job that has ended holds no process: the drain does not wait for it."""
    return replica.type == "job" and (replica.report or {}).get("state") in FINISHED


async def _follow(api: Client, name: str, before: set[Slot]) -> wire.Node:
    """Poll until `name` is drained, printing each change of progress on stderr."""
    said = ""
    while True:
        node = next((n for n in await api.nodes() if n.name == name), None)
        if node is None or node.drain is None:
            raise Conflict(f"node/{name}: the drain ended before the node was empty")
        if node.drain.state == "drained":
            return node
        line = progress(name, before, await api.replicas()).line(name)
        if line != said:
            err.print(line, markup=False)
            said = line
        await asyncio.sleep(POLL_S)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="nodes")

"""`armillary ps`, `logs` and `exec`: the replicas that run, what they print, and a
command run inside one of them (its env and cwd, on its node)."""

from __future__ import annotations

import base64
import datetime as dt
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call, fail
from armillary.client import Client
from armillary.errors import Invalid, NotFound

Target = Annotated[str, typer.Argument(help="TENANT/COMPONENT")]
ReplicaIndex = Annotated[int, typer.Option("--replica", "-r", help="Which replica (0-based).")]


def _split(target: str) -> tuple[str, str]:
    tenant, sep, component = target.partition("/")
    if not sep or not tenant or not component:
        fail(Invalid(f"expected TENANT/COMPONENT, got {target!r}"))
    return tenant, component


def _uptime(report: dict[str, Any], now: dt.datetime) -> str:
    started = report.get("startedAt")
    if not started or report.get("state") not in ("running", "starting", "unhealthy"):
        return "-"
    return output.age(started, now=now)


def _health(report: dict[str, Any]) -> str:
    healthy = report.get("healthy")
    return "-" if healthy is None else ("healthy" if healthy else "unhealthy")


def ps(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Argument(help="TENANT or TENANT/COMPONENT.")] = None,
    output_format: output.Output = output.Format.table,
) -> None:
    """List replicas: node, pid, state, health, restarts, uptime, ports, and why one
    fails or is Pending (no node takes it)."""
    tenant, _, component = (target or "").partition("/")

    async def work(api: Client) -> wire.ReplicaList:
        found = await api.replica_list(tenant=tenant or None, component=component or None)
        if tenant and not found.items and not found.unplaced:
            await require_tenant(api, tenant)
        return found

    listed = call(ctx, work)
    placed = [wire.dump(i) for i in listed.items]
    waiting = [{**wire.dump(u), "node": None} for u in listed.unplaced]
    docs = sorted([*placed, *waiting], key=lambda d: (d["tenant"], d["component"], d["replica"]))
    now = dt.datetime.now(dt.UTC)
    listing = output.Listing(
        items=docs,
        columns=[(title, _cell(i, now=now)) for i, title in enumerate(COLUMNS)],
        wide=WIDE,
        name=lambda d: f"replica/{d['name']}",
        empty="No replicas.",
    )
    output.show(listing, output_format)


COLUMNS = ["TENANT", "COMPONENT", "REPLICA", "NODE", "PID", "STATE", "HEALTH", "RESTARTS"]
COLUMNS += ["UPTIME", "PORTS", "MESSAGE"]
WIDE: list[output.Column] = [
    ("ID", lambda d: str(d.get("id") or "-")),
    ("SPEC HASH", lambda d: str(d.get("specHash") or "-")),
    ("CREATED", lambda d: str(d.get("createdAt") or "-")),
]


def _cell(index: int, *, now: dt.datetime) -> Callable[[dict[str, Any]], str]:
    """The column `index` of `_row`."""
    return lambda doc: _row(doc, now=now)[index]


def _row(doc: dict[str, Any], *, now: dt.datetime) -> list[str]:
    """One replica's table cells (`COLUMNS`), placed or Pending."""
    if doc["node"] is None:
        return _pending_row(doc)
    report = doc.get("report") or {}
    state = report.get("state", "pending")
    if report.get("reason") and state in ("failed", "crashloop", "backoff"):
        state = f"{state}:{report['reason']}"
    return [
        doc["tenant"],
        doc["component"],
        str(doc.get("name")),
        doc["node"],
        str(report.get("pid") or "-"),
        state,
        _health(report),
        str(report.get("restarts", 0)),
        _uptime(report, now),
        ",".join(f"{k}:{v}" for k, v in (doc.get("ports") or {}).items()) or "-",
        "-",
    ]


def _pending_row(unplaced: dict[str, Any]) -> list[str]:
    """A replica no node takes, as kubectl shows an unschedulable pod: Pending on
    <none>, and why in words with the nodes counted per reason."""
    return [
        unplaced["tenant"],
        unplaced["component"],
        unplaced["name"],
        "<none>",
        "-",
        unplaced["state"],
        "-",
        "0",
        "-",
        "-",
        f"{unplaced['reason']}: {unplaced['message']}",
    ]


async def require_tenant(api: Client, tenant: str) -> None:
    """NotFound, saying so, when `tenant` does not exist: an empty answer about a
    tenant nobody declared (a typo) must not read as "no replicas yet"."""
    try:
        await api.get("Tenant", tenant)
    except NotFound:
        raise NotFound(f"tenant {tenant!r} does not exist (see `armillary get tenants`)") from None


async def _pick(api: Client, target: str, replica: int) -> wire.Replica:
    tenant, component = _split(target)
    items = [
        i for i in await api.replicas(tenant=tenant, component=component) if i.replica == replica
    ]
    if not items:
        await require_tenant(api, tenant)
        raise NotFound(f"{target} has no replica {replica}")
    running = [i for i in items if (i.report or {}).get("state") in ("running", "starting")]
    return sorted(running or items, key=lambda i: i.created_at)[-1]


def logs(
    ctx: typer.Context,
    target: Target,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output.")
    ] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only output from the last DURATION (30s, 5m, 2h), to ~2 s.")
    ] = None,
    replica: ReplicaIndex = 0,
) -> None:
    """Print a replica's output (stdout and stderr, as written)."""
    since_s = _duration(since) if since else None

    async def work(api: Client) -> None:
        chosen = await _pick(api, target, replica)
        async for text in api.logs(chosen.id, follow=follow, tail=tail, since_s=since_s):
            sys.stdout.write(text)
            sys.stdout.flush()

    try:
        call(ctx, work)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def exec_(
    ctx: typer.Context,
    target: Target,
    command: Annotated[list[str], typer.Argument(help="-- COMMAND [ARGS...]")],
    replica: ReplicaIndex = 0,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout", help="Seconds before it is killed.")
    ] = None,
) -> None:
    """Run a command in a replica's env and cwd on its node; exit with its exit code."""
    exit_code: list[int] = [0]

    async def work(api: Client) -> None:
        chosen = await _pick(api, target, replica)
        async for event in api.exec(chosen.id, command, timeout_s=timeout_s):
            sent = event.model_fields_set
            if event.data is not None:
                stream = sys.stdout if event.fd == "stdout" else sys.stderr
                stream.buffer.write(base64.b64decode(event.data))
                stream.flush()
            elif "exit_code" in sent or "error" in sent:
                if event.error:
                    sys.stderr.write(f"armillary: {event.error}\n")
                code = event.exit_code
                # No exit code: timed out (124, as timeout(1) says) or the node went away.
                exit_code[0] = int(code) if code is not None else 124

    call(ctx, work)
    raise typer.Exit(exit_code[0])


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.replace(".", "", 1).isdigit():
        fail(Invalid(f"--since: expected a duration like 30s, 5m or 2h, got {text!r}"))
    return float(number) * units[unit]


def register(app: typer.Typer) -> None:
    app.command()(ps)
    app.command()(logs)
    app.command("exec")(exec_)

"""`armillary ps`, `logs` and `exec`: the replicas that run, what they print, and a
command run inside one of them (its env and cwd, on its node)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.markup import escape

from armillary import wire
from armillary.cli import live, output, selection, subscribe, watching
from armillary.cli.console import EXIT_ERROR, call, err, fail
from armillary.client import Client
from armillary.errors import ArmillaryError, Invalid, NotFound

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
    selector: selection.Option = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Keep the table current until Ctrl-C (redrawn on a terminal)."
        ),
    ] = False,
    watch_events: live.EventsOption = False,
) -> None:
    """List replicas: where they run, their state and health, and why one fails.

    Node, pid, state, health, restarts, last exit code, revision, CPU and memory,
    uptime, and why one fails or is Pending (no node takes it). `-l` selects by the
    tenants' labels; `-o wide` adds ports, ids and hashes. With -w the table is redrawn
    in place on each change (a line per change when stdout is not a terminal)."""
    tenant, _, component = (target or "").partition("/")
    selection.check(selector)
    if watch:
        _watch(
            ctx,
            tenant=tenant or None,
            component=component or None,
            selector=selector,
            fmt=output_format,
            events=watch_events,
        )
        return

    async def work(api: Client) -> list[dict[str, Any]]:
        return await _listed(
            api, tenant=tenant or None, component=component or None, selector=selector
        )

    output.show(view(call(ctx, work)), output_format)


async def _listed(
    api: Client, *, tenant: str | None, component: str | None, selector: str | None
) -> list[dict[str, Any]]:
    """The replicas `ps` shows, placed and Pending, as documents."""
    found = await api.replica_list(tenant=tenant, component=component, selector=selector)
    if tenant and not found.items and not found.unplaced:
        await require_tenant(api, tenant)
    placed = [wire.dump(i) for i in found.items]
    return [*placed, *({**wire.dump(u), "node": None} for u in found.unplaced)]


def view(items: list[dict[str, Any]]) -> output.Listing:
    """`ps`'s table of `items`: by tenant, component and replica; a Pending row only
    while no node runs its slot."""
    placed = {_slot(d) for d in items if d["node"] is not None}
    shown = [d for d in items if d["node"] is not None or _slot(d) not in placed]
    now = dt.datetime.now(dt.UTC)
    return output.Listing(
        items=sorted(shown, key=lambda d: (d["tenant"], d["component"], d["replica"])),
        columns=[(title, _cell(i, now=now)) for i, title in enumerate(COLUMNS)],
        wide=WIDE,
        name=lambda d: f"replica/{d['name']}",
        empty="No replicas.",
    )


def _slot(doc: dict[str, Any]) -> tuple[str, str, int]:
    return (doc["tenant"], doc["component"], int(doc["replica"]))


def _key(doc: dict[str, Any]) -> str:
    """A placed replica by its id; a Pending one by its slot (it has no id yet)."""
    if doc.get("node") is None:
        return "pending/" + "/".join(str(p) for p in _slot(doc))
    return str(doc["id"])


def _watch(
    ctx: typer.Context,
    *,
    tenant: str | None,
    component: str | None,
    selector: str | None,
    fmt: output.Format,
    events: bool,
) -> None:
    """`ps -w`: the `replicas` channel; with `-l`, the tenants the selector matched at
    the last list (the channel filters by tenant, not by label)."""
    payload = {k: v for k, v in (("tenant", tenant), ("component", component)) if v}
    selected: set[str] = set()

    def watch(api: Client) -> watching.Watch:
        async def relist() -> list[dict[str, Any]]:
            if selector is not None:
                tenants = await api.list_kind("Tenant", selector=selector)
                selected.clear()
                selected.update(t.metadata.name for t in tenants)
            return await _listed(api, tenant=tenant, component=component, selector=selector)

        return watching.Watch(
            subscription=watching.Subscription(channel="replicas", payload=payload),
            key=_key,
            decode=watching.wrapped("replica"),
            relist=relist,
            keep=lambda d: selector is None or d["tenant"] in selected,
        )

    subscribe.follow(ctx, watch, view, fmt, redraw=True, events=events)


COLUMNS = ["TENANT", "COMPONENT", "REPLICA", "NODE", "PID", "STATE", "HEALTH", "RESTARTS"]
COLUMNS += ["EXIT", "REVISION", "CPU", "MEMORY", "UPTIME", "MESSAGE"]
WIDE: list[output.Column] = [
    ("PORTS", lambda d: ",".join(f"{k}:{v}" for k, v in (d.get("ports") or {}).items()) or "-"),
    ("ID", lambda d: str(d.get("id") or "-")),
    ("SPEC HASH", lambda d: str(d.get("specHash") or "-")),
    ("CREATED", lambda d: str(d.get("createdAt") or "-")),
]
REVISION_CHARS = 8
"""Of the spec hash: enough to tell a rollout's old and new replica of a slot apart."""


def _cell(index: int, *, now: dt.datetime) -> Callable[[dict[str, Any]], str]:
    """The column `index` of `_row`."""
    return lambda doc: _row(doc, now=now)[index]


def _usage(doc: dict[str, Any]) -> list[str]:
    """CPU (percent of one CPU) and memory (MiB) its node measured at its last beat."""
    usage = doc.get("usage") or {}
    cpu, memory = usage.get("cpuPercent"), usage.get("memoryMb")
    return [
        "-" if cpu is None else f"{float(cpu):.1f}%",
        "-" if memory is None else f"{float(memory):.0f}Mi",
    ]


def _row(doc: dict[str, Any], *, now: dt.datetime) -> list[str]:
    """One replica's table cells (`COLUMNS`), placed or Pending."""
    if doc["node"] is None:
        return _pending_row(doc)
    report = doc.get("report") or {}
    state = report.get("state", "pending")
    if report.get("reason") and state in ("failed", "crashloop", "backoff"):
        state = f"{state}:{report['reason']}"
    exit_code = report.get("exitCode")
    return [
        doc["tenant"],
        doc["component"],
        str(doc.get("name")),
        doc["node"],
        str(report.get("pid") or "-"),
        state,
        _health(report),
        str(report.get("restarts", 0)),
        "-" if exit_code is None else str(exit_code),
        str(doc.get("specHash") or "-")[:REVISION_CHARS],
        *_usage(doc),
        _uptime(report, now),
        report.get("message") or "-",
    ]


def _pending_row(unplaced: dict[str, Any]) -> list[str]:
    """A replica no node takes, as kubectl shows an unschedulable pod: Pending on
    <none>, and why in words with the nodes counted per reason."""
    nothing = ["-"] * 5  # exit, revision, cpu, memory, uptime: no process, no allocation
    return [
        unplaced["tenant"],
        unplaced["component"],
        unplaced["name"],
        "<none>",
        "-",
        unplaced["state"],
        "-",
        "0",
        *nothing,
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
    return _current(items)[0]


def _current(items: list[wire.Replica]) -> list[wire.Replica]:
    """One allocation per replica slot, in tenant, component, index order: during a
    rolling update, the running one (else the newest)."""
    slots: dict[tuple[str, str, int], list[wire.Replica]] = {}
    for item in items:
        slots.setdefault((item.tenant, item.component, item.replica), []).append(item)
    chosen = []
    for _, found in sorted(slots.items()):
        running = [i for i in found if (i.report or {}).get("state") in ("running", "starting")]
        chosen.append(sorted(running or found, key=lambda i: i.created_at)[-1])
    return chosen


async def _targets(
    api: Client, target: str | None, *, replica: int | None, selector: str | None
) -> tuple[list[wire.Replica], bool]:
    """The replicas `logs` reads, and whether the target named a single one (a replica
    name, or `-r`): TENANT/COMPONENT, a replica name as `ps` prints it, a TENANT, or
    none (with `-l`)."""
    single = replica is not None
    if target is not None and "/" in target:
        tenant, component = _split(target)
        listed = await api.replica_list(tenant=tenant, component=component, selector=selector)
        items = listed.items
        if not items:
            await require_tenant(api, tenant)
            raise NotFound(f"{target} has no replicas")
    else:
        items = (await api.replica_list(selector=selector)).items
        if target is not None:
            named = [i for i in items if i.name == target]
            single = single or bool(named)
            items = named or [i for i in items if i.tenant == target]
            if not items:
                raise NotFound(f"no replica is named {target!r}, nor is it a tenant with replicas")
    if replica is not None:
        items = [i for i in items if i.replica == replica]
        if not items:
            raise NotFound(f"{target or selector} has no replica {replica}")
    return _current(items), single


def logs(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Argument(help="TENANT/COMPONENT, a replica name as ps prints it, or TENANT."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output.")
    ] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines (of each).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only output from the last DURATION (30s, 5m, 2h), to ~2 s.")
    ] = None,
    replica: Annotated[
        int | None, typer.Option("--replica", "-r", help="Only replica N (0-based).")
    ] = None,
    selector: selection.Option = None,
    timestamps: Annotated[
        bool,
        typer.Option("--timestamps", help="Prefix each line with when the node saw it (RFC 3339)."),
    ] = False,
    previous: Annotated[
        bool, typer.Option("--previous", "-p", help="The last finished (crashed) run's output.")
    ] = False,
    prefix: Annotated[
        bool | None,
        typer.Option(
            "--prefix/--no-prefix",
            help="Prefix lines with the replica name (default: unless one replica is named).",
        ),
    ] = None,
) -> None:
    """Print what replicas write: every replica of a component, or one.

    Stdout and stderr as written; with several replicas, each line is prefixed with
    its replica's name."""
    if target is None and selector is None:
        raise typer.BadParameter("name a TENANT/COMPONENT or a replica, or give -l SELECTOR")
    selection.check(selector)
    reading = _Reading(
        follow=follow and not previous,
        tail=tail,
        since_s=_duration(since) if since else None,
        previous=previous,
        timestamps=timestamps,
    )
    failed: list[str] = []

    async def work(api: Client) -> None:
        chosen, single = await _targets(api, target, replica=replica, selector=selector)
        if not chosen:
            err.print(f"No replicas match {selector!r}.")
            return
        width = max(len(str(c.name)) for c in chosen)
        prefixed = prefix if prefix is not None else not single
        leads = [f"{c.name!s:<{width}} | " if prefixed else "" for c in chosen]
        if len(chosen) == 1:
            await _print(api, chosen[0], lead=leads[0], reading=reading)
            return

        async def each(one: wire.Replica, lead: str) -> None:
            try:
                await _print(api, one, lead=lead, reading=reading)
            except ArmillaryError as exc:  # say which, and let the others go on
                err.print(f"[red]error:[/red] {escape(str(one.name))}: {escape(str(exc))}")
                failed.append(str(one.name))

        pairs = list(zip(chosen, leads, strict=True))
        if reading.follow:  # interleaved, as they come
            await asyncio.gather(*(each(c, lead) for c, lead in pairs))
        else:  # one replica after the other, as kubectl prints pods
            for c, lead in pairs:
                await each(c, lead)

    try:
        call(ctx, work)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    if failed:
        raise typer.Exit(EXIT_ERROR)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Reading:
    """What `logs` asks of each replica's stream."""

    follow: bool
    tail: int | None
    since_s: float | None
    previous: bool
    timestamps: bool


async def _print(api: Client, replica: wire.Replica, *, lead: str, reading: _Reading) -> None:
    """Write one replica's output to stdout, each whole line after `lead`."""
    pending = ""
    async for text in api.logs(
        replica.id,
        follow=reading.follow,
        tail=reading.tail,
        since_s=reading.since_s,
        previous=reading.previous,
        timestamps=reading.timestamps,
    ):
        if not lead:
            _write(text)
            continue
        *lines, pending = (pending + text).split("\n")
        _write("".join(f"{lead}{line}\n" for line in lines))
    if pending:
        _write(f"{lead}{pending}\n")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


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

"""Waiting for applied tenants to become Ready, and saying early when they will not.

`up` calls `wait` after its apply. It polls the tenants and the replicas, keeps a
progress bar of ready replicas, and prints a line the first time a replica backs off,
crash-loops, fails or cannot be placed — with its reason and message (`exited with
code 1; 3 in a row; restarting in 2s`) — so the user sees the cause while it happens.

The rule for giving up, so that `up` never waits out a failure it already knows of:
- a service replica in `crashloop`, or any replica `failed` (its command could not be
  started, a job gave up, restart policy `never`), ends the wait at once with a
  `PermanentError` naming the component, its reason and its last lines of output;
- otherwise, tenants still not Ready after `deadline_s` end it with `TimedOut`.
A replica in `backoff` is only reported: it may yet come up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from armillary import wire
from armillary.client import Client
from armillary.errors import ArmillaryError, PermanentError, TimedOut

POLL_S = 0.1
LOG_LINES = 10
TROUBLE = ("backoff", "crashloop", "failed")


def ready(tenant: dict[str, Any]) -> bool:
    for condition in tenant.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return bool(condition["status"] == "True")
    return False


def message(tenant: dict[str, Any]) -> str:
    for condition in tenant.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return str(condition.get("message", ""))
    return "no status yet"


async def wait(
    api: Client, *, console: Console, deadline_s: float
) -> tuple[list[dict[str, Any]], ArmillaryError | None]:
    """The tenants once all are Ready, with None; or as they are when the rule above
    gives up, with the error that says why."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("replicas ready", total=None)
        deadline = time.monotonic() + deadline_s
        told: set[tuple[str, str]] = set()
        while True:
            tenants = [wire.dump(t) for t in await api.list_kind("Tenant")]
            status = [t.get("status", {}).get("replicas", {}) for t in tenants]
            desired = sum(s.get("desired", 0) for s in status)
            progress.update(
                task, total=desired or None, completed=sum(s.get("ready", 0) for s in status)
            )
            if tenants and all(ready(t) for t in tenants):
                return tenants, None
            listing = await api.replica_list()
            fatal = _tell(listing, told, progress.console)
            if fatal is not None:
                return tenants, await _failed(api, fatal)
            if time.monotonic() > deadline:
                return tenants, _timed_out(tenants, deadline_s)
            await asyncio.sleep(POLL_S)


def _where(replica: wire.Replica) -> str:
    return f"{replica.tenant}/{replica.component} (replica {replica.name or replica.replica})"


def _why(report: dict[str, Any]) -> str:
    """`crashloop (CrashLoop): exited with code 1; 5 in a row; restarting in 8s`."""
    state = str(report.get("state", ""))
    reason = report.get("reason")
    message = report.get("message")
    head = f"{state} ({reason})" if reason else state
    return f"{head}: {message}" if message else head


def _tell(
    listing: wire.ReplicaList, told: set[tuple[str, str]], console: Console
) -> wire.Replica | None:
    """Print each new trouble once (per replica and state); return a fatal replica."""
    fatal = None
    for replica in listing.items:
        report = replica.report or {}
        state = str(report.get("state", ""))
        if state not in TROUBLE:
            continue
        if (replica.id, state) not in told:
            told.add((replica.id, state))
            console.print(f"[yellow]{escape(_where(replica))}:[/yellow] {escape(_why(report))}")
        if fatal is None and (
            state == "failed" or (state == "crashloop" and replica.type != "job")
        ):
            fatal = replica
    for pending in listing.unplaced:
        if (pending.name, "unplaced") not in told:
            told.add((pending.name, "unplaced"))
            console.print(
                f"[yellow]{escape(pending.tenant)}/{escape(pending.component)} "
                f"(replica {escape(pending.name)}): {escape(pending.state)}[/yellow] "
                f"{escape(pending.reason)}: {escape(pending.message)}"
            )
    return fatal


async def _failed(api: Client, replica: wire.Replica) -> PermanentError:
    report = replica.report or {}
    lines = [f"{_where(replica)}: {_why(report)}"]
    try:
        chunks = [c async for c in api.logs(replica.id, follow=False, tail=LOG_LINES, since_s=None)]
    except ArmillaryError:
        chunks = []  # the output is a help, not the point: the reason above is
    output = "".join(chunks).rstrip("\n")
    if output:
        lines.append("its last output:")
        lines.extend(f"  {line}" for line in output.splitlines()[-LOG_LINES:])
    return PermanentError("\n".join(lines))


def _timed_out(tenants: list[dict[str, Any]], deadline_s: float) -> TimedOut:
    waiting = [f"tenant/{t['metadata']['name']}: {message(t)}" for t in tenants if not ready(t)]
    return TimedOut(
        f"not every tenant became Ready within {deadline_s:.0f}s:\n"
        + "\n".join(waiting or ["no tenant was applied"])
        + "\nsee `armillary describe tenant NAME`"
    )

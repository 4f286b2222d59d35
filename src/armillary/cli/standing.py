"""Waiting until tenants converge, for `apply --wait` and `rollout status -w`.

`judge` reads one tenant's stored document and says where it stands (pure): Ready
only once the controller has seen the tenant's current generation (and its Stack's,
when that changed) and reports every replica ready with no problem; failed when its
Stack is missing, its reconcile gave up, or the latest revision of a component
failed (rolled back, or nothing to roll back to); progressing otherwise. `wait` polls
the tenants until each is Ready or failed, or the timeout passes, and reports every
change of standing as it happens, so a user sees what is slow and why.

It reads only the tenants' status (what the controller concluded, rollbacks
included), one tenant at a time, so a tenant token can wait on its own tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import typer

from armillary.cli.console import EXIT_ERROR, EXIT_UNAVAILABLE, err
from armillary.client import Client
from armillary.errors import Invalid, NotFound

State = Literal["ready", "failed", "progressing"]
TERMINAL_REASONS = frozenset({"StackNotFound", "ReconcileFailed"})
POLL_S = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing:
    """Where one tenant stands, in one line a person can act on."""

    tenant: str
    state: State
    message: str

    def line(self) -> str:
        word = {"ready": "Ready", "failed": "failed", "progressing": "progressing"}[self.state]
        return f"tenant/{self.tenant} {word}: {self.message}"


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for found in status.get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return {}


def judge(document: Mapping[str, Any], *, stack_generation: int | None = None) -> Standing:
    """Where the tenant in `document` (as the API returns it) stands. `stack_generation`:
    the Stack's generation a just-applied change gave it, which the tenant's status
    must have seen before its Ready counts."""
    name = str(document["metadata"]["name"])
    generation = int(document["metadata"]["generation"])
    status: Mapping[str, Any] = document.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is None or int(observed) < generation:
        return Standing(tenant=name, state="progressing", message="waiting for the controller")
    seen_stack = status.get("stackGeneration")
    ready, degraded = _condition(status, "Ready"), _condition(status, "Degraded")
    if ready.get("reason") in TERMINAL_REASONS:
        return Standing(tenant=name, state="failed", message=str(ready.get("message", "")))
    if stack_generation is not None and (seen_stack is None or seen_stack < stack_generation):
        return Standing(tenant=name, state="progressing", message="waiting for the controller")
    failed = sorted(
        c for c, r in (status.get("rollouts") or {}).items() if r.get("state") == "failed"
    )
    if failed:
        why = degraded.get("message") or f"the latest revision of {', '.join(failed)} failed"
        return Standing(tenant=name, state="failed", message=str(why))
    if ready.get("status") == "True":
        return Standing(tenant=name, state="ready", message=str(ready.get("message", "")))
    return Standing(tenant=name, state="progressing", message=str(ready.get("message", "")))


def duration_s(text: str) -> float:
    """`90`, `30s`, `5m`, `1h` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        value = -1
    if value <= 0:
        raise Invalid(f"--timeout: expected a duration like 90s, 5m or 1h, got {text!r}")
    return value * units[unit]


async def _read(api: Client, tenant: str, stack_generation: int | None) -> Standing:
    try:
        found = await api.get("Tenant", tenant)
    except NotFound:
        return Standing(tenant=tenant, state="failed", message="the tenant was deleted")
    document = found.model_dump(mode="json", by_alias=True)
    return judge(document, stack_generation=stack_generation)


async def wait(
    api: Client,
    tenants: Mapping[str, int | None],
    *,
    timeout_s: float,
    report: Callable[[Standing], None],
) -> list[Standing]:
    """Poll `tenants` (name → the Stack generation it must have seen, or None) until
    each is Ready or failed, or `timeout_s` passes; `report` is called with every
    change of a tenant's standing. Returns the last standing of each, in name order."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Standing] = {}
    pending = dict(sorted(tenants.items()))
    while True:
        for tenant, stack_generation in list(pending.items()):
            now = await _read(api, tenant, stack_generation)
            if last.get(tenant) != now:
                report(now)
            last[tenant] = now
            if now.state != "progressing":
                del pending[tenant]
        if not pending or time.monotonic() >= deadline:
            return [last[t] for t in sorted(tenants)]
        await asyncio.sleep(POLL_S)


def outcome(standings: Sequence[Standing]) -> State:
    """failed if any failed, else progressing (timed out) if any is still, else ready."""
    states = {s.state for s in standings}
    return "failed" if "failed" in states else "progressing" if "progressing" in states else "ready"


def to_stderr(standing: Standing) -> None:
    """The progress report of the CLI: one line per change, on stderr."""
    err.print(standing.line(), markup=False)


def finish(standings: Sequence[Standing], *, timeout_s: float) -> None:
    """Return when every tenant is Ready; else say which are not and exit 1 (one
    failed) or 8 (the timeout passed with some still progressing)."""
    state = outcome(standings)
    if state == "failed":
        failed = [s.tenant for s in standings if s.state == "failed"]
        err.print(f"error: not every tenant became Ready; failed: {', '.join(failed)}")
        raise typer.Exit(EXIT_ERROR)
    if state == "progressing":
        late = [s.tenant for s in standings if s.state == "progressing"]
        err.print(f"error: timed out after {timeout_s:g}s waiting for {', '.join(late)}")
        raise typer.Exit(EXIT_UNAVAILABLE)

"""`armillary scale` and `armillary restart`: change one thing about a tenant's
component by writing the tenant's `overrides` on the server, like `kubectl scale` and
`kubectl rollout restart`.

Both read the Tenant, change its spec and apply it with the resourceVersion they read,
so a concurrent writer is never overwritten: on a Conflict they read again and retry.
What the server checks at apply holds here too: a component the tenant's stack does
not have is refused (with a "did you mean").

A restart writes `ARMILLARY_RESTARTED_AT=<now>` into the component's override env (or
the tenant's env, for every component). The env is part of a replica's spec hash, so
the tenant controller rolls the replicas over to the new spec within the component's
rollout budget (`max_surge`, `max_unavailable`), health-gated, exactly as for any
other change; `kubectl rollout restart` does the same with a pod template annotation.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

import typer

from armillary import timestamps, wire
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Conflict, Invalid

RESTARTED_AT = "ARMILLARY_RESTARTED_AT"
"""The env variable a restart sets; its value is when the restart was asked for."""
ATTEMPTS = 5


def _target(value: str, *, component_required: bool) -> tuple[str, str | None]:
    tenant, _, component = value.partition("/")
    if not tenant or (component_required and not component):
        shape = "TENANT/COMPONENT" if component_required else "TENANT[/COMPONENT]"
        fail(Invalid(f"expected {shape}, got {value!r}"))
    return tenant, component or None


def _document(found: wire.Resource) -> dict[str, Any]:
    """The Tenant as its writer would apply it again, carrying the version read."""
    metadata: dict[str, Any] = {
        "name": found.metadata.name,
        "resourceVersion": found.metadata.resource_version,
    }
    if found.metadata.labels:
        metadata["labels"] = found.metadata.labels
    if found.metadata.annotations:
        metadata["annotations"] = found.metadata.annotations
    return {
        "apiVersion": found.api_version,
        "kind": "Tenant",
        "metadata": metadata,
        "spec": copy.deepcopy(found.spec),
    }


async def edit(
    api: Client, tenant: str, change: Callable[[dict[str, Any]], None]
) -> wire.AppliedItem:
    """Apply `change(spec)` to the Tenant, retrying on a concurrent write."""
    for attempt in range(ATTEMPTS):
        document = _document(await api.get("Tenant", tenant))
        change(document["spec"])
        try:
            [applied] = await api.apply([document])
            return applied
        except Conflict:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _override(spec: dict[str, Any], component: str) -> dict[str, Any]:
    overrides: dict[str, Any] = spec.setdefault("overrides", {})
    found: dict[str, Any] = overrides.setdefault(component, {})
    return found


def scale(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="TENANT/COMPONENT")],
    replicas: Annotated[int, typer.Option("--replicas", min=0, max=1000, help="How many.")],
) -> None:
    """Set how many replicas of a tenant's component run (its override's `replicas`)."""
    tenant, component = _target(target, component_required=True)
    assert component is not None

    def change(spec: dict[str, Any]) -> None:
        _override(spec, component)["replicas"] = replicas

    async def work(api: Client) -> wire.AppliedItem:
        return await edit(api, tenant, change)

    applied = call(ctx, work)
    word = "scaled" if applied.result != "unchanged" else "unchanged"
    out.print(f"tenant/{tenant} {word}: {component} replicas={replicas}")


def restart(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="TENANT[/COMPONENT]")],
) -> None:
    """Replace the replicas of a tenant's component, rolling, within its budget.

    Without a component, those of every component of the tenant."""
    tenant, component = _target(target, component_required=False)
    now = timestamps.iso(dt.datetime.now(dt.UTC))

    def change(spec: dict[str, Any]) -> None:
        if component is not None:
            _override(spec, component).setdefault("env", {})[RESTARTED_AT] = now
            return
        spec.setdefault("env", {})[RESTARTED_AT] = now
        # A component's own override env wins over the tenant's: drop an earlier
        # restart of one component, or the tenant-wide one would not reach it.
        for override in (spec.get("overrides") or {}).values():
            (override.get("env") or {}).pop(RESTARTED_AT, None)

    async def work(api: Client) -> wire.AppliedItem:
        return await edit(api, tenant, change)

    call(ctx, work)
    what = component or "every component"
    out.print(
        f"tenant/{tenant} restarting: {what} (follow with `armillary rollout status {tenant} -w`)"
    )


def register(app: typer.Typer) -> None:
    app.command()(scale)
    app.command()(restart)

"""Resource documents (as `armillary render -f DIR` loads them) → one `TenantView` per
Tenant, through the same `runtime.expand` the server uses. Pure: no server, no store.

Without a server there are no stored Secrets: every Secret a tenant names is taken as
available, referenced by name; when its document is among the files, its keys (never
its values) let the renderer write one `secretKeyRef` per key.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from armillary.resources.meta import Document
from armillary.resources.release import Release
from armillary.resources.schedule import Schedule
from armillary.resources.secret import Secret
from armillary.resources.stack import Stack
from armillary.resources.tenant import Org, Tenant
from armillary.runtime import expand
from armillary.runtime.kubernetes.model import Refusal, Scheduled, TenantView

UNSTORED = "unstored"
"""The version of a Secret that rendering references without a server."""


def views(documents: Sequence[Document]) -> tuple[list[TenantView], list[Refusal]]:  # type: ignore[type-arg]
    """Every Tenant among `documents` as the renderer sees it, and what is missing."""
    tenants = [d for d in documents if isinstance(d, Tenant)]
    schedules = [d for d in documents if isinstance(d, Schedule)]
    known = {t.metadata.name for t in tenants}
    refusals = [
        Refusal(
            kind="Schedule",
            name=s.metadata.name,
            path="spec.tenant",
            message=f"unknown tenant {s.spec.tenant!r}; expected one of {sorted(known)}",
        )
        for s in schedules
        if s.spec.tenant not in known
    ]
    index = _Index(
        orgs={d.metadata.name: d for d in documents if isinstance(d, Org)},
        stacks={d.metadata.name: d for d in documents if isinstance(d, Stack)},
        releases={d.metadata.name: d for d in documents if isinstance(d, Release)},
        secrets={d.metadata.name: d for d in documents if isinstance(d, Secret)},
        schedules=schedules,
    )
    found: list[TenantView] = []
    for tenant in tenants:
        view = _view(tenant, index)
        if isinstance(view, TenantView):
            found.append(view)
        else:
            refusals.extend(view)
    return found, refusals


@dataclass(frozen=True, slots=True, kw_only=True)
class _Index:
    orgs: dict[str, Org]
    stacks: dict[str, Stack]
    releases: dict[str, Release]
    secrets: dict[str, Secret]
    schedules: list[Schedule]


def _view(tenant: Tenant, index: _Index) -> TenantView | list[Refusal]:
    spec = tenant.spec
    stack = index.stacks.get(spec.stack)
    org = index.orgs.get(spec.org)
    if stack is None or org is None:
        wanted = [("spec.stack", "Stack", spec.stack, stack), ("spec.org", "Org", spec.org, org)]
        return [
            Refusal(
                kind="Tenant",
                name=tenant.metadata.name,
                path=path,
                message=f"{kind} {name!r} is not among the files",
            )
            for path, kind, name, value in wanted
            if value is None
        ]
    secrets = index.secrets
    usable = {use.name: UNSTORED for use in spec.secrets}
    return TenantView(
        tenant=tenant.metadata.name,
        org=org.metadata.name,
        stack=stack.metadata.name,
        instance=expand.expand(tenant, stack, index.releases, usable),
        schedules=tuple(schedules_of(tenant, index.schedules)),
        quota=org.spec.tenant_quota,
        secret_keys={
            use.name: tuple(sorted(secrets[use.name].spec.data))
            for use in spec.secrets
            if use.name in secrets
        },
    )


def schedules_of(tenant: Tenant, schedules: Sequence[Schedule]) -> Iterator[Scheduled]:
    """The tenant's inline schedules, then the Schedules among `schedules` naming it."""
    name = tenant.metadata.name
    for i, inline in enumerate(tenant.spec.schedules):
        yield Scheduled(
            name=inline.name,
            timing=inline,
            kind="Tenant",
            document=name,
            path=f"spec.schedules[{i}].name",
        )
    for schedule in sorted(schedules, key=lambda s: s.metadata.name):
        if schedule.spec.tenant == name:
            yield Scheduled(
                name=schedule.metadata.name,
                timing=schedule.spec,
                kind="Schedule",
                document=schedule.metadata.name,
                path="metadata.name",
            )

"""`Org` and `Tenant`: a customer, and one of its teams running one stack.

A tenant names its org and stack, overrides env, replicas and release pins per
component, lists the routing keys inbound events are matched on (per key space:
`slack`, `github`, `pagerduty`, or any name a WebhookSource uses), and declares
its schedules inline, and names the Secrets its replicas receive as env (`secrets`).
`runtime` says where its replicas run: `nodes` (the default) or
`{kubernetes: {cluster: NAME}}`; left out, the Org's `runtime` applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from armillary.resources.cluster import RuntimeChoice
from armillary.resources.meta import Document, Model, Name
from armillary.resources.schedule import ScheduleTiming
from armillary.resources.stack import ComponentName, Env, Loc, ReleaseRef, Resources

_KEY_SPACE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _check_key_space(value: str) -> str:
    if not _KEY_SPACE.fullmatch(value):
        raise ValueError(f"expected a routing key space like 'slack' or 'github', got {value!r}")
    return value


KeySpace = Annotated[str, AfterValidator(_check_key_space)]
RoutingKey = Annotated[str, Field(min_length=1, max_length=512)]
EnvPrefix = Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$", max_length=128)]


class TenantQuota(Resources):
    """What each tenant of an org may use in all, per resource: CPU and memory as a
    replica's `resources` are written, and pods. Enforced on the Kubernetes runtime (a
    ResourceQuota in each tenant's namespace); the nodes runtime does not enforce it
    yet."""

    pods: Annotated[int, Field(ge=0, le=100000)] | None = None


class OrgSpec(Model):
    display_name: str = ""
    description: str = ""
    tenant_quota: TenantQuota | None = None
    runtime: RuntimeChoice | None = None  # its tenants' runtime unless they name one


class Org(Document[OrgSpec]):
    kind: Literal["Org"]


class ComponentOverride(Model):
    """What a tenant changes about one component of its stack."""

    replicas: Annotated[int, Field(ge=0, le=1000)] | None = None
    env: Env = Field(default_factory=dict)
    release: ReleaseRef | None = None


class TenantSchedule(ScheduleTiming):
    name: Name


class SecretUse(Model):
    """A Secret whose every key becomes env `<prefix><KEY>` in this tenant's replicas
    (of the `components` listed; of every component when the list is empty)."""

    name: Name
    prefix: EnvPrefix = ""
    components: list[ComponentName] = Field(default_factory=list)


class TenantSpec(Model):
    org: Name
    stack: Name
    display_name: str = ""
    env: Env = Field(default_factory=dict)
    overrides: dict[ComponentName, ComponentOverride] = Field(default_factory=dict)
    routing: dict[KeySpace, list[RoutingKey]] = Field(default_factory=dict)
    schedules: list[TenantSchedule] = Field(default_factory=list)
    secrets: list[SecretUse] = Field(default_factory=list)
    runtime: RuntimeChoice | None = None  # None: the Org's, else nodes

    def issues(self) -> Iterator[tuple[Loc, str]]:
        uses: set[tuple[str, str]] = set()
        for i, use in enumerate(self.secrets):
            if (use.name, use.prefix) in uses:
                yield ("secrets", i, "name"), f"secret {use.name!r} is named twice with one prefix"
            uses.add((use.name, use.prefix))
        seen: dict[str, int] = {}
        for i, schedule in enumerate(self.schedules):
            if schedule.name in seen:
                yield ("schedules", i, "name"), f"duplicate schedule name {schedule.name!r}"
            seen.setdefault(schedule.name, i)
        for space, keys in self.routing.items():
            for j, key in enumerate(keys):
                if key in keys[:j]:
                    yield ("routing", space, j), f"duplicate routing key {key!r}"


class Tenant(Document[TenantSpec]):
    kind: Literal["Tenant"]

"""What rendering takes besides the templates, and what it refuses.

`Cluster` holds the settings a Cluster resource will carry (the ingress flavour, the
domain public hosts live under, the storage of the tenant's data directory); `render -f`
takes them as options meanwhile. `TenantView` is one tenant as the renderer needs it:
its expanded `Instance` plus what expansion does not carry (org, stack, schedules,
quota, the keys of the Secrets it uses when known). A `Refusal` names the document and
field path that cannot become a valid Kubernetes object; `Unrenderable` carries them
all, so a user sees every problem at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from armillary.resources.schedule import ScheduleTiming
from armillary.resources.tenant import TenantQuota
from armillary.runtime.instance import Instance

DATA_DIR = "/var/lib/armillary/data"
"""Where the tenant's data volume is mounted; ARMILLARY_DATA_DIR names it, as on nodes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """How the target cluster exposes and stores things (the future Cluster resource)."""

    ingress: Literal["ingress", "httproute"] = "ingress"
    domain: str = "example.com"  # a public component is served at <component>.<tenant>.<domain>
    ingress_class: str | None = None  # Ingress spec.ingressClassName
    gateway: str = "armillary"  # HTTPRoute parentRef: the Gateway's name ...
    gateway_namespace: str = "armillary-system"  # ... and namespace
    storage_class: str | None = None  # None: the cluster's default StorageClass
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = "ReadWriteOnce"
    data_size: str = "1Gi"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scheduled:
    """One schedule of the tenant, and where it was written (for refusals)."""

    name: str
    timing: ScheduleTiming
    kind: str  # "Tenant" (inline) or "Schedule"
    document: str  # that document's metadata.name
    path: str  # the field holding the name: spec.schedules[0].name or metadata.name


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantView:
    tenant: str
    org: str
    stack: str
    instance: Instance
    schedules: tuple[Scheduled, ...] = ()
    quota: TenantQuota | None = None
    # Keys of the Secrets this tenant uses, when their documents are at hand (never values).
    secret_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.path}: {self.message}"


class Unrenderable(Exception):
    """Some of the input cannot become valid Kubernetes objects; nothing is rendered."""

    def __init__(self, refusals: list[Refusal]) -> None:
        unique = list(dict.fromkeys(refusals))  # tenants sharing a stack share its refusals
        super().__init__("; ".join(str(r) for r in unique))
        self.refusals = unique

"""`Cluster`: a Kubernetes cluster tenants may run on, and how to reach it.

A tenant runs there when its `spec.runtime` (or its Org's) is
`{kubernetes: {cluster: NAME}}`. The server reaches the cluster with the kubeconfig
held in a Secret (`kubeconfig: {secret, key}`; the value never leaves the server's
memory) or, when it runs inside that cluster, with its own service account
(`in_cluster: true`): exactly one of the two. The rest says how the cluster exposes
and stores things, which shapes the objects rendered for it: the ingress flavour
(`ingress` or Gateway API `httproute`), the domain public hosts live under, and the
storage class, access mode and size of each tenant's data volume.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from armillary.resources.meta import Document, Model, Name
from armillary.resources.stack import EnvName, Loc

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _check_domain(value: str) -> str:
    if not _DOMAIN.fullmatch(value):
        raise ValueError(
            f"expected a DNS domain like 'apps.example.com' (labels of a-z, 0-9 and '-'), "
            f"got {value!r}"
        )
    return value


def _check_quantity(value: str) -> str:
    if not _QUANTITY.fullmatch(value):
        raise ValueError(f"expected a storage size like '1Gi' or '500Mi', got {value!r}")
    return value


def _check_subdomain(value: str) -> str:
    if not _SUBDOMAIN.fullmatch(value):
        raise ValueError(f"expected a Kubernetes object name (a DNS-1123 subdomain), got {value!r}")
    return value


Domain = Annotated[str, AfterValidator(_check_domain)]
StorageSize = Annotated[str, AfterValidator(_check_quantity)]
ObjectName = Annotated[str, AfterValidator(_check_subdomain)]


class KubeconfigRef(Model):
    """The Secret key whose value is a kubeconfig (YAML), its current context used."""

    secret: Name
    key: EnvName = "KUBECONFIG"


class ClusterSpec(Model):
    display_name: str = ""
    kubeconfig: KubeconfigRef | None = None
    in_cluster: bool = False
    ingress: Literal["ingress", "httproute"] = "ingress"
    domain: Domain = "example.com"  # a public component is served at <component>.<tenant>.<domain>
    ingress_class: ObjectName | None = None  # Ingress spec.ingressClassName
    gateway: ObjectName = "armillary"  # HTTPRoute parentRef: the Gateway's name ...
    gateway_namespace: Name = "armillary-system"  # ... and namespace
    storage_class: ObjectName | None = None  # None: the cluster's default StorageClass
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = "ReadWriteOnce"
    data_size: Annotated[StorageSize, Field(max_length=32)] = "1Gi"

    def issues(self) -> Iterator[tuple[Loc, str]]:
        if self.kubeconfig is None and not self.in_cluster:
            yield (
                ("kubeconfig",),
                "say how to reach the cluster: a kubeconfig in a Secret "
                "(kubeconfig: {secret: NAME, key: KEY}) or in_cluster: true",
            )
        if self.kubeconfig is not None and self.in_cluster:
            yield ("in_cluster",), "give either kubeconfig or in_cluster: true, not both"


class Cluster(Document[ClusterSpec]):
    kind: Literal["Cluster"]


class ClusterRef(Model):
    cluster: Name


class KubernetesRuntime(Model):
    """`{kubernetes: {cluster: NAME}}`: run on the Cluster resource NAME."""

    kubernetes: ClusterRef


RuntimeChoice = Literal["nodes"] | KubernetesRuntime
"""Where a tenant's replicas run: `nodes` (Armillary's node daemons) or a Cluster."""

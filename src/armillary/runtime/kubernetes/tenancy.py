"""The objects a tenant's namespace holds whatever its stack: the Namespace, the
ResourceQuota its Org sets, the PersistentVolumeClaim of its data directory, the
ApplySet parent (KEP-3659) that lets an apply prune what is no longer rendered, and
the labels every object carries.

ApplySet: the parent is a ConfigMap `armillary-applyset` in the tenant's namespace.
Its id is `applyset-<base64url(sha256("<name>.<namespace>.ConfigMap."))>-v1` (no
padding; the group of ConfigMap is empty), carried by the parent as the label
`applyset.kubernetes.io/id` and by every member as `applyset.kubernetes.io/part-of`;
the parent lists the members' group-kinds in `applyset.kubernetes.io/contains-group-kinds`
and names its tool in `applyset.kubernetes.io/tooling`.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from armillary.resources import quantity
from armillary.resources.tenant import TenantQuota
from armillary.runtime.kubernetes.model import Cluster, TenantView

Obj = dict[str, Any]

MANAGED_BY = "armillary"
PARENT_NAME = "armillary-applyset"
TOOLING = "armillary/v1"
DATA_CLAIM = "data"


def labels(view: TenantView, *, name: str, instance: str, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels plus the tenant's and org's."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": view.stack,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "armillary.dev/tenant": view.tenant,
        "armillary.dev/org": view.org,
    }


def tenant_labels(view: TenantView) -> dict[str, str]:
    """Labels of the objects that belong to the tenant as a whole."""
    return labels(view, name=view.stack, instance=view.tenant, component="tenant")


def meta(name: str, namespace: str | None, object_labels: dict[str, str]) -> Obj:
    data: Obj = {"name": name, "labels": object_labels}
    if namespace is not None:
        data["namespace"] = namespace
    return data


def namespace(view: TenantView, ns: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta(ns, None, tenant_labels(view)),
    }


def resource_quota(view: TenantView, ns: str, quota: TenantQuota) -> Obj | None:
    """The Org's per-tenant quota, or None when it sets nothing."""
    hard: dict[str, str] = {}
    if quota.cpu is not None:
        hard["requests.cpu"] = f"{quantity.cpu_millicores(quota.cpu)}m"
    if quota.memory is not None:
        hard["requests.memory"] = f"{quantity.memory_mb(quota.memory)}Mi"
        hard["limits.memory"] = hard["requests.memory"]
    if quota.pods is not None:
        hard["pods"] = str(quota.pods)
    if not hard:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": meta("tenant-quota", ns, tenant_labels(view)),
        "spec": {"hard": hard},
    }


def data_claim(view: TenantView, ns: str, cluster: Cluster) -> Obj:
    spec: Obj = {
        "accessModes": [cluster.access_mode],
        "resources": {"requests": {"storage": cluster.data_size}},
    }
    if cluster.storage_class is not None:
        spec["storageClassName"] = cluster.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(DATA_CLAIM, ns, tenant_labels(view)),
        "spec": spec,
    }


def applyset_id(ns: str) -> str:
    """The KEP-3659 id of the tenant's ApplySet (parent: ConfigMap PARENT_NAME in `ns`)."""
    digest = hashlib.sha256(f"{PARENT_NAME}.{ns}.ConfigMap.".encode()).digest()
    return f"applyset-{base64.urlsafe_b64encode(digest).decode().rstrip('=')}-v1"


def group_kind(obj: Obj) -> str:
    """`Deployment.apps`, `Service` (core), `HTTPRoute.gateway.networking.k8s.io`."""
    api_version = str(obj["apiVersion"])
    group = api_version.rpartition("/")[0]
    return f"{obj['kind']}.{group}" if group else str(obj["kind"])


def applyset_parent(view: TenantView, ns: str, members: list[Obj], secrets: list[str]) -> Obj:
    """The parent ConfigMap. Members get the part-of label from `mark_members`."""
    parent_labels = {**tenant_labels(view), "applyset.kubernetes.io/id": applyset_id(ns)}
    annotations = {
        "applyset.kubernetes.io/tooling": TOOLING,
        "applyset.kubernetes.io/contains-group-kinds": ",".join(
            sorted({group_kind(m) for m in members})
        ),
    }
    if secrets:
        # Secrets are referenced, never rendered: their values stay with Armillary.
        annotations["armillary.dev/secrets"] = ",".join(sorted(secrets))
    metadata = meta(PARENT_NAME, ns, parent_labels)
    metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}


def mark_members(members: list[Obj], ns: str) -> None:
    """Label every member with the ApplySet it belongs to (in place)."""
    part_of = applyset_id(ns)
    for member in members:
        member["metadata"]["labels"]["applyset.kubernetes.io/part-of"] = part_of

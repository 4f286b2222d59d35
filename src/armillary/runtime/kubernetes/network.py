"""Services, NetworkPolicies and the public entry (Ingress or Gateway API HTTPRoute).

Every pod of the tenant accepts traffic only from its own namespace (`same-namespace`);
a public component also accepts it, on its ports, from anywhere — the ingress
controller or gateway that serves its host `<component>.<tenant>.<domain>`.
"""

from __future__ import annotations

from typing import Any

from armillary.runtime.instance import Template
from armillary.runtime.kubernetes import pods, tenancy, workloads
from armillary.runtime.kubernetes.model import Cluster, TenantView

Obj = dict[str, Any]


def host(view: TenantView, template: Template, cluster: Cluster) -> str:
    return f"{template.component}.{view.tenant}.{cluster.domain}"


def service(view: TenantView, ns: str, template: Template) -> Obj:
    ports = pods.port_numbers(template)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": tenancy.meta(
            template.component, ns, workloads.component_labels(view, template, role="service")
        ),
        "spec": {
            "selector": workloads.selector(view, template),
            "ports": [
                {"name": name, "port": number, "targetPort": name, "protocol": "TCP"}
                for name, number in ports.items()
            ],
        },
    }


def same_namespace_policy(view: TenantView, ns: str) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": tenancy.meta("same-namespace", ns, tenancy.tenant_labels(view)),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
                    ]
                }
            ],
        },
    }


def public_policy(view: TenantView, ns: str, template: Template) -> Obj:
    ports = pods.port_numbers(template)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": tenancy.meta(
            f"public-{template.component}",
            ns,
            workloads.component_labels(view, template, role="service"),
        ),
        "spec": {
            "podSelector": {"matchLabels": workloads.selector(view, template)},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": n, "protocol": "TCP"} for n in ports.values()]}],
        },
    }


def entry(view: TenantView, ns: str, template: Template, cluster: Cluster) -> Obj:
    """The Ingress or HTTPRoute of a public component (its first port)."""
    port_name, port = next(iter(pods.port_numbers(template).items()))
    hostname = host(view, template, cluster)
    metadata = tenancy.meta(
        template.component, ns, workloads.component_labels(view, template, role="service")
    )
    if cluster.ingress == "httproute":
        return {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": metadata,
            "spec": {
                "parentRefs": [{"name": cluster.gateway, "namespace": cluster.gateway_namespace}],
                "hostnames": [hostname],
                "rules": [{"backendRefs": [{"name": template.component, "port": port}]}],
            },
        }
    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": template.component, "port": {"name": port_name}}},
    }
    spec: Obj = {"rules": [{"host": hostname, "http": {"paths": [path]}}]}
    if cluster.ingress_class is not None:
        spec["ingressClassName"] = cluster.ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }

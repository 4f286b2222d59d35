"""Which runtime a tenant runs on, what each runtime can run, and how a kubeconfig
that cannot be used is told: the pure parts of the runtime choice."""

from __future__ import annotations

from typing import Any

import pytest

from armillary.control import runtimes
from armillary.resources.stack import Stack
from armillary.resources.tenant import Org, Tenant
from armillary.runtime import expand
from armillary.runtime.kubernetes.model import Cluster
from armillary.runtime.kubernetes.runtime import Access, KubernetesRuntime


def tenant(**spec: Any) -> Tenant:
    return Tenant.model_validate(
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Tenant",
            "metadata": {"name": "t"},
            "spec": {"org": "acme", "stack": "s", **spec},
        }
    )


def org(**spec: Any) -> Org:
    return Org.model_validate(
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Org",
            "metadata": {"name": "acme"},
            "spec": spec,
        }
    )


ON = {"kubernetes": {"cluster": "prod"}}


@pytest.mark.parametrize(
    ("tenant_runtime", "org_runtime", "expected"),
    [
        (None, None, "nodes"),
        (None, ON, "kubernetes/prod"),
        ("nodes", ON, "nodes"),
        (ON, None, "kubernetes/prod"),
        (ON, "nodes", "kubernetes/prod"),
    ],
)
def test_a_tenant_runs_where_it_says_else_where_its_org_says_else_on_nodes(
    tenant_runtime: Any, org_runtime: Any, expected: str
) -> None:
    spec = {"runtime": tenant_runtime} if tenant_runtime is not None else {}
    org_spec = {"runtime": org_runtime} if org_runtime is not None else {}
    assert runtimes.wanted(tenant(**spec), org(**org_spec)) == expected
    if org_runtime is None:
        assert runtimes.wanted(tenant(**spec), None) == expected


def instance() -> Any:
    stack = Stack.model_validate(
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Stack",
            "metadata": {"name": "s"},
            "spec": {
                "components": [
                    {"name": "web", "image": "nginx:1"},
                    {"name": "worker", "command": ["sleep", "1"]},
                ]
            },
        }
    )
    return expand.expand(tenant(), stack, {}, {})


def runtime() -> KubernetesRuntime:
    async def view(name: str, inst: Any) -> Any:
        raise AssertionError("not called")

    return KubernetesRuntime(
        cluster="prod", settings=Cluster(), access=Access(), view=view, publish=lambda c: None
    )


def test_an_image_is_a_problem_on_nodes_only_and_a_process_on_kubernetes_only() -> None:
    expanded = {t.component: t for t in instance().templates}
    assert "container runtime" in (expanded["web"].problem or "")
    assert expanded["web"].image_problem and expanded["worker"].problem is None

    here = {t.component: t for t in runtime().prepare(instance()).templates}
    assert here["web"].problem is None and here["web"].image == "nginx:1"
    assert "runs a process" in (here["worker"].problem or "")
    assert here["web"].spec_hash() == expanded["web"].spec_hash()  # nothing restarts


def test_a_missing_secret_is_a_problem_on_every_runtime() -> None:
    stack = Stack.model_validate(
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Stack",
            "metadata": {"name": "s"},
            "spec": {"components": [{"name": "web", "image": "nginx:1"}]},
        }
    )
    expanded = expand.expand(tenant(secrets=[{"name": "db"}]), stack, {}, {})
    [web] = runtime().prepare(expanded).templates
    assert web.problem is not None and "db" in web.problem


@pytest.mark.parametrize(
    ("kubeconfig", "said"),
    [
        ("clusters: [oops", "the kubeconfig is not YAML at line"),
        ("just text", "the kubeconfig has no clusters"),
        ("clusters: []\n", "the kubeconfig has no clusters"),
        (
            "clusters: [{name: a, cluster: {server: 'https://x'}}]\ncurrent-context: nope\n"
            "contexts: []\nusers: []\n",
            "the kubeconfig is not usable",
        ),
    ],
)
def test_a_kubeconfig_that_cannot_be_used_says_why_without_quoting_it(
    kubeconfig: str, said: str
) -> None:
    with pytest.raises(ValueError, match="kubeconfig") as caught:
        Access(kubeconfig=kubeconfig).config()
    assert said in str(caught.value)
    assert "oops" not in str(caught.value) and "https://x" not in str(caught.value)

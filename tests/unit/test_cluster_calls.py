"""Where an agent call to a tenant on a Kubernetes cluster goes (ingress/cluster_calls.py):
its component's Service by cluster DNS inside the cluster, through the API server's
service proxy outside, at the Service's first port."""

from __future__ import annotations

from armillary.errors import TemporaryError
from armillary.ingress import cluster_calls


def test_inside_the_cluster_the_service_is_called_by_cluster_dns() -> None:
    url = cluster_calls.dns_url("armillary-abc", "agent", 8080, "run")
    assert url == "http://agent.armillary-abc.svc:8080/run"


def test_outside_the_call_goes_through_the_service_proxy() -> None:
    path = cluster_calls.proxy_path("armillary-abc", "agent", 8080, "/run")
    assert path == "/api/v1/namespaces/armillary-abc/services/agent:8080/proxy/run"


def test_the_runtime_a_tenant_status_names_says_its_cluster() -> None:
    assert cluster_calls.cluster_of("kubernetes/prod-eu") == "prod-eu"
    assert cluster_calls.cluster_of("nodes") is None


def test_the_port_is_the_services_first() -> None:
    service = {"spec": {"ports": [{"name": "http", "port": 8080}, {"name": "m", "port": 9100}]}}
    assert cluster_calls.first_port(service) == 8080
    assert cluster_calls.first_port({"spec": {"ports": []}}) is None
    assert cluster_calls.first_port({"spec": {}}) is None
    assert cluster_calls.first_port([]) is None


async def test_a_cluster_that_cannot_be_reached_fails_the_attempt_and_says_why() -> None:
    clusters = cluster_calls.Clusters(None)
    gone = TemporaryError("cluster 'emu' does not exist")
    wanted = {("emu", "armillary-abc", "agent"), ("other", "armillary-def", "agent")}
    found = await clusters.routes(wanted, {"emu": gone}, path="run")
    assert found[("emu", "armillary-abc", "agent")] is gone
    unread = found[("other", "armillary-def", "agent")]
    assert isinstance(unread, TemporaryError) and "'other' was not read" in str(unread)
    await clusters.aclose()

"""`GET /metrics` on a real server (both backends): who may read it, what it counts
(route templates, webhook outcomes, the store's figures), that `promtool check
metrics` finds nothing to say, and that the shipped rules and dashboard name only
metrics it exports (tests/unit/test_metrics_rules.py: the rules' `promtool test rules`)."""

from __future__ import annotations

import subprocess

import httpx

from tests.support import prometheus
from tests.support.api import apply
from tests.support.documents import agent, stack, tenant
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for


def _scrape(server: ServerProcess, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or server.token}"}
    return httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)


def _viewer(server: ServerProcess) -> str:
    headers = {"Authorization": f"Bearer {server.token}"}
    answer = httpx.post(f"{server.url}/api/v1/tokens", json={"role": "viewer"}, headers=headers)
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


def _value(exposition: str, series: str) -> float | None:
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_viewer_reads_metrics_and_nobody_else(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    answer = _scrape(server, _viewer(server))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "armillary_build_info{" in answer.text


def test_requests_counted_by_route_template_and_webhooks_by_outcome(
    server: ServerProcess,
) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    httpx.get(f"{server.url}/api/v1/tenants/nobody-here", headers=headers)
    httpx.post(f"{server.url}/webhooks/no-such-source", content=b"{}")
    text = _scrape(server).text
    # The template, never the path: a name a caller picks is not a label.
    route = 'method="GET",route="/api/v1/tenants/{name}",status_class="4xx"'
    assert (_value(text, f"armillary_http_requests_total{{{route}}}") or 0) >= 1
    webhook = 'method="POST",route="/webhooks/{source}",status_class="4xx"'
    assert (_value(text, f"armillary_http_requests_total{{{webhook}}}") or 0) >= 1
    unknown = 'armillary_webhook_deliveries_total{outcome="unknown_source",source=""}'
    assert (_value(text, unknown) or 0) >= 1
    assert "nobody-here" not in text and "no-such-source" not in text


def test_store_figures_read_at_scrape_time(server: ServerProcess) -> None:
    before = _value(_scrape(server).text, "armillary_tenants") or 0
    apply(server, stack("metrics-stack", agent()), tenant("metrics-t1", "metrics-stack"))
    text = _scrape(server).text
    assert _value(text, "armillary_tenants") == before + 1
    assert _value(text, 'armillary_replicas{state="crashloop"}') is not None  # 0, not absent
    assert (_value(text, 'armillary_workqueue_adds_total{name="tenants"}') or 0) >= 1

    def reconciled() -> float | None:
        text = _scrape(server).text
        done = 'armillary_controller_reconcile_total{controller="tenants",result="success"}'
        return _value(text, done) and _value(
            text, 'armillary_tenant_conditions{condition="Ready",status="false"}'
        )

    wait_for(reconciled, 30, every_s=0.2, what="a tenant reconciled and its Ready condition")


def test_promtool_finds_the_exposition_clean(server: ServerProcess) -> None:
    promtool = prometheus.tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=_scrape(server).content, capture_output=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == b"" and checked.stderr.strip() == b""


def test_shipped_rules_and_dashboard_name_only_exported_metrics(server: ServerProcess) -> None:
    exported = prometheus.exported_names(_scrape(server).text)
    expressions = prometheus.shipped_expressions()
    assert len(expressions) > 30  # every rule and every panel's targets were read
    unknown = {
        where: sorted(prometheus.metric_names(expr) - exported)
        for where, expr in expressions.items()
        if prometheus.metric_names(expr) - exported
    }
    assert not unknown, f"metrics the server does not export: {unknown}"
    # The check itself sees a wrong name, wherever it sits in an expression.
    bogus = 'sum by (source) (rate(armillary_webhook_deliverys_total{outcome="x"}[5m])) > 0'
    assert prometheus.metric_names(bogus) - exported == {"armillary_webhook_deliverys_total"}

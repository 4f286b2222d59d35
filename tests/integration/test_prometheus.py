"""A real Prometheus (Debian's `prometheus` package) scraping a real Armillary server
with a viewer key, and a real node daemon: a tenant whose component exits 1 at once
(fast restart settings) crash-loops, and Prometheus, evaluating the shipped rules,
says `ReplicaCrashLooping` and `TenantDegraded` are firing through its HTTP API.

The rules are the shipped ones, with one change: every `for:` is shortened to 2 s
(`prometheus.fast_rules`), as production's minutes would make this test wait minutes.
Prometheus scrapes and evaluates every second; the test waits with a deadline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import prometheus
from tests.support.api import apply
from tests.support.documents import FAST_RESTART, stack, tenant
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

DEADLINE_S = 90


@pytest.fixture(scope="module")
def scraper(
    server: ServerProcess, node: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[prometheus.PrometheusProcess]:
    headers = {"Authorization": f"Bearer {server.token}"}
    made = httpx.post(f"{server.url}/api/v1/tokens", json={"role": "viewer"}, headers=headers)
    made.raise_for_status()
    home: Path = tmp_path_factory.mktemp("prometheus")
    process = prometheus.PrometheusProcess(
        home=home,
        target=f"127.0.0.1:{server.port}",
        token=made.json()["token"],
        rules=prometheus.fast_rules(home / "alerts.yml"),
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_prometheus_scrapes_armillary(scraper: prometheus.PrometheusProcess) -> None:
    def up() -> bool:
        found = scraper.api("query", query='up{job="armillary"}')["result"]
        return bool(found) and found[0]["value"][1] == "1"

    wait_for(up, DEADLINE_S, every_s=0.5, what=lambda: f"the scrape up: {scraper.log()}")
    rules = scraper.api("rules")["groups"][0]["rules"]
    assert {r["name"] for r in rules} >= {"ReplicaCrashLooping", "TenantDegraded", "NodeLost"}
    assert all(r["health"] != "err" for r in rules), rules


def test_a_crash_looping_tenant_fires_its_alerts(
    server: ServerProcess, scraper: prometheus.PrometheusProcess
) -> None:
    assert not scraper.firing() & {"ReplicaCrashLooping", "TenantDegraded"}
    mark = uuid.uuid4().hex[:6]
    failing = {"name": "failing", "command": ["sh", "-c", "exit 1"], "restart": FAST_RESTART}
    apply(server, stack(f"crash-{mark}", failing), tenant(f"crash-{mark}", f"crash-{mark}"))

    def firing() -> bool:
        return {"ReplicaCrashLooping", "TenantDegraded"} <= scraper.firing()

    wait_for(
        firing,
        DEADLINE_S,
        every_s=0.5,
        what=lambda: f"both alerts firing; alerts: {scraper.api('alerts')}",
    )

"""The shipped alert rules pass their `promtool test rules` cases
(deploy/prometheus/alerts_test.yml), and the metric-name reader the suite checks
the rules and the dashboard with reads PromQL right."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import prometheus


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("armillary_replicas", {"armillary_replicas"}),
        (
            'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route="/x"}[5m])))',
            {"a_bucket"},
        ),
        ("a / on(node) group_left(state) b offset 5m > bool 1", {"a", "b"}),
        ("max(a) unless ignoring(x) c_total", {"a", "c_total"}),
    ],
)
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert prometheus.metric_names(expr) == names


def test_promtool_proves_the_shipped_rules() -> None:
    promtool = prometheus.tool("promtool")
    tested = subprocess.run(
        [promtool, "test", "rules", prometheus.ALERTS_TEST.name],
        cwd=prometheus.ALERTS_TEST.parent,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr

"""Prometheus for the tests: the Debian `prometheus` package's `promtool` and server
(scripts/ensure-prometheus.sh installs it), the metric names a PromQL expression
uses, and a real Prometheus process on a port and data directory of the test's own.

A missing tool skips a test, except under CI=true, where it fails: CI must run them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from tests.support.children import Child
from tests.support.ports import free_port
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "armillary.json"


def tool(name: str) -> str:
    """The path of `promtool` or `prometheus`; skips without it (fails under CI=true)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (sh scripts/ensure-prometheus.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return found


# --- metric names in PromQL -------------------------------------------------------------

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects: identifiers that are not functions (followed by
    `(`), keywords, label names (inside `{…}` or a grouping) or durations (inside `[…]`)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def exported_names(exposition: str) -> set[str]:
    """Every series name an exposition can carry: each `# TYPE` family's name, with
    `_bucket`, `_sum` and `_count` for histograms and summaries."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names |= {f"{name}_sum", f"{name}_count"}
            if kind == "histogram":
                names.add(f"{name}_bucket")
    return names


def shipped_expressions() -> dict[str, str]:
    """Every PromQL expression shipped: the alert rules' and the dashboard's, by where."""
    found: dict[str, str] = {}
    rules = YAML(typ="safe").load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"alerts.yml {rule.get('alert') or rule.get('record')}"] = rule["expr"]
    dashboard = json.loads(DASHBOARD.read_text())

    def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for item in items for p in (item, *panels(item.get("panels", [])))]

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found[f"armillary.json {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


# --- a real Prometheus ------------------------------------------------------------------


def fast_rules(target: Path, *, for_s: int = 2) -> Path:
    """A copy of the shipped rules with every `for:` shortened to `for_s` seconds, so an
    end-to-end test sees an alert fire in seconds, not the production minutes."""
    yaml = YAML(typ="safe")
    rules = yaml.load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{for_s}s"
    with target.open("w") as out:
        yaml.dump(rules, out)
    return target


@dataclass
class PrometheusProcess(Child):
    """`prometheus` scraping one Armillary server every second with a viewer key, and
    evaluating `rules` every second; its own port, config and data directory."""

    home: Path
    target: str  # host:port of the Armillary server
    token: str  # a viewer API key
    rules: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_path(self) -> Path:
        return self.home / "prometheus.log"

    def start(self) -> None:
        binary = tool("prometheus")
        self.home.mkdir(parents=True, exist_ok=True)
        key = self.home / "token"
        key.write_text(self.token)
        key.chmod(0o600)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(self.rules)],
            "scrape_configs": [
                {
                    "job_name": "armillary",
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "authorization": {"type": "Bearer", "credentials_file": str(key)},
                    "static_configs": [{"targets": [self.target]}],
                }
            ],
        }
        path = self.home / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        with self.log_path().open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={self.home / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
            )
        wait_for(self._ready, 30, every_s=0.2, what=lambda: f"prometheus ready: {self.log()}")

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log()}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]

    def firing(self) -> set[str]:
        """The names of the alerts firing now."""
        alerts = self.api("alerts")["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

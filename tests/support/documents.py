"""Resource documents tests apply: the quickstart's agent as a component, a stack of
components, a tenant whose processes carry a mark so a test can count them."""

from __future__ import annotations

from typing import Any

from tests.support.nodes import QUICKSTART

API = "armillary.dev/v1"
AGENT = ["python3", str(QUICKSTART / "apps" / "agent.py")]
FAST_RESTART = {"backoff_initial_s": 0.05, "backoff_max_s": 0.4, "crash_loop_after": 3}
ACME: dict[str, Any] = {"apiVersion": API, "kind": "Org", "metadata": {"name": "acme"}, "spec": {}}


def agent(name: str = "agent", **extra: Any) -> dict[str, Any]:
    component: dict[str, Any] = {
        "name": name,
        "command": AGENT,
        "ports": [{"name": "http"}],
        "health_check": {"http": {"path": "/healthz", "port": "http"}, "interval_s": 0.2},
        "restart": FAST_RESTART,
    }
    component.update(extra)
    return component


def stack(name: str, *components: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"components": list(components)},
    }


def tenant(name: str, stack_name: str, mark: str | None = None, **spec: Any) -> dict[str, Any]:
    """A tenant of Org `acme` (or `org=`); with `mark`, its processes carry it in
    `ARMILLARY_TEST_MARK` (tests/support/processes.py finds them by it)."""
    marked = {"env": {"ARMILLARY_TEST_MARK": mark}} if mark is not None else {}
    return {
        "apiVersion": API,
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"org": "acme", "stack": stack_name, **marked, **spec},
    }


def org(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Org", "metadata": {"name": name}, "spec": spec}


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Secret", "metadata": {"name": name}, "spec": {"data": data}}


def webhook_source(name: str, secret_name: str, **spec: Any) -> dict[str, Any]:
    """A GitHub `WebhookSource` signing with the `signing` key of `secret_name`."""
    return {
        "apiVersion": API,
        "kind": "WebhookSource",
        "metadata": {"name": name},
        "spec": {
            "type": "github",
            "secrets": [{"name": secret_name, "key": "signing"}],
            "routing": {"key_space": "github"},
            **spec,
        },
    }

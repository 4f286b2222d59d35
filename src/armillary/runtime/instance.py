"""What a runtime is asked to run for one tenant: its component templates.

Built by runtime/expand.py from a Tenant and its Stack; read by every runtime
driver. Pure data: `spec_hash` covers everything that shapes a process, so a
changed hash means "replace the replicas" and an unchanged one "leave them".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How changes roll out (the Stack's `rollout`); changing it restarts nothing."""

    max_surge: int = 1
    max_unavailable: int = 0
    progress_deadline_s: float = 600
    unhealthy_grace_s: float = 30
    max_parallel_tenants: int = 1
    auto_rollback: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretEnv:
    """A Secret whose keys a replica receives as env `<prefix><KEY>`. Only the name
    travels with templates and allocations: the server reads and decrypts the values
    when it sends the allocation to its node, so no value is stored with them."""

    secret: str
    prefix: str = ""
    version: str  # the Secret's uid and generation: new values, new spec hash


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """What every replica of one tenant's component runs."""

    component: str
    type: str  # service | job
    replicas: int
    command: tuple[str, ...]
    cwd: str | None
    env: dict[str, str]
    ports: tuple[tuple[str, int | None], ...]  # (name, fixed port or None)
    health_check: dict[str, Any] | None
    restart: dict[str, Any]
    stop_grace_s: float
    timeout_s: float | None
    depends_on: tuple[str, ...]
    cpu_millicores: int
    memory_mb: int
    problem: str | None = None  # set when the component cannot run here, and why
    release: str | None = None  # `component@version` when it runs a recorded release
    checkout: tuple[str, str] | None = None  # (repository, commit) the node runs it from
    policy: Policy = field(default_factory=lambda: Policy())  # not part of spec_hash
    secrets: tuple[SecretEnv, ...] = ()  # env from Secrets, later ones win
    node_labels: dict[str, str] = field(default_factory=dict)  # a node must carry them all
    # The container image a container runtime runs (`image:`, or a release's image
    # artifact, `@sha256:` pinned when the record has its digest); None for processes.
    image: str | None = None
    image_problem: bool = False  # `problem` only says the nodes runtime runs no images
    exposure: str = "internal"  # public | internal; not part of spec_hash
    # replace | wait: a replica on a lost node moves at once, or waits for its node
    # (not part of spec_hash: changing it restarts nothing)
    on_node_lost: str = "replace"

    def spec_hash(self, extra_env: dict[str, str] | None = None) -> str:
        """A digest of everything that shapes the process (the replica count excluded)."""
        shape: dict[str, Any] = {
            "type": self.type,
            "command": list(self.command),
            "cwd": self.cwd,
            "env": {**self.env, **(extra_env or {})},
            "ports": [list(p) for p in self.ports],
            "health_check": self.health_check,
            "restart": self.restart,
            "stop_grace_s": self.stop_grace_s,
            "timeout_s": self.timeout_s,
        }
        if self.checkout is not None:  # only when set: command replicas keep their hashes
            shape["checkout"] = list(self.checkout)
        if self.secrets:  # likewise
            shape["secrets"] = [[s.secret, s.prefix, s.version] for s in self.secrets]
        if self.node_labels:  # likewise; a new selector moves the replicas to nodes it matches
            shape["node_labels"] = self.node_labels
        if self.image is not None:  # likewise
            shape["image"] = self.image
        text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """One tenant's stack as a runtime sees it."""

    tenant: str
    templates: tuple[Template, ...]


def url_variable(component: str) -> str:
    """`mission-control` → `MISSION_CONTROL_URL`."""
    return component.upper().replace("-", "_") + "_URL"


def template_to_json(template: Template) -> dict[str, Any]:
    """A template as plain JSON data (kept with each rollout revision)."""
    data: dict[str, Any] = dataclasses.asdict(template)
    return data


def template_from_json(data: dict[str, Any]) -> Template:
    """The inverse of `template_to_json`."""
    return Template(
        **{
            **data,
            "command": tuple(data["command"]),
            "ports": tuple((name, port) for name, port in data["ports"]),
            "depends_on": tuple(data["depends_on"]),
            "checkout": tuple(data["checkout"]) if data.get("checkout") else None,
            "policy": Policy(**data.get("policy", {})),
            "secrets": tuple(SecretEnv(**s) for s in data.get("secrets", ())),
        }
    )

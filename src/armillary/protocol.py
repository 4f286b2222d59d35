"""The node protocol: what crosses the WebSocket between the server and node daemons.

Envelopes are JSON `{"type", "seq", "payload"}`; `PROTOCOL_VERSION` is sent in
`hello` and a server refuses versions it does not speak.

    node → server   hello        node id, token, capacity, labels, what it runs now
    server → node   welcome      accepted; the node's id as the server knows it
    server → node   assignments  the node's FULL desired set with an epoch (never a delta)
    node → server   report       per-allocation state (the full set each time)
    node → server   heartbeat    CPU, memory, disk usage
    server → node   logs.open / exec.open, node → server logs.data / exec.data / *.end

Assignments are level-triggered: a node that receives one converges on exactly
that set, whatever it was running before. Allocation ids are immutable: a changed
spec is a new allocation with a new id, so "same id" always means "same thing".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from armillary.resources.stack import HealthCheck, Restart

PROTOCOL_VERSION = 1

ReplicaState = Literal[
    "pending",  # accepted, waiting to start (dependencies, backoff before first start)
    "starting",  # process spawned, health not yet established
    "running",  # process up (and healthy, when it has a health check)
    "unhealthy",  # process up, health check failing past its threshold
    "backoff",  # exited; waiting out the restart backoff
    "crashloop",  # exited too often in a row; restarts continue at the maximum backoff
    "succeeded",  # job finished with exit code 0
    "failed",  # job failed for good, or the replica cannot start (see `reason`)
    "stopping",  # being stopped (SIGTERM sent)
    "stopped",  # stopped on purpose
]


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AllocationSpec(Wire):
    """One replica a node must run: everything it needs, already resolved."""

    id: str
    tenant: str
    component: str
    name: str  # the replica name from the naming contract, e.g. agent-3li2ylakmg-0
    index: int
    type: Literal["service", "job"]
    spec_hash: str
    command: list[str]  # argv; a string command arrives as ["sh", "-c", command]
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ports: dict[str, int] = Field(default_factory=dict)  # port name → port on the node
    health_check: HealthCheck | None = None
    restart: Restart = Field(default_factory=Restart)
    stop_grace_s: float = 10
    timeout_s: float | None = None


class ReplicaReport(Wire):
    """What a node says about one allocation it holds."""

    id: str
    state: ReplicaState
    pid: int | None = None
    exit_code: int | None = None
    restarts: int = 0
    healthy: bool | None = None  # None: no health check, or not yet known
    reason: str | None = None  # machine-readable cause: PortInUse, CommandNotFound, …
    message: str | None = None  # for people
    started_at: float | None = None  # unix time the current process started
    ports: dict[str, int] = Field(default_factory=dict)


class Capacity(Wire):
    cpu_millicores: int
    memory_mb: int


class Usage(Wire):
    cpu_percent: float
    memory_used_mb: int
    memory_total_mb: int
    disk_used_percent: float


class Hello(Wire):
    protocol: int = PROTOCOL_VERSION
    node: str  # the node's chosen name (hostname by default)
    token: str
    address: str  # where replicas on this node are reached (127.0.0.1 for a local node)
    capacity: Capacity
    labels: dict[str, str] = Field(default_factory=dict)
    running: list[ReplicaReport] = Field(default_factory=list)  # adopted after a restart


class Welcome(Wire):
    node: str
    heartbeat_interval_s: float


class Assignments(Wire):
    epoch: int
    allocations: list[AllocationSpec]


class Report(Wire):
    replicas: list[ReplicaReport]


class Heartbeat(Wire):
    usage: Usage


class Envelope(Wire):
    type: str
    seq: int = 0
    payload: dict[str, Any] = Field(default_factory=dict)

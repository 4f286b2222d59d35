"""The node protocol: what crosses the WebSocket between the server and node daemons.

Envelopes are JSON `{"type", "seq", "payload"}`; `PROTOCOL_VERSION` is sent in
`hello` and a server refuses versions it does not speak.

    node → server   hello        node id, token, capacity, labels, what it runs now
    server → node   welcome      accepted; the node's id as the server knows it
    server → node   assignments  the node's FULL desired set with an epoch
    server → node   assignments.delta   what changed in that set since the last message
    node → server   report       the state of the allocations that changed since the last
    node → server   heartbeat    CPU, memory, disk usage
    server → node   logs.open / exec.open / stream.close   a stream of a replica's
    node → server   logs.data / logs.end / exec.data / exec.end   output, or a command

A session starts level-triggered: the first `assignments` after `welcome` is the
node's whole set, and the node converges on exactly that set, whatever it was
running before (the `hello` likewise carried the state of everything it holds).
After that both sides send only what changed — `assignments.delta` (allocations
added, ids removed) and `report` (the allocations whose state changed) — so the
cost of a change does not grow with the number of replicas on the node. A delta
applies to the set the previous message of the same session left; a new session
starts over from a full set, so a message lost with a connection loses nothing.
A server may send a full `assignments` again at any time (when in doubt).
Allocation ids are immutable: a changed spec is a new allocation with a new id, so
"same id" always means "same thing".

A session the server ends on purpose ends with one of the close codes below;
`close_code` maps an error to its code, and the daemon exits only on a code in
`FATAL_CLOSE_CODES` (retrying cannot help), reconnecting with backoff after any
other close.

The types are frozen dataclasses with a small strict decoder (`decode`: unknown
fields, missing fields and wrong types are errors naming the field path) rather
than pydantic models, so the node daemon, which imports this module, stays small:
the daemon is the one process on every machine, next to every workload.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from armillary.errors import (
    Forbidden,
    Invalid,
    PermanentError,
    ProtocolError,
    Unauthorized,
)

PROTOCOL_VERSION = 2  # 2: assignments.delta, reports of what changed

# Close codes of a node session (4000-4999 are the application's, RFC 6455 §7.4.2).
CLOSE_INVALID = 4400  # a message off the protocol, a hello that is not first, another version
CLOSE_UNAUTHORIZED = 4401  # the token was refused, or its role may not run a node
CLOSE_REFUSED = 4403  # the server cannot take this node, and retrying will not change that
CLOSE_REPLACED = 4409  # another daemon connected with this node name
CLOSE_TRY_AGAIN = 4503  # the server could not take the session now (a store hiccup): reconnect

FATAL_CLOSE_CODES = {
    CLOSE_INVALID: "the daemon sent a message the server does not accept",
    CLOSE_UNAUTHORIZED: "the token was refused",
    CLOSE_REFUSED: "the server refused this node",
    CLOSE_REPLACED: "another daemon connected with this node name",
}


def close_code(exc: BaseException) -> int:
    """The code the server closes a node session with after `exc`: fatal for what the
    daemon must change (its token, its messages), `CLOSE_TRY_AGAIN` for anything else
    — a `TemporaryError`, a store failure, a hello that did not arrive in time."""
    if isinstance(exc, Unauthorized | Forbidden):
        return CLOSE_UNAUTHORIZED
    if isinstance(exc, Invalid):  # a ProtocolError among them
        return CLOSE_INVALID
    if isinstance(exc, PermanentError):
        return CLOSE_REFUSED
    return CLOSE_TRY_AGAIN


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

W = TypeVar("W")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProbe:
    path: str = "/healthz"
    port: str | int | None = None
    expect_status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpProbe:
    port: str | int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecProbe:
    command: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck:
    """A component's health check as a node runs it (the Stack's, validated there)."""

    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    exec: ExecProbe | None = None
    interval_s: float = 10
    timeout_s: float = 2
    start_period_s: float = 0
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart:
    policy: Literal["always", "on-failure", "never"] | None = None
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60
    crash_loop_after: int = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkout:
    """A release's tree: the replica runs from an immutable export of `commit`."""

    repository: str  # a path on the node (absolute, or relative to the daemon's cwd)
    commit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationSpec:
    """One replica a node must run: everything it needs, already resolved."""

    id: str
    tenant: str
    component: str
    name: str  # the replica name from the naming contract, e.g. agent-3vq7wz2kxa-0
    index: int
    type: Literal["service", "job"]
    spec_hash: str
    command: list[str]  # argv; a string command arrives as ["sh", "-c", command]
    cwd: str | None = None  # relative to the checkout when there is one
    checkout: Checkout | None = None
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # name → port; 0: the node picks one
    health_check: HealthCheck | None = None
    restart: Restart = field(default_factory=Restart)
    stop_grace_s: float = 10
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaReport:
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
    ports: dict[str, int] = field(default_factory=dict)  # as the node resolved them


@dataclass(frozen=True, slots=True, kw_only=True)
class Capacity:
    cpu_millicores: int
    memory_mb: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    cpu_percent: float
    memory_used_mb: int
    memory_total_mb: int
    disk_used_percent: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    node: str  # the node's chosen name (host name by default)
    token: str
    address: str  # where replicas on this node are reached (127.0.0.1 for a local node)
    capacity: Capacity
    protocol: int = PROTOCOL_VERSION
    labels: dict[str, str] = field(default_factory=dict)
    running: list[ReplicaReport] = field(default_factory=list)  # adopted after a restart
    # How tenants are kept apart on this node: "per-tenant-user" (each tenant's replicas
    # run as a user of its own) or "shared-user" (all as the daemon's user).
    isolation: Literal["per-tenant-user", "shared-user"] = "shared-user"
    instance: str = ""  # the daemon's id (node.identity): tells a reconnect from a second daemon
    takeover: bool = False  # replace a live daemon of this name (`--takeover`; audited)


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    node: str
    heartbeat_interval_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignments:
    epoch: int
    allocations: list[AllocationSpec]


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignmentsDelta:
    """The node's set changed: hold `add` too, and let `remove` go (by id)."""

    epoch: int
    add: list[AllocationSpec] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    replicas: list[ReplicaReport]  # those whose state changed since the last report


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaUsage:
    """What one replica's process uses, measured by its node at a heartbeat."""

    cpu_percent: float  # of one CPU, since the previous heartbeat (may pass 100)
    memory_mb: float  # resident set size


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    usage: Usage
    # allocation id → usage, of the replicas with a running process; optional, so a
    # heartbeat without it is still version 2
    replicas: dict[str, ReplicaUsage] = field(default_factory=dict)
    # the node's clock (unix seconds) when it sent this: the server's clock minus it,
    # at arrival, is the skew between them (plus the one-way latency); optional too
    sent_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogsOpen:
    """Stream a replica's output: from `since_s` (unix time), the last `tail` lines,
    or the start; `follow` keeps the stream open for what comes next. `previous`:
    the last finished run's output instead (between its restart markers; not
    followed). `timestamps`: each line prefixed with when the node first saw it."""

    stream: str
    allocation: str
    follow: bool = False
    tail: int | None = None
    since_s: float | None = None
    previous: bool = False
    timestamps: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecOpen:
    """Run `command` in a replica's env and cwd, streaming its output back."""

    stream: str
    allocation: str
    command: list[str]
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamClose:
    """The server no longer wants `stream`: the node stops it."""

    stream: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LogsData:
    stream: str
    data: str  # text of the log, decoded as UTF-8 with replacement


@dataclass(frozen=True, slots=True, kw_only=True)
class LogsEnd:
    stream: str
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecData:
    stream: str
    fd: Literal["stdout", "stderr"]
    data: str  # base64 of the bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecEnd:
    stream: str
    exit_code: int | None = None  # None: it did not exit on its own (timeout, no replica)
    error: str | None = None


StreamChunk = LogsData | LogsEnd | ExecData | ExecEnd
STREAM_CHUNKS: dict[str, type[StreamChunk]] = {
    "logs.data": LogsData,
    "logs.end": LogsEnd,
    "exec.data": ExecData,
    "exec.end": ExecEnd,
}
STREAM_KINDS = {chunk: kind for kind, chunk in STREAM_CHUNKS.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    type: str
    seq: int = 0
    payload: dict[str, Any] = field(default_factory=dict)


def parse(frame: str | bytes) -> Envelope:
    """One WebSocket frame as an `Envelope`; `ProtocolError` if it is not JSON or not
    an envelope."""
    try:
        data = json.loads(frame)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise ProtocolError(f"Envelope: expected a JSON object, got {exc}") from None
    return decode(Envelope, data)


def encode(message: Any) -> dict[str, Any]:
    """A message as plain JSON-ready data."""
    data: dict[str, Any] = dataclasses.asdict(message)
    return data


def decode(kind: type[W], data: Any, *, path: str = "") -> W:
    """Build a `kind` from plain data, strictly: unknown or missing fields and wrong
    types raise `ProtocolError` naming the field path."""
    where = path or kind.__name__
    if not isinstance(data, Mapping):
        raise ProtocolError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(typing.cast(Any, kind))
    known = {f.name: f for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ProtocolError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        if name in data:
            values[name] = _value(hints[name], data[name], f"{where}.{name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ProtocolError(f"{where}.{name}: required field is missing")
    return kind(**values)


@functools.cache
def _hints(kind: Any) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _value(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _value(option, value, path)
            except ProtocolError as exc:
                problems.append(str(exc))
        raise ProtocolError("; or ".join(problems))
    if origin is Literal:
        if value in args:
            return value
        raise ProtocolError(f"{path}: expected one of {list(args)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ProtocolError(f"{path}: expected a list")
        return [_value(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ProtocolError(f"{path}: expected an object")
        return {str(k): _value(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return decode(hint, value, path=path)
    return _scalar(hint, value, path)


def _scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ProtocolError(f"{path}: expected {name}, got {type(value).__name__}")

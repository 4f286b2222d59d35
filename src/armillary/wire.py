"""What the API answers, as pydantic models both sides read: the server declares them
as its routes' response models (so the OpenAPI document says what comes back) and the
client validates answers into them (so the CLI reads attributes, not dict keys).

Field names are Python's; each model speaks camelCase on the wire (`alias_generator`)
exactly as the API always has, and `dump(model)` gives back the JSON document the
server sent, key for key, in the same order. Free-form parts (a resource's spec and
status, a node's report) stay `dict[str, Any]`: their shape is the kind's, described
by `armillary schema`, not the API's.

Layering: imported by `api` and by `client`; imports only pydantic. It must never
import `armillary.api`, `store` or `control`, so the CLI can use it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Answer(BaseModel):
    """Base of every answer model: camelCase on the wire, unknown fields kept (a newer
    server may add one), frozen once read."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )


def dump(answer: BaseModel) -> dict[str, Any]:
    """`answer` as the JSON document the server sent."""
    return answer.model_dump(mode="json", by_alias=True, exclude_unset=True)


class ProblemIssue(Answer):
    """One place a request was wrong: the field `path`, the `document` index in a batch,
    the `line` of YAML text (plan and apply's `yaml`)."""

    path: str
    message: str
    document: int | None = None
    line: int | None = None


class Problem(Answer):
    """An error answer, `application/problem+json` (RFC 9457)."""

    type: Literal["about:blank"] = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ProblemIssue] | None = None


class Health(Answer):
    """`/healthz`, `/readyz`: `ok`, or `unavailable` with the store's error type."""

    status: Literal["ok", "unavailable"]
    reason: str | None = None


class DoctorCheck(Answer):
    """One finding of `GET /api/v1/doctor`: what was looked at, how it stands, and on
    `warn` or `fail` what to do about it."""

    name: str = Field(description="What was checked: `store`, `migrations`, `node/<name>`, …")
    status: Literal["ok", "warn", "fail", "n/a"] = Field(
        description="`fail` needs fixing; `warn` works but deserves a look; `n/a` could not "
        "apply here (the finding says why)"
    )
    finding: str
    fix: str | None = Field(default=None, description="What to do, on `warn` and `fail`")


class Doctor(Answer):
    """`GET /api/v1/doctor`: the server's version and clock, and its checks of itself."""

    version: str
    server_time: str
    checks: list[DoctorCheck]


class RetentionKind(Answer):
    """One kept history in `GET /api/v1/retention`: its policy and what it holds now."""

    kind: Literal["agent-runs", "events", "provisioning-runs", "schedule-runs", "audit"]
    max_age_s: float | None = Field(description="Rows older than this go; null: no age limit")
    max_count: int | None = Field(description="Only the newest this many are kept; null: no cap")
    kept: int = Field(description="Rows held now")
    oldest: str | None = Field(description="When the oldest row held was made")
    last_removed: int | None = Field(
        default=None, description="Rows this server's last pass removed"
    )
    removed_since_start: int = Field(
        default=0, description="Rows this server's passes removed since it started"
    )
    batches_since_start: int = Field(
        default=0, description="Write transactions those passes took (one per batch)"
    )


class Retention(Answer):
    """`GET /api/v1/retention`: what is kept and for how long. Only finished runs expire,
    and an event only once no run made for it is kept."""

    enabled: bool = Field(description="Whether this server runs the retention pass")
    interval_s: float
    batch: int = Field(description="Rows removed per write transaction")
    last_pass: str | None = Field(description="When this server's last pass ran")
    kinds: list[RetentionKind]


class Version(Answer):
    """`GET /api/v1/version`: the server's package version, the resource API version it
    serves, and the Python it runs on."""

    version: str
    api_version: str
    python: str


# Resources ---------------------------------------------------------------------------


class ResourceMeta(Answer):
    """A stored resource's `metadata`: the name, labels and annotations its writer gave
    (left out when empty) and what the server owns."""

    name: str
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str
    generation: int
    resource_version: str
    created_at: str


class Resource(Answer):
    """One stored resource. `spec` and `status` are the kind's (`armillary schema`); a
    Secret's values read `<redacted>` except from the reveal route."""

    api_version: str
    kind: str
    metadata: ResourceMeta
    spec: dict[str, Any]
    status: dict[str, Any] | None = None


class ListMeta(Answer):
    """Of a page (`?limit=`): where the next starts, when more may follow."""

    continue_: str | None = Field(default=None, alias="continue")


class ResourceList(Answer):
    api_version: str
    kind: Literal["List"]
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[Resource]


class ResourceWritten(Answer):
    """What `PUT` (created, configured, unchanged) or `DELETE` (deleted) did."""

    result: Literal["created", "configured", "unchanged", "deleted"]
    resource: Resource


class FieldChange(Answer):
    """One field a plan changes: `before` is absent for an added field, `after` for a
    removed one."""

    path: str
    before: Any = None
    after: Any = None


class Change(Answer):
    action: str
    kind: str
    name: str
    fields: list[FieldChange]


class Plan(Answer):
    changes: list[Change]


class AppliedItem(Answer):
    kind: str
    name: str
    result: str
    generation: int
    resource_version: str


class Applied(Answer):
    results: list[AppliedItem]


# Nodes and replicas ------------------------------------------------------------------


class NodeDrain(Answer):
    """A drain of a node: its replicas are moved away, its jobs left to finish until
    the deadline, which stops what is left."""

    state: Literal["draining", "drained"]
    started_at: str
    deadline_at: str | None = Field(
        default=None, description="When what still runs there is stopped (null: never)"
    )
    drained_at: str | None = Field(default=None, description="When the node was found empty")


class Node(Answer):
    name: str
    address: str
    labels: dict[str, str]
    capacity: dict[str, Any]
    usage: dict[str, Any] | None = None
    status: Literal["Ready", "NotReady", "Lost"] = Field(
        default="Ready",
        description="`Lost`: silent for longer than the server's `node_lost_after_s` (its "
        "replicas with `on_node_lost: replace` run elsewhere) until it is heard again; "
        "`Ready`: connected; `NotReady`: not connected, within the window",
    )
    connected: bool
    schedulable: bool
    replicas: int
    isolation: Literal["per-tenant-user", "shared-user"] = Field(
        default="shared-user",
        description="How the node keeps tenants apart: `per-tenant-user` (its daemon runs as "
        "root and runs each tenant's replicas as an unprivileged user of that tenant alone) or "
        "`shared-user` (every tenant's replicas run as the daemon's own user)",
    )
    server: str | None = Field(
        default=None,
        description="The server replica its daemon is connected to (several servers on "
        "Postgres; see GET /api/v1/servers)",
    )
    registered_at: str | None = None
    heartbeat_at: str | None = None
    drain: NodeDrain | None = Field(
        default=None, description="The node's drain, while one is on (uncordon ends it)"
    )
    lost_at: str | None = Field(default=None, description="when it was declared lost, if it is")


class NodeList(Answer):
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[Node]


class Server(Answer):
    """A server replica sharing the store, as it last said of itself."""

    name: str = Field(description="The replica's name (ARMILLARY_SERVER_NAME, or host:port)")
    address: str = Field(description="Where it serves the API")
    version: str
    leader: bool = Field(description="Whether it runs the controllers (exactly one replica)")
    state: Literal["live", "stale"] = Field(
        description="`stale`: not seen for 10 s (stopped without saying so, or cut off); "
        "its row is removed an hour later"
    )
    started_at: str
    seen_at: str


class ServerList(Answer):
    items: list[Server]


class Replica(Answer):
    id: str
    tenant: str
    component: str
    replica: int
    name: str | None = None
    node: str
    type: str | None = None
    spec_hash: str
    ports: dict[str, Any]
    report: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None  # cpuPercent, memoryMb, measuredAt (its node's)
    created_at: str


class UnplacedReplica(Answer):
    """A replica no node takes: Pending, with the scheduler's counts per reason."""

    tenant: str
    component: str
    replica: int
    name: str
    state: str  # "Pending"
    reason: str  # "Unschedulable"
    message: str


class ReplicaList(Answer):
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[Replica]
    unplaced: list[UnplacedReplica] = []


# Provisioning ------------------------------------------------------------------------


class ProvisionStep(Answer):
    name: str
    state: str
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    detail: dict[str, Any]


class ProvisionRun(Answer):
    id: str
    action: Literal["provision", "deprovision"]
    org: str
    tenant: str
    idempotency_key: str | None = None
    state: str
    error: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    steps: list[ProvisionStep]


class ProvisionRunList(Answer):
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[ProvisionRun]


class TenantKey(Answer):
    """The tenant key a provisioning run issued, handed over once."""

    tenant: str
    id: str
    token: str


# Rollouts ----------------------------------------------------------------------------


class Revision(Answer):
    tenant: str
    component: str
    revision: int
    release: str | None = None
    state: str
    reason: str | None = None
    template_hash: str
    command: Any = None
    started_at: str
    finished_at: str | None = None


class Rollouts(Answer):
    tenant: str
    status: dict[str, Any]
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[Revision]


class Undone(Answer):
    tenant: str
    component: str
    revision: int
    release: str | None = None
    result: str
    generation: int


# Access ------------------------------------------------------------------------------


class Session(Answer):
    user: str
    role: str
    csrf_token: str
    expires_at: str


class LoginLink(Answer):
    """A one-time dashboard login link: open the server's URL + `path` within its life."""

    user: str
    created: bool = Field(description="Whether the user was created (an admin, no password)")
    path: str = Field(description="`/#login=CODE`: the code stays in the fragment")
    expires_at: str


class LoggedOut(Answer):
    logged_out: bool


class WhoAmI(Answer):
    kind: str
    id: str
    role: str
    tenant: str | None = None


class ApiKey(Answer):
    id: str
    role: str
    description: str
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None
    node: str | None = None  # a node key's node (None: bound at its first hello)


class NewApiKey(ApiKey):
    """An API key as created: the only answer that holds its value."""

    token: str


class ApiKeyList(Answer):
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[ApiKey]


class User(Answer):
    name: str
    role: str
    created_at: str
    disabled: bool
    locked_until: str | None = None


class UserList(Answer):
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[User]


class UserDeleted(Answer):
    name: str
    deleted: bool


class TenantToken(Answer):
    tenant: str
    id: str
    token: str
    expires_at: str


class TenantTokensRevoked(Answer):
    tenant: str
    revoked_before: str


# Schedules ---------------------------------------------------------------------------


class ScheduledJob(Answer):
    """One schedule with its timing (defaults spelled out; camelCase on the wire like
    every answer, though a Schedule's spec spells them snake_case) and the status its
    controller last wrote."""

    name: str
    source: Literal["Schedule", "Tenant"]
    tenant: str
    component: str | None = None
    cron: str | None = None
    time_zone: str | None = None
    concurrency_policy: str | None = None
    starting_deadline_s: int | None = None
    history_limit: int | None = None
    suspend: bool | None = None
    status: dict[str, Any]


class ScheduledJobList(Answer):
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[ScheduledJob]


class ScheduleRun(Answer):
    id: str
    schedule: str
    tenant: str
    component: str
    trigger: str
    scheduled_time: str
    state: str
    node: str | None = None
    allocation: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    report: dict[str, Any] | None = None


class ScheduleRunList(Answer):
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[ScheduleRun]


# Audit, events and agent runs --------------------------------------------------------


class AuditEntry(Answer):
    id: int
    at: str
    principal: str | None = None
    principal_kind: str | None = None
    role: str | None = None
    tenant: str | None = None
    verb: str
    path: str | None = None
    kind: str | None = None
    name: str | None = None
    generation_before: int | None = None
    generation_after: int | None = None
    status: int | None = None
    outcome: str
    source: str | None = None
    request_id: str | None = None
    duration_ms: int | None = None
    detail: dict[str, Any]


class AuditPage(Answer):
    """One page, newest first; `next` is the `before_id` of the page before, if any."""

    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[AuditEntry]
    next: int | None = None


class Event(Answer):
    """An inbound webhook event; `body` is text in `body_encoding` (utf-8 or base64)."""

    id: str
    source: str
    delivery_id: str | None = None
    received_at: str
    event_type: str | None = None
    tenant: str | None = None
    routing_key: str | None = None
    state: str
    content_type: str | None = None
    headers: dict[str, str]
    body_sha256: str
    body_encoding: str
    body: str


class EventList(Answer):
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[Event]


class AgentRun(Answer):
    id: str
    tenant: str
    component: str
    event: str | None = None
    input: dict[str, Any]
    requested_by: str
    state: Literal["queued", "running", "succeeded", "failed", "dead"]
    attempts: int
    max_attempts: int
    next_attempt_at: str
    claimed_by: str | None = None
    lease_until: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    status_code: int | None = None
    answer: str | None = None
    duration_ms: int | None = None
    error: str | None = None
    history: list[dict[str, Any]]


class AgentRunList(Answer):
    metadata: ListMeta | None = None  # only on a page that more may follow
    items: list[AgentRun]


class WebhookAnswer(Answer):
    """What a webhook delivery is answered: the stored `event` (its `state`, and the
    agent `run` it started), a `duplicate` of one seen before, or a handshake."""

    event: str | None = None
    state: str | None = None
    run: str | None = None
    duplicate: bool | None = None
    challenge: str | None = None
    handshake: str | None = None


class ExecEvent(Answer):
    """One NDJSON line of an exec: a chunk of output (`fd`, base64 `data`), then the
    `exit_code` (none if it timed out), or an `error` when the node went away."""

    fd: Literal["stdout", "stderr"] | None = None
    data: str | None = None
    exit_code: int | None = None
    error: str | None = None

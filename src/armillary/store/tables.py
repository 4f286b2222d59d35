"""The tables, in SQLAlchemy Core. Alembic migrations must produce exactly this schema
(tests/integration/test_migrations.py compares them)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrement needs INTEGER

resources = Table(
    "resources",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("name", String(253), nullable=False),
    Column("uid", String(36), nullable=False, unique=True),
    Column("generation", BigInteger, nullable=False),
    Column("resource_version", BigInteger, nullable=False),
    Column("labels", Json, nullable=False),
    Column("annotations", Json, nullable=False),
    Column("spec", Json, nullable=False),
    Column("status", Json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("kind", "name", name="uq_resources_kind_name"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("description", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("tenant", String(253), nullable=True),  # set for keys scoped to one tenant
    # The uid of that tenant when the key was issued: a tenant created again under the
    # same name is another tenant, and the key is refused there.
    Column("tenant_uid", String(36), nullable=True),
    Column("node", String(253), nullable=True),  # the one node name a node key may register
)

nodes = Table(
    "nodes",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("address", String(253), nullable=False),
    Column("labels", Json, nullable=False),
    Column("capacity", Json, nullable=False),
    Column("usage", Json, nullable=False),
    Column("schedulable", Boolean, nullable=False),
    Column("connected", Boolean, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
    # per-tenant-user | shared-user: how the node keeps tenants apart (its hello says)
    Column("isolation", String(32), nullable=False, server_default="shared-user"),
    # A drain: when it started (null: none), when what is left is stopped (null: never),
    # when the node was found empty (null: not yet). Uncordon clears all three.
    Column("drain_started_at", DateTime(timezone=True), nullable=True),
    Column("drain_deadline_at", DateTime(timezone=True), nullable=True),
    Column("drained_at", DateTime(timezone=True), nullable=True),
    # The server replica holding the node's session (store.servers): a replica that
    # starts resets only its own stale sessions, never those of the others.
    Column("server", String(253), nullable=True),
    # when the node-loss controller declared it lost (silent too long); NULL: not lost
    Column("lost_at", DateTime(timezone=True), nullable=True),
)

allocations = Table(
    "allocations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(253), nullable=False),
    Column("component", String(253), nullable=False),
    Column("replica", Integer, nullable=False),
    Column("node", String(253), ForeignKey("nodes.name"), nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("spec", Json, nullable=False),
    Column("report", Json, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("reported_at", DateTime(timezone=True), nullable=True),
    # Set on the allocation of a schedule run (schedule_runs.id): the tenant controller
    # leaves such allocations alone, and the schedule controller owns them.
    Column("schedule_run", String(36), nullable=True),
    Index("ix_allocations_tenant", "tenant"),
    Index("ix_allocations_node", "node"),
)

provision_runs = Table(
    "provision_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("action", String(16), nullable=False),  # provision | deprovision
    Column("org", String(253), nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("idempotency_key", String(200), nullable=True, unique=True),
    Column("request", Json, nullable=False),
    Column("state", String(16), nullable=False),
    Column("error", String(4000), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_provision_runs_tenant", "tenant"),
)

provision_steps = Table(
    "provision_steps",
    metadata,
    Column("run_id", String(36), ForeignKey("provision_runs.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("error", String(4000), nullable=True),
    Column("detail", Json, nullable=False),  # what the step did, so its undo undoes just that
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

servers = Table(
    "servers",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("address", String(253), nullable=False),
    Column("version", String(64), nullable=False),
    Column("leader", Boolean, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("tenant", String(253), primary_key=True),
    Column("component", String(253), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("template_hash", String(64), nullable=False),
    Column("template", Json, nullable=False),  # what to run again when rolling back to it
    Column("release", String(300), nullable=True),  # component@version, when a release
    Column("state", String(16), nullable=False),  # progressing | complete | failed | superseded
    Column("reason", String(4000), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_rollouts_release", "component", "release"),
)

schedule_states = Table(
    "schedule_states",
    metadata,
    # A Schedule resource's name, or `<tenant>/<name>` for a tenant's inline schedule.
    Column("schedule", String(127), primary_key=True),
    Column("tenant", String(253), nullable=False),
    Column("owner_uid", String(36), nullable=False),  # the Schedule's or the Tenant's uid
    Column("clock_hash", String(64), nullable=False),  # of the cron and time zone counted
    Column("version", BigInteger, nullable=False),  # every write is conditional on it
    Column("handled_at", DateTime(timezone=True), nullable=False),  # last fire time handled
    Column("last_scheduled_at", DateTime(timezone=True), nullable=True),
    Column("last_successful_at", DateTime(timezone=True), nullable=True),
    Column("status", Json, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_schedule_states_tenant", "tenant"),
)

schedule_runs = Table(
    "schedule_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("schedule", String(127), ForeignKey("schedule_states.schedule"), nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("component", String(253), nullable=False),
    Column("trigger", String(16), nullable=False),  # schedule | manual
    Column("scheduled_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # pending|running|succeeded|failed|stopped
    Column("allocation_id", String(36), nullable=True),
    Column("node", String(253), nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("reason", String(64), nullable=True),
    Column("message", String(4000), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # One run per fire time, whoever fires it: a second writer's insert fails.
    UniqueConstraint("schedule", "scheduled_at", name="uq_schedule_runs_schedule_scheduled_at"),
    Index("ix_schedule_runs_allocation_id", "allocation_id"),
)

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", String(256), nullable=False),  # argon2id
    Column("role", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", DateTime(timezone=True), nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 of the cookie's value
    Column("user", String(64), ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_sessions_user", "user"),
)

tenant_token_revocations = Table(
    "tenant_token_revocations",
    metadata,
    Column("tenant", String(253), primary_key=True),
    Column("revoked_before", DateTime(timezone=True), nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    # Append-only (store/audit.py): rows are only ever inserted, and removed whole
    # once older than the retention. Never a request body or a secret value.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("principal", String(300), nullable=True),  # `user:ana`; NULL when unknown
    Column("principal_kind", String(16), nullable=True),  # token | user | tenant | …
    Column("role", String(32), nullable=True),
    Column("tenant", String(253), nullable=True),  # the principal's tenant
    Column("verb", String(32), nullable=False),  # HTTP method, or an action name
    Column("path", String(1024), nullable=True),
    Column("kind", String(64), nullable=True),
    Column("name", String(253), nullable=True),
    Column("generation_before", BigInteger, nullable=True),
    Column("generation_after", BigInteger, nullable=True),
    Column("status", Integer, nullable=True),  # the HTTP status answered
    Column("outcome", String(64), nullable=False),  # created, configured, invalid, …
    Column("source", String(64), nullable=True),  # the client's address
    Column("request_id", String(128), nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("detail", Json, nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_principal", "principal"),
    Index("ix_audit_log_kind_name", "kind", "name"),
    Index("ix_audit_log_request_id", "request_id"),
)

secret_values = Table(
    "secret_values",
    metadata,
    # One row per Secret resource, gone with it. `ciphertext` is a Fernet token of the
    # Secret's data; the resource's spec holds only keyed digests of the values.
    Column("uid", String(36), ForeignKey("resources.uid", ondelete="CASCADE"), primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

key_checks = Table(
    "key_checks",
    metadata,
    # A Fernet token of a constant, per purpose: says at start whether the configured
    # key is the one the data was encrypted with. Written with the first Secret.
    Column("purpose", String(64), primary_key=True),
    Column("token", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

events = Table(
    "events",
    metadata,
    # One row per accepted webhook delivery (store/events.py), committed before the
    # sender is answered 2xx. Never a signature or a secret: `headers` is an allowlist.
    Column("id", String(36), primary_key=True),
    Column("source", String(253), nullable=False),  # the WebhookSource's name
    Column("delivery_id", String(512), nullable=True),  # the sender's id, same on retries
    # SHA-256 of the body for senders whose delivery id is unsigned or absent (GitHub):
    # a captured body sent again under a new id is still a replay.
    Column("replay_hash", String(64), nullable=True),
    Column("body_sha256", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("event_type", String(253), nullable=True),
    Column("tenant", String(253), nullable=True),  # NULL unless routed
    Column("routing_key", String(512), nullable=True),
    Column("state", String(16), nullable=False),  # routed | unrouted
    Column("content_type", String(255), nullable=True),
    Column("headers", Json, nullable=False),
    Column("body_encoding", String(8), nullable=False),  # utf-8 | base64
    Column("body", Text, nullable=False),
    UniqueConstraint("source", "delivery_id", name="uq_events_source_delivery_id"),
    UniqueConstraint("source", "replay_hash", name="uq_events_source_replay_hash"),
    Index("ix_events_received_at", "received_at"),
    Index("ix_events_tenant", "tenant"),
)

agent_runs = Table(
    "agent_runs",
    metadata,
    # The agent run queue (store/agent_runs.py), shared by every server replica. A
    # routed event's run is inserted in the event's own transaction, so an event
    # answered 2xx always has its run. Claimable: queued or failed, and due.
    Column("id", String(36), primary_key=True),
    Column("tenant", String(253), nullable=False),
    Column("component", String(63), nullable=False),  # the tenant's agent component
    Column("event_id", String(36), nullable=True),  # at most one run per event
    Column("input", Json, nullable=False),
    Column("requested_by", String(300), nullable=False),  # webhook:<source> | user:ana | …
    Column("state", String(16), nullable=False),  # queued|running|succeeded|failed|dead
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_by", String(128), nullable=True),  # the worker holding the lease
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),  # the first attempt
    Column("finished_at", DateTime(timezone=True), nullable=True),  # succeeded or dead
    Column("status_code", Integer, nullable=True),  # of the last attempt's answer
    Column("answer", Text, nullable=True),  # the last answer's body, bounded
    Column("duration_ms", Integer, nullable=True),
    Column("error", Text, nullable=True),  # why the last attempt failed
    Column("history", Json, nullable=False),  # one entry per attempt, bounded
    UniqueConstraint("event_id", name="uq_agent_runs_event_id"),
    Index("ix_agent_runs_due", "state", "next_attempt_at"),
    Index("ix_agent_runs_tenant", "tenant"),
    Index("ix_agent_runs_created_at", "created_at"),
)

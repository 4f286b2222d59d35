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

"""Provisioning runs with their steps, and lease locks (the SQLite side of the
per-tenant lock; Postgres uses advisory locks).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "provision_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("org", sa.String(253), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request", Json, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.String(4000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_provision_runs"),
        sa.UniqueConstraint("idempotency_key", name="uq_provision_runs_idempotency_key"),
    )
    op.create_index("ix_provision_runs_tenant", "provision_runs", ["tenant"])
    op.create_table(
        "provision_steps",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(4000), nullable=True),
        sa.Column("detail", Json, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "position", name="pk_provision_steps"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["provision_runs.id"], name="fk_provision_steps_run_id_provision_runs"
        ),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_table("provision_steps")
    op.drop_table("provision_runs")

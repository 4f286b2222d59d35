"""Nodes and the allocations placed on them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("address", sa.String(253), nullable=False),
        sa.Column("labels", Json, nullable=False),
        sa.Column("capacity", Json, nullable=False),
        sa.Column("usage", Json, nullable=False),
        sa.Column("schedulable", sa.Boolean(), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_nodes"),
    )
    op.create_table(
        "allocations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("component", sa.String(253), nullable=False),
        sa.Column("replica", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(253), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("spec", Json, nullable=False),
        sa.Column("report", Json, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_allocations"),
        sa.ForeignKeyConstraint(["node"], ["nodes.name"], name="fk_allocations_node_nodes"),
    )
    op.create_index("ix_allocations_tenant", "allocations", ["tenant"])
    op.create_index("ix_allocations_node", "allocations", ["node"])


def downgrade() -> None:
    op.drop_table("allocations")
    op.drop_table("nodes")

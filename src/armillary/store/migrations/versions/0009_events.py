"""Inbound webhook events: one row per accepted delivery, unique per sender's id.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(253), nullable=False),
        sa.Column("delivery_id", sa.String(512), nullable=True),
        sa.Column("replay_hash", sa.String(64), nullable=True),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(253), nullable=True),
        sa.Column("tenant", sa.String(253), nullable=True),
        sa.Column("routing_key", sa.String(512), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("headers", Json, nullable=False),
        sa.Column("body_encoding", sa.String(8), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("source", "delivery_id", name="uq_events_source_delivery_id"),
        sa.UniqueConstraint("source", "replay_hash", name="uq_events_source_replay_hash"),
    )
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.create_index("ix_events_tenant", "events", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_events_tenant", table_name="events")
    op.drop_index("ix_events_received_at", table_name="events")
    op.drop_table("events")

"""Rollout revisions: each change of a tenant's component, its template and outcome.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("component", sa.String(253), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("template_hash", sa.String(64), nullable=False),
        sa.Column("template", Json, nullable=False),
        sa.Column("release", sa.String(300), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(4000), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "component", "revision", name="pk_rollouts"),
    )
    op.create_index("ix_rollouts_release", "rollouts", ["component", "release"])


def downgrade() -> None:
    op.drop_index("ix_rollouts_release", table_name="rollouts")
    op.drop_table("rollouts")

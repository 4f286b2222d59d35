"""Nodes can be drained: when the drain started, its deadline, when the node was empty.

Revision ID: 0013_node_drain
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_node_drain"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = ("drain_started_at", "drain_deadline_at", "drained_at")


def upgrade() -> None:
    for name in COLUMNS:  # null: no node was draining before this
        op.add_column("nodes", sa.Column(name, sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        for name in COLUMNS:
            batch.drop_column(name)

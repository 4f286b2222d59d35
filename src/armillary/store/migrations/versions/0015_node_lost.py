"""Nodes declared lost: `lost_at` says since when a silent node's replicas may run elsewhere.

Revision ID: 0015_node_lost
Revises: 0014_servers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_node_lost"
down_revision = "0014_servers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: not lost. Nodes registered before this were never declared lost.
    op.add_column("nodes", sa.Column("lost_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("lost_at")

"""Several server replicas: the `servers` they announce, and which one holds a node.

Revision ID: 0014_servers
Revises: 0013_node_drain
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_servers"
down_revision = "0013_node_drain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("address", sa.String(253), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("leader", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Sessions recorded before this belonged to the one server there was.
    op.add_column("nodes", sa.Column("server", sa.String(253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("server")
    op.drop_table("servers")

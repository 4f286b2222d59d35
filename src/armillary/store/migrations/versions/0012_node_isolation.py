"""Nodes say how they keep tenants apart: per-tenant-user or shared-user.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nodes registered before this knew one way only: every tenant as the daemon's user.
    op.add_column(
        "nodes",
        sa.Column("isolation", sa.String(32), nullable=False, server_default="shared-user"),
    )


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("isolation")

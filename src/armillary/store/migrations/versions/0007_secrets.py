"""Encrypted Secret values, and the key check that refuses a wrong secret key at start.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_values",
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uid", name="pk_secret_values"),
        sa.ForeignKeyConstraint(
            ["uid"], ["resources.uid"], name="fk_secret_values_uid_resources", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "key_checks",
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("purpose", name="pk_key_checks"),
    )


def downgrade() -> None:
    op.drop_table("key_checks")
    op.drop_table("secret_values")

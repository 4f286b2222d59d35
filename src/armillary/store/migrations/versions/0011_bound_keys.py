"""API keys bound to what they were issued for: a tenant key to its tenant's uid, a
node key to one node name.

Tenant keys issued before this revision are bound to the uid of the tenant that
holds their name now (the one they were issued for, unless it was deleted and
created again since: nothing older can tell); a key whose tenant is gone stays
unbound and is refused. Node keys stay unbound until their first `hello`, which
binds them to the name it gives.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("tenant_uid", sa.String(36), nullable=True))
    op.add_column("api_tokens", sa.Column("node", sa.String(253), nullable=True))
    op.execute(
        "UPDATE api_tokens SET tenant_uid = ("
        "SELECT resources.uid FROM resources "
        "WHERE resources.kind = 'Tenant' AND resources.name = api_tokens.tenant"
        ") WHERE api_tokens.tenant IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_column("api_tokens", "node")
    op.drop_column("api_tokens", "tenant_uid")

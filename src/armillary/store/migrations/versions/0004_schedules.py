"""Schedules firing: each schedule's firing state, its runs, and the mark on the
allocation of a run that keeps it apart from the tenant's replicas.

Schedule resources stored before this revision never fired. They count fire times
from the upgrade, not from their creation: otherwise every one of them without a
starting deadline would fire at once, for a fire time that passed before schedules
fired at all.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("allocations", sa.Column("schedule_run", sa.String(36), nullable=True))
    op.create_table(
        "schedule_states",
        sa.Column("schedule", sa.String(127), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("owner_uid", sa.String(36), nullable=False),
        sa.Column("clock_hash", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_successful_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", Json, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("schedule", name="pk_schedule_states"),
    )
    op.create_index("ix_schedule_states_tenant", "schedule_states", ["tenant"])
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("schedule", sa.String(127), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("component", sa.String(253), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("allocation_id", sa.String(36), nullable=True),
        sa.Column("node", sa.String(253), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("message", sa.String(4000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_runs"),
        sa.ForeignKeyConstraint(
            ["schedule"],
            ["schedule_states.schedule"],
            name="fk_schedule_runs_schedule_schedule_states",
        ),
        sa.UniqueConstraint(
            "schedule", "scheduled_at", name="uq_schedule_runs_schedule_scheduled_at"
        ),
    )
    op.create_index("ix_schedule_runs_allocation_id", "schedule_runs", ["allocation_id"])
    _count_existing_schedules_from_now()


def _count_existing_schedules_from_now() -> None:
    resources = sa.table(
        "resources", sa.column("kind"), sa.column("name"), sa.column("uid"), sa.column("spec", Json)
    )
    states = sa.table(
        "schedule_states",
        *(sa.column(name) for name in ("schedule", "tenant", "owner_uid", "clock_hash", "version")),
        sa.column("handled_at", sa.DateTime(timezone=True)),
        sa.column("status", Json),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    query = sa.select(resources.c.name, resources.c.uid, resources.c.spec).where(
        resources.c.kind == "Schedule"
    )
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "schedule": row.name,
            "tenant": str(row.spec.get("tenant", "")),
            "owner_uid": row.uid,
            "clock_hash": "",  # "not counted with this cron yet": counts from the first look
            "version": 0,
            "handled_at": now,
            "status": {},
            "updated_at": now,
        }
        for row in bind.execute(query)
    ]
    if rows:
        bind.execute(sa.insert(states), rows)


def downgrade() -> None:
    op.drop_table("schedule_runs")
    op.drop_table("schedule_states")
    with op.batch_alter_table("allocations") as batch:
        batch.drop_column("schedule_run")

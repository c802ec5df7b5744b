"""The foundation: deliveries, audit, effects, redeliveries, workers, pauses.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=True),
        sa.Column("repository", sa.String(256), nullable=True),
        sa.Column("installation_id", sa.BigInteger, nullable=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dispatched_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_deliveries_status", "deliveries", ["status"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("delivery_id", sa.String(64), nullable=True),
        sa.Column("repository", sa.String(256), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("what", sa.Text, nullable=False),
        sa.Column("why", sa.Text, nullable=False),
        sa.Column("detail", sa.JSON, nullable=True),
    )
    op.create_index("ix_audit_delivery_id", "audit", ["delivery_id"])
    op.create_table(
        "effects",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    op.create_table(
        "redeliveries",
        sa.Column("guid", sa.String(64), primary_key=True),
        sa.Column("hook_delivery_id", sa.BigInteger, nullable=False),
        sa.Column("requested_at", sa.Float, nullable=False),
    )
    op.create_table(
        "workers",
        sa.Column("executor_id", sa.String(128), primary_key=True),
        sa.Column("last_seen", sa.Float, nullable=False),
    )
    op.create_table(
        "pauses",
        sa.Column("repository", sa.String(256), primary_key=True),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    for table in ("pauses", "workers", "redeliveries", "effects", "audit", "deliveries"):
        op.drop_table(table)

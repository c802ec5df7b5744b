"""Reports: one row per report run (published or with nothing to report), for the rolling
report issue and the sessions.

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
        "reports",
        sa.Column("repo", sa.String(256), primary_key=True),
        sa.Column("run_key", sa.String(200), primary_key=True),
        sa.Column("period_start", sa.Float, nullable=True),
        sa.Column("period_end", sa.Float, nullable=False),
        sa.Column("session", sa.String(64), nullable=True),
        sa.Column("session_start", sa.Float, nullable=True),
        sa.Column("issue_number", sa.Integer, nullable=True),
        sa.Column("report_date", sa.String(10), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_reports_repo", "reports", ["repo", "period_end"])


def downgrade() -> None:
    op.drop_index("ix_reports_repo", "reports")
    op.drop_table("reports")

"""Reviews: the pull requests Nightshift reviews, CI retries, escalations, tasks' agents;
audit entries may name a review workflow.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("agent", sa.String(128), nullable=True))
    with op.batch_alter_table("effects") as batch:
        batch.add_column(sa.Column("result", sa.Text, nullable=True))
    # audit entries of a review name its workflow (`review:owner/name#N@sha:attempt`)
    with op.batch_alter_table("audit") as batch:
        batch.alter_column(
            "delivery_id", type_=sa.String(300), existing_type=sa.String(64), existing_nullable=True
        )
    op.create_table(
        "pulls",
        sa.Column("repo", sa.String(256), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("task", sa.Integer, nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("fork", sa.Boolean, nullable=False),
        sa.Column("fix_rounds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fix_round_sha", sa.String(64), nullable=True),
        sa.Column("ok_to_test_sha", sa.String(64), nullable=True),
        sa.Column("ok_to_test_by", sa.String(128), nullable=True),
        sa.Column("merged_sha", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_pulls_task", "pulls", ["repo", "task"])
    op.create_index("ix_pulls_head", "pulls", ["repo", "head_sha"])
    op.create_table(
        "ci_retries",
        sa.Column("repo", sa.String(256), primary_key=True),
        sa.Column("head_sha", sa.String(64), primary_key=True),
        sa.Column("run", sa.String(128), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "escalations",
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("repo", sa.String(256), nullable=False),
        sa.Column("number", sa.Integer, nullable=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float, nullable=True),
    )
    op.create_index("ix_escalations_repo", "escalations", ["repo", "created_at"])


def downgrade() -> None:
    op.drop_table("escalations")
    op.drop_table("ci_retries")
    op.drop_table("pulls")
    with op.batch_alter_table("audit") as batch:
        batch.alter_column(
            "delivery_id", type_=sa.String(64), existing_type=sa.String(300), existing_nullable=True
        )
    with op.batch_alter_table("effects") as batch:
        batch.drop_column("result")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("agent")

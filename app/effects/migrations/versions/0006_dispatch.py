"""Dispatch: what a task needs to be scheduled and assigned, its history of moves, the
agents' runtime state (heartbeats, reachability) and the roster as last read.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("agent_name", sa.String(128), nullable=True))
        batch.add_column(sa.Column("title", sa.String(512), nullable=True))
        batch.add_column(sa.Column("body", sa.Text, nullable=True))
        batch.add_column(sa.Column("labels", sa.JSON, nullable=True))
        batch.add_column(sa.Column("depends_on", sa.JSON, nullable=True))
        batch.add_column(sa.Column("issue_created_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("assignment", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("assigned_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("acked_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("excluded", sa.Text, nullable=True))
        batch.add_column(sa.Column("waiting", sa.Text, nullable=True))
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("repo", sa.String(256), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_transitions_task", "transitions", ["repo", "number"])
    op.create_index("ix_transitions_at", "transitions", ["at"])
    op.create_table(
        "agents",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("last_heartbeat", sa.Float, nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("task", sa.String(300), nullable=True),
        sa.Column("progress", sa.Integer, nullable=True),
        sa.Column("offline_since", sa.Float, nullable=True),
        sa.Column("unreachable_since", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "roster_agents",
        sa.Column("repo", sa.String(256), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("github", sa.String(128), nullable=False),
        sa.Column("capabilities", sa.JSON, nullable=False),
        sa.Column("transport", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("max_tasks", sa.Integer, nullable=False),
        sa.Column("backup", sa.String(128), nullable=True),
        sa.Column("seen_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("roster_agents")
    op.drop_table("agents")
    op.drop_index("ix_transitions_at", "transitions")
    op.drop_index("ix_transitions_task", "transitions")
    op.drop_table("transitions")
    with op.batch_alter_table("tasks") as batch:
        for column in (
            "waiting",
            "excluded",
            "acked_at",
            "assigned_at",
            "assignment",
            "issue_created_at",
            "depends_on",
            "labels",
            "body",
            "title",
            "agent_name",
        ):
            batch.drop_column(column)

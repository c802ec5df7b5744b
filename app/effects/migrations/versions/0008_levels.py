"""Time-based escalation levels, what deferred escalations left meanwhile, test counts.

`tasks.state_since`: when the task entered its state (a block's age); `tasks.level`: the
escalation level its current block reached (0 none, 1 peer, 2 lead, 3 immediate).
`escalations.meanwhile` / `reversible`: what was done while the decision waits and whether
it can be undone. `pulls.tests_passed` / `tests_failed`: the latest review's test report.
`timers`: dispatch timers as rows (a sleeping workflow held a thread and delayed shutdown).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("state_since", sa.Float, nullable=True))
        batch.add_column(sa.Column("level", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("escalations") as batch:
        batch.add_column(sa.Column("meanwhile", sa.Text, nullable=True))
        batch.add_column(sa.Column("reversible", sa.Boolean, nullable=True))
    with op.batch_alter_table("pulls") as batch:
        batch.add_column(sa.Column("tests_passed", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tests_failed", sa.Integer, nullable=True))
    op.create_table(
        "timers",
        sa.Column("repo", sa.String(256), primary_key=True),
        sa.Column("cause", sa.String(300), primary_key=True),
        sa.Column("installation_id", sa.BigInteger, nullable=False),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("fired_at", sa.Float, nullable=True),
    )
    op.create_index("ix_timers_due", "timers", ["fired_at", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_timers_due", "timers")
    op.drop_table("timers")
    with op.batch_alter_table("pulls") as batch:
        batch.drop_column("tests_failed")
        batch.drop_column("tests_passed")
    with op.batch_alter_table("escalations") as batch:
        batch.drop_column("reversible")
        batch.drop_column("meanwhile")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("level")
        batch.drop_column("state_since")

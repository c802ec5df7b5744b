"""Count redelivery requests per delivery, so a failed redelivery is asked for again.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("redeliveries") as batch:
        batch.add_column(sa.Column("requests", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("redeliveries") as batch:
        batch.drop_column("requests")

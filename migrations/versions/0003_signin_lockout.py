"""sign-in lockout: failed sign-ins in a row and the lock's end, per user (grader.accounts)

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import grader.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_signins", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("signin_locked_until", grader.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("signin_locked_until")
        batch_op.drop_column("failed_signins")

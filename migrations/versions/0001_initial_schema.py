"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 04:59:55.499073
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import grader.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "assignments",
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("due", grader.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cutoff", grader.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("gpu", sa.Boolean(), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("synced_at", grader.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_assignments")),
    )
    op.create_table(
        "smoke_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment", sa.String(length=64), nullable=False),
        sa.Column("at", grader.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smoke_runs")),
    )
    with op.batch_alter_table("smoke_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_smoke_runs_assignment"), ["assignment"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("email", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=256), nullable=True),
        sa.Column("created_at", grader.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("login", name=op.f("uq_users_login")),
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("queues", sa.String(length=64), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("started_at", grader.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", grader.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", grader.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", grader.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "excusals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("assignment", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_excusals_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_excusals")),
        sa.UniqueConstraint("user_id", "assignment", name="uq_excusals_user_assignment"),
    )
    op.create_table(
        "extensions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("assignment", sa.String(length=64), nullable=False),
        sa.Column("due", grader.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cutoff", grader.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_extensions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extensions")),
        sa.UniqueConstraint("user_id", "assignment", name="uq_extensions_user_assignment"),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("assignment", sa.String(length=64), nullable=False),
        sa.Column("submitted_at", grader.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=256), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("queue", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("max_score", sa.Float(), nullable=True),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error_kind", sa.String(length=16), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("enqueued_at", grader.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", grader.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", grader.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=256), nullable=True),
        sa.Column("lease_until", grader.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_submissions_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
    )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_submissions_assignment"), ["assignment"], unique=False)
        batch_op.create_index("ix_submissions_status", ["status"], unique=False)
        batch_op.create_index(
            "ix_submissions_user_assignment_time", ["user_id", "assignment", "submitted_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_index("ix_submissions_user_assignment_time")
        batch_op.drop_index("ix_submissions_status")
        batch_op.drop_index(batch_op.f("ix_submissions_assignment"))

    op.drop_table("submissions")
    op.drop_table("extensions")
    op.drop_table("excusals")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))

    op.drop_table("api_tokens")
    op.drop_table("workers")
    op.drop_table("users")
    with op.batch_alter_table("smoke_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_smoke_runs_assignment"))

    op.drop_table("smoke_runs")
    op.drop_table("assignments")

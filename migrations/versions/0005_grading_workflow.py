"""the grading workflow: every grading kept (gradings, submissions.graded_status), regrade previews
(regrade_runs), manual points on rubric questions with their history and comment bank, grade releases,
and regrade requests

Existing graded or errored submissions get their one grading, current, so the history starts with them.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import grader.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = grader.db.UTCDateTime(timezone=True)
JSONType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _user_fk(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "regrade_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("assignment", sa.String(64), nullable=False, index=True),
        _user_fk("created_by"),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("closed_at", Time, nullable=True),
        _user_fk("closed_by"),
    )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("graded_status", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("regrade_run_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_submissions_regrade_run_id_regrade_runs",
            "regrade_runs",
            ["regrade_run_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_table(
        "gradings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "submission_id",
            sa.String(36),
            sa.ForeignKey("submissions.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("max_score", sa.Float(), nullable=True),
        sa.Column("result", JSONType, nullable=False),
        sa.Column("error_kind", sa.String(16), nullable=True),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.Column("current_since", Time, nullable=True),
        sa.Column("replaced_score", sa.Float(), nullable=True),
        sa.Column("replaced_status", sa.String(16), nullable=True),
        sa.Column(
            "regrade_run_id",
            sa.Integer(),
            sa.ForeignKey("regrade_runs.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    op.create_table(
        "manual_grades",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("assignment", sa.String(64), nullable=False, index=True),
        sa.Column("question", sa.String(64), nullable=False),
        sa.Column(
            "submission_id",
            sa.String(36),
            sa.ForeignKey("submissions.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("items", JSONType, nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("adjustment", sa.Float(), nullable=False),
        sa.Column("adjustment_reason", sa.Text(), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        _user_fk("graded_by"),
        sa.Column("graded_at", Time, nullable=False),
        sa.UniqueConstraint("user_id", "assignment", "question", name="uq_manual_grades_user_question"),
    )
    op.create_table(
        "manual_grade_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "manual_grade_id",
            sa.Integer(),
            sa.ForeignKey("manual_grades.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        _user_fk("by"),
        sa.Column("at", Time, nullable=False),
        sa.Column("before", JSONType, nullable=True),
        sa.Column("after", JSONType, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_table(
        "comment_bank",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("assignment", sa.String(64), nullable=False),
        sa.Column("question", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _user_fk("created_by"),
        sa.Column("created_at", Time, nullable=False),
        sa.UniqueConstraint("assignment", "question", "text", name="uq_comment_bank_text"),
    )
    op.create_table(
        "grade_releases",
        sa.Column("assignment", sa.String(64), primary_key=True),
        sa.Column("released_at", Time, nullable=False),
        _user_fk("released_by"),
    )
    op.create_table(
        "regrade_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("assignment", sa.String(64), nullable=False, index=True),
        sa.Column("question", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        _user_fk("answered_by"),
        sa.Column("answered_at", Time, nullable=True),
        sa.Column("points_before", sa.Float(), nullable=True),
        sa.Column("points_after", sa.Float(), nullable=True),
    )

    # The history starts with each finished submission's grading, current.
    connection = op.get_bind()
    subs = sa.table(
        "submissions",
        sa.column("id", sa.String()),
        sa.column("status", sa.String()),
        sa.column("graded_status", sa.String()),
        sa.column("score", sa.Float()),
        sa.column("max_score", sa.Float()),
        sa.column("result", JSONType),
        sa.column("error_kind", sa.String()),
        sa.column("finished_at", grader.db.UTCDateTime()),
        sa.column("submitted_at", grader.db.UTCDateTime()),
    )
    gradings = sa.table(
        "gradings",
        sa.column("submission_id", sa.String()),
        sa.column("created_at", grader.db.UTCDateTime()),
        sa.column("status", sa.String()),
        sa.column("score", sa.Float()),
        sa.column("max_score", sa.Float()),
        sa.column("result", JSONType),
        sa.column("error_kind", sa.String()),
        sa.column("current", sa.Boolean()),
        sa.column("current_since", grader.db.UTCDateTime()),
    )
    finished = connection.execute(
        sa.select(subs).where(subs.c.status.in_(("graded", "error")), subs.c.result.is_not(None))
    ).all()
    for row in finished:
        at = row.finished_at or row.submitted_at
        connection.execute(
            gradings.insert().values(
                submission_id=row.id,
                created_at=at,
                status=row.status,
                score=row.score,
                max_score=row.max_score,
                result=row.result,
                error_kind=row.error_kind,
                current=True,
                current_since=at,
            )
        )
    connection.execute(
        subs.update().where(subs.c.status.in_(("graded", "error"))).values(graded_status=subs.c.status)
    )


def downgrade() -> None:
    for table in (
        "regrade_requests",
        "grade_releases",
        "comment_bank",
        "manual_grade_changes",
        "manual_grades",
        "gradings",
    ):
        op.drop_table(table)
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_submissions_regrade_run_id_regrade_runs", type_="foreignkey")
        batch_op.drop_column("regrade_run_id")
        batch_op.drop_column("graded_status")
    op.drop_table("regrade_runs")

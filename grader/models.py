"""The tables. Times are aware UTC datetimes everywhere (UTCDateTime)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from grader.db import Base, UTCDateTime, utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")

# "submitted": stored for manual grading only (a project milestone without an automatic check).
STATUSES = ("queued", "running", "graded", "error", "submitted")
# A TA grades and sees submissions; settings, the roster and exports are the instructor's.
ROLES = ("student", "ta", "instructor")
STAFF_ROLES = ("ta", "instructor")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The student id, or the instructor's login, as accounts.normalize_login spells it.
    login: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    email: Mapped[str] = mapped_column(String(256), default="")
    role: Mapped[str] = mapped_column(String(16), default="student")
    # For password sign-in on the web pages; API clients use tokens.
    secret_hash: Mapped[str | None] = mapped_column(String(256))
    # Wrong secrets in a row, and the end of the lock they caused (grader.accounts.sign_in).
    failed_signins: Mapped[int] = mapped_column(default=0, server_default="0")
    signin_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_instructor(self) -> bool:
        return self.role == "instructor"

    @property
    def is_staff(self) -> bool:
        """Instructors and TAs: they see every submission and grade (grader.rubrics)."""
        return self.role in STAFF_ROLES


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # the token itself is never stored
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship(lazy="raise")


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_user_assignment_time", "user_id", "assignment", "submitted_at"),
        Index("ix_submissions_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    assignment: Mapped[str] = mapped_column(String(64), index=True)  # the slug
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sha256: Mapped[str] = mapped_column(String(64))  # the upload is data_dir/uploads/<2>/<64>
    filename: Mapped[str] = mapped_column(String(256))
    format: Mapped[str] = mapped_column(String(8))
    queue: Mapped[str] = mapped_column(String(16), default="cpu")

    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    score: Mapped[float | None] = mapped_column(Float)
    max_score: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # the whole GradeResult
    error_kind: Mapped[str | None] = mapped_column(String(16))  # student | infrastructure
    # Could not be graded for a reason of its own (grading.UNGRADABLE): not charged to the submission limits.
    ungradable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    # A team assignment's upload counts for the team (grader.teams): every current member sees it.
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="RESTRICT"), index=True)
    # The status of the current grading ("graded" or "error"; None before the first one). score, max_score,
    # result, error_kind and flagged are the current grading's too, kept while a regrade runs
    # (grader.grading_history): the gradebook counts graded_status, not the pipeline's status.
    graded_status: Mapped[str | None] = mapped_column(String(16))
    # Set while the submission is queued for a regrade preview: its grading will not be current.
    regrade_run_id: Mapped[int | None] = mapped_column(ForeignKey("regrade_runs.id", ondelete="SET NULL"))

    # Delivery bookkeeping: when the task last reached the broker (None: it never did), and the lease
    # the grading worker holds and extends; the sweeper re-enqueues what these show as stuck.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(256))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="raise")


class Extension(Base):
    __tablename__ = "extensions"
    __table_args__ = (UniqueConstraint("user_id", "assignment", name="uq_extensions_user_assignment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    assignment: Mapped[str] = mapped_column(String(64))
    due: Mapped[datetime] = mapped_column(UTCDateTime)
    cutoff: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")

    user: Mapped[User] = relationship(lazy="raise")


class Excusal(Base):
    __tablename__ = "excusals"
    __table_args__ = (UniqueConstraint("user_id", "assignment", name="uq_excusals_user_assignment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    assignment: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")

    user: Mapped[User] = relationship(lazy="raise")


class Team(Base):
    """A project team (grader.teams): 2-3 students from the instructor's team CSV."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMember(Base):
    __tablename__ = "team_members"

    # The student is the key: one team at most per student.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)


class SmokeRun(Base):
    __tablename__ = "smoke_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    passed: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")


class AssignmentRecord(Base):
    """What `grader assignments sync` last loaded: the folders stay the source of truth."""

    __tablename__ = "assignments"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(256))
    due: Mapped[datetime] = mapped_column(UTCDateTime)
    cutoff: Mapped[datetime | None] = mapped_column(UTCDateTime)
    weight: Mapped[float] = mapped_column(Float)
    gpu: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # False: the folder is gone
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Worker(Base):
    """A grading worker's heartbeat: how the API knows whether anyone serves the gpu queue."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    queues: Mapped[str] = mapped_column(String(64))  # comma-separated
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebSession(Base):
    """A signed-in browser (grader.accounts): the cookie holds a token, the table only its SHA-256."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    user: Mapped[User] = relationship(lazy="joined")


# ---- the grading workflow: gradings kept, regrade previews, manual points, release, regrade requests ----


class Grading(Base):
    """One grading of a submission, kept for ever; the submission's columns copy the current one."""

    __tablename__ = "gradings"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16))  # graded | error
    score: Mapped[float | None] = mapped_column(Float)
    max_score: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)
    error_kind: Mapped[str | None] = mapped_column(String(16))
    current: Mapped[bool] = mapped_column(Boolean, default=False)
    # When it became current, and the score of the grading it replaced (None: the first one).
    current_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replaced_score: Mapped[float | None] = mapped_column(Float)
    replaced_status: Mapped[str | None] = mapped_column(String(16))
    regrade_run_id: Mapped[int | None] = mapped_column(ForeignKey("regrade_runs.id", ondelete="SET NULL"))


class RegradeRun(Base):
    """A "regrade all" previewed before it counts: its gradings are not current until it is applied."""

    __tablename__ = "regrade_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment: Mapped[str] = mapped_column(String(64), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | applied | discarded
    total: Mapped[int] = mapped_column(Integer, default=0)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class ManualGrade(Base):
    """One student's points on one manually graded question of an assignment (grader.rubrics)."""

    __tablename__ = "manual_grades"
    __table_args__ = (
        UniqueConstraint("user_id", "assignment", "question", name="uq_manual_grades_user_question"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    assignment: Mapped[str] = mapped_column(String(64), index=True)
    question: Mapped[str] = mapped_column(String(64))
    # The submission the grader looked at (the one that counted then).
    submission_id: Mapped[str | None] = mapped_column(ForeignKey("submissions.id", ondelete="SET NULL"))
    items: Mapped[list[str]] = mapped_column(JSONType, default=list)  # rubric item labels picked
    comment: Mapped[str] = mapped_column(Text, default="")
    adjustment: Mapped[float] = mapped_column(Float, default=0)
    adjustment_reason: Mapped[str] = mapped_column(Text, default="")
    points: Mapped[float] = mapped_column(Float)  # the question's score, as computed when saved
    graded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    graded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ManualGradeChange(Base):
    """Every change to a manual grade: who, when, before and after."""

    __tablename__ = "manual_grade_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    manual_grade_id: Mapped[int] = mapped_column(
        ForeignKey("manual_grades.id", ondelete="CASCADE"), index=True
    )
    by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any]] = mapped_column(JSONType)
    source: Mapped[str] = mapped_column(String(16), default="grading")  # grading | regrade_request


class BankComment(Base):
    """A reusable comment of one question's comment bank."""

    __tablename__ = "comment_bank"
    __table_args__ = (UniqueConstraint("assignment", "question", "text", name="uq_comment_bank_text"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GradeRelease(Base):
    """An assignment whose grades are released: manual points, rubric comments, after_release tests."""

    __tablename__ = "grade_releases"

    assignment: Mapped[str] = mapped_column(String(64), primary_key=True)
    released_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class RegradeRequest(Base):
    """A student's request for a review of one question, and the grader's answer."""

    __tablename__ = "regrade_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    assignment: Mapped[str] = mapped_column(String(64), index=True)
    question: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    points_before: Mapped[float | None] = mapped_column(Float)
    points_after: Mapped[float | None] = mapped_column(Float)

"""The tables. Times are aware UTC datetimes everywhere (UTCDateTime)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from grader.db import Base, UTCDateTime, utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")

# "submitted": stored for manual grading only (a project milestone without an automatic check).
STATUSES = ("queued", "running", "graded", "error", "submitted")


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
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    # A team assignment's upload counts for the team (grader.teams): every current member sees it.
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="RESTRICT"), index=True)

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

"""Request and response models of the API (the tables are in grader.models)."""

from datetime import datetime

from pydantic import BaseModel, Field

from grader.results import CellError, GradeError, TestResult


class HiddenTotal(BaseModel):
    score: float
    max_score: float


class SubmissionOut(BaseModel):
    id: str
    assignment: str
    student: str
    status: str = Field(description="queued, running, graded or error")
    queue_note: str | None = Field(None, description="why a queued submission is waiting, when we know")
    filename: str
    format: str
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    score: float | None
    max_score: float | None
    tests: list[TestResult] = []
    hidden: HiddenTotal | None = Field(
        None, description="hidden tests' total, when their details are not shown"
    )
    error: GradeError | None = None
    output: str = ""
    output_truncated: bool = False
    cell_errors: list[CellError] = Field(
        [], description="notebook cells that raised; the next cells still ran"
    )
    late_seconds: int = Field(
        0, description="after the student's due date (extensions included), before grace"
    )
    penalty_percent: float | None = Field(
        None, description="late penalty (grace and cap applied, before late days), in percent"
    )
    # Instructors only:
    flags: list[str] | None = None
    flagged: bool | None = None
    pinned: bool | None = None
    worker: str | None = None


class AssignmentOut(BaseModel):
    slug: str
    title: str
    released: datetime
    due: datetime
    cutoff: datetime | None
    formats: list[str]
    max_submissions: int | None
    per_hour: int | None
    counts: str
    weight: float
    gpu: bool
    feedback_hidden: str
    kind: str = Field("homework", description="homework, or project: one upload counts for the team")
    max_upload_mb: float | None = None


class RegradeOut(BaseModel):
    queued: int


class SmokeIn(BaseModel):
    passed: bool
    detail: str = ""


class SmokeOut(BaseModel):
    assignment: str
    at: datetime
    passed: bool
    detail: str

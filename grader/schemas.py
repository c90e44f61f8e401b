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
    regraded_at: datetime | None = Field(None, description="when a regrade's grading became the current one")
    regraded_from: float | None = Field(None, description="the score before that regrade (None: an error)")
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


# ---- the grading workflow (grader.rubrics, grader.release, grader.regrades, grader.regrade_requests) ----


class ManualGradeIn(BaseModel):
    items: list[str] = Field([], description="the rubric items picked, by label")
    comment: str = ""
    adjustment: float = Field(0, description="points added (or, negative, taken) after the rubric")
    adjustment_reason: str = Field("", description="required with an adjustment")
    add_to_bank: bool = Field(False, description="also put the comment in the question's comment bank")


class ManualGradeOut(BaseModel):
    question: str
    points: float
    max_points: float
    items: list[str]
    comment: str
    adjustment: float
    adjustment_reason: str
    graded_at: datetime


class ManualChangeOut(BaseModel):
    question: str
    at: datetime
    by: str
    before: dict | None
    after: dict
    source: str


class StudentGradingOut(BaseModel):
    """One student's manual grades on one assignment, as staff see them."""

    assignment: str
    student: str
    released: bool
    manual_points: float
    manual_max: float
    grades: list[ManualGradeOut]
    history: list[ManualChangeOut]


class RegradeRequestOut(BaseModel):
    id: int
    question: str
    message: str
    created_at: datetime
    answer: str | None
    answered_at: datetime | None
    points_before: float | None
    points_after: float | None


class MyGradingOut(BaseModel):
    """What a student sees of the manual grading: nothing of it before the release."""

    assignment: str
    released: bool
    manual_points: float | None = None
    manual_max: float | None = None
    grades: list[ManualGradeOut] = []
    requests: list[RegradeRequestOut] = []


class ProgressOut(BaseModel):
    question: str
    title: str
    graded: int
    total: int


class ReleaseIn(BaseModel):
    released: bool


class ReleaseOut(BaseModel):
    assignment: str
    released: bool
    released_at: datetime | None


class RegradeRequestIn(BaseModel):
    question: str
    message: str


class RegradeAnswerIn(BaseModel):
    answer: str
    adjustment: float | None = Field(None, description="the question's adjustment becomes this value")


class ScoreChangeOut(BaseModel):
    student: str
    submission: str
    before: float | None
    after: float | None
    before_status: str | None
    after_status: str
    delta: float
    stale: bool


class PerTestShiftOut(BaseModel):
    name: str
    now_pass: list[str]
    now_fail: list[str]


class RegradePreviewOut(BaseModel):
    id: int
    assignment: str
    state: str
    total: int
    pending: int
    up: int
    down: int
    unchanged: int
    changes: list[ScoreChangeOut]
    tests: list[PerTestShiftOut]


class AppliedOut(BaseModel):
    applied: int
    skipped: int


class GradingOut(BaseModel):
    id: int
    created_at: datetime
    status: str
    score: float | None
    max_score: float | None
    current: bool
    current_since: datetime | None
    regrade_run: int | None

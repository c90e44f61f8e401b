"""What the student pages show and accept: plain functions over the database, no HTTP.

A student only ever reaches rows with their own user_id: every query here filters on it.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import catalog, display, feedback, gradebook, policies, submissions
from grader.assignments import Assignment
from grader.config import Settings
from grader.db import utcnow
from grader.models import Submission, User
from grader.results import CellError, GradeError, GradeResult, TestResult
from grader.schemas import HiddenTotal

DONE = ("graded", "error")


def course_assignments(session: Session, settings: Settings) -> dict[str, Assignment]:
    """The assignments the service serves, by slug (the same catalog the API uses)."""
    return catalog.current(session=session, settings=settings)


def submission_row(sub: Submission, login: str) -> gradebook.SubmissionRow:
    return gradebook.SubmissionRow(
        id=sub.id,
        student_id=login,
        assignment=sub.assignment,
        submitted_at=sub.submitted_at,
        status=sub.status,
        score=sub.score,
        max_score=sub.max_score,
        pinned=sub.pinned,
    )


def charged(sub: Submission) -> bool:
    """Counts against the submission limits: everything but what our infrastructure lost."""
    return sub.error_kind != "infrastructure"


@dataclass
class AssignmentRow:
    assignment: Assignment
    deadline: policies.Deadline
    extended: bool
    due_text: str
    time_left: str
    late_text: str
    used: int
    allowed: int | None
    per_hour: int | None
    counted: gradebook.Scored | None
    open: bool
    cutoff_text: str


@dataclass
class SubmissionItem:
    submission: Submission
    submitted_text: str
    late_units: int
    penalty: Decimal
    counts: bool


@dataclass
class AssignmentPage:
    row: AssignmentRow
    submissions: list[SubmissionItem] = field(default_factory=list)
    refusal: str | None = None  # why an upload would be refused right now


def _row(session: Session, user: User, assignment: Assignment, subs: list[Submission], now: datetime):
    tz = assignment.course.timezone
    found = submissions.find_extension(session, user_id=user.id, slug=assignment.slug)
    extension = submissions.extension_row(found, user.login)
    deadline = policies.deadline_for(assignment, extension)
    policy = assignment.submissions
    counted = gradebook.counted_submission(
        [submission_row(s, user.login) for s in subs], deadline, policy.counts
    )
    return AssignmentRow(
        assignment=assignment,
        deadline=deadline,
        extended=extension is not None,
        due_text=display.local_time(deadline.due, tz),
        time_left=display.time_left(deadline.due, now),
        late_text=display.late_policy_text(deadline.policy, tz),
        used=sum(charged(s) for s in subs),
        allowed=policy.max,
        per_hour=policy.per_hour,
        counted=counted,
        open=deadline.cutoff is None or now <= deadline.cutoff,
        cutoff_text=display.local_time(deadline.cutoff, tz) if deadline.cutoff else "",
    )


def _submissions(session: Session, user: User, slug: str) -> list[Submission]:
    return list(
        session.scalars(
            select(Submission)
            .where(Submission.user_id == user.id, Submission.assignment == slug)
            .order_by(Submission.submitted_at.desc())
        )
    )


def assignment_rows(session: Session, *, user: User, settings: Settings) -> list[AssignmentRow]:
    """The released assignments, soonest due first, with this student's standing on each."""
    now = utcnow()
    rows = [
        _row(session, user, a, _submissions(session, user, a.slug), now)
        for a in course_assignments(session, settings).values()
        if policies.released(a, now)
    ]
    return sorted(rows, key=lambda row: row.deadline.due)


def refusal_reason(session: Session, assignment: Assignment, user: User, now: datetime) -> str | None:
    """Why this student cannot upload now (cutoff, submission limits): the API's own check."""
    try:
        submissions.check_limits(session=session, assignment=assignment, user_id=user.id, now=now)
    except submissions.Refused as exc:
        return exc.message
    return None


def assignment_page(session: Session, *, user: User, slug: str, settings: Settings) -> AssignmentPage | None:
    assignment = course_assignments(session, settings).get(slug)
    now = utcnow()
    if assignment is None or not policies.released(assignment, now):
        return None
    subs = _submissions(session, user, slug)
    row = _row(session, user, assignment, subs, now)
    counted_id = row.counted.submission.id if row.counted else None
    tz = assignment.course.timezone
    items = [
        SubmissionItem(
            submission=s,
            submitted_text=display.local_time(s.submitted_at, tz),
            late_units=policies.late_units(row.deadline, s.submitted_at),
            penalty=policies.penalty_percent(row.deadline, s.submitted_at),
            counts=s.id == counted_id,
        )
        for s in subs
    ]
    return AssignmentPage(row=row, submissions=items, refusal=refusal_reason(session, assignment, user, now))


@dataclass
class StudentResult:
    """A result as its student may see it (grader.feedback decides what of the hidden tests)."""

    status: str
    score: float
    max_score: float | None
    tests: list[TestResult]
    hidden_total: HiddenTotal | None  # shown when hidden tests appear only as a total
    error: GradeError | None
    output: str
    output_truncated: bool
    cell_errors: list[CellError]


def student_result(result: GradeResult, hidden: str) -> StudentResult:
    tests, total, error = feedback.for_student(result, hidden=hidden)
    return StudentResult(
        status=result.status,
        score=result.score,
        max_score=result.max_score,
        tests=list(tests),
        hidden_total=total if hidden == "score" else None,
        error=error,
        output=result.output,
        output_truncated=result.output_truncated,
        cell_errors=result.cell_errors,
    )


@dataclass
class SubmissionView:
    assignment: Assignment
    submission: Submission
    submitted_text: str
    result: StudentResult | None
    late_units: int
    penalty: Decimal
    final_score: Decimal | None
    counts: bool
    state: dict


def own_submission(session: Session, user: User, submission_id: str) -> Submission | None:
    """The submission if it is this user's; None for someone else's, exactly as for a missing one."""
    return session.scalar(
        select(Submission).where(Submission.id == submission_id, Submission.user_id == user.id)
    )


def _state(sub: Submission) -> dict:
    notes = {
        "queued": "Waiting for a grading worker ...",
        "running": "Running the tests in the sandbox ...",
        "graded": "Graded.",
        "error": "Could not be graded.",
    }
    return {"id": sub.id, "status": sub.status, "done": sub.status in DONE, "note": notes.get(sub.status, "")}


def submission_state(session: Session, *, user: User, submission_id: str) -> dict | None:
    """The small JSON the submission page polls until grading is done."""
    sub = own_submission(session, user, submission_id)
    return _state(sub) if sub else None


def submission_view(session: Session, *, user: User, submission_id: str, settings: Settings):
    sub = own_submission(session, user, submission_id)
    if sub is None:
        return None
    assignment = course_assignments(session, settings).get(sub.assignment)
    if assignment is None:
        return None
    deadline = submissions.deadline(session=session, assignment=assignment, user_id=user.id)
    result = None
    if sub.status in DONE and sub.result:
        result = student_result(GradeResult.model_validate(sub.result), assignment.config.feedback.hidden)
    scored = gradebook.score(submission_row(sub, user.login), deadline)
    counted = gradebook.counted_submission(
        [submission_row(s, user.login) for s in _submissions(session, user, sub.assignment)],
        deadline,
        assignment.submissions.counts,
    )
    final = None
    if sub.status == "graded" and sub.max_score:
        final = gradebook.rounded(Decimal(repr(sub.score or 0)) * (100 - scored.penalty) / 100)
    return SubmissionView(
        assignment=assignment,
        submission=sub,
        submitted_text=display.local_time(sub.submitted_at, assignment.course.timezone),
        result=result,
        late_units=scored.late_units,
        penalty=scored.penalty,
        final_score=final,
        counts=counted is not None and counted.submission.id == sub.id,
        state=_state(sub),
    )

"""The instructor's pages: assignments, students, extensions, regrades, the gradebook."""

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from grader import accounts, catalog, extensions, gradebook, policies, rubrics, submissions
from grader.assignments import Assignment
from grader.config import Settings, get_settings
from grader.deps import SessionDep
from grader.models import Extension, SmokeRun, Submission, User
from grader.results import GradeResult
from grader.web.common import (
    InstructorFormDep,
    InstructorPageDep,
    PageError,
    counted,
    counted_text,
    flash_redirect,
    lateness_text,
    local_time,
    render,
)
from grader.web.exports import gradebook_csv_lines
from grader.web.smoke_check import Pending, settle

router = APIRouter(prefix="/instructor", include_in_schema=False)


@dataclass(frozen=True)
class Bucket:
    label: str
    count: int
    height_percent: float


def histogram(percents: list[float], *, buckets: int = 10) -> list[Bucket]:
    """Counts of percents (0..100) in equal ranges; full marks fall in the last one."""
    counts = [0] * buckets
    for percent in percents:
        counts[min(int(max(percent, 0) / 100 * buckets), buckets - 1)] += 1
    top = max(counts) or 1
    step = 100 / buckets
    return [
        Bucket(label=f"{i * step:.0f}–{(i + 1) * step:.0f}", count=count, height_percent=100 * count / top)
        for i, count in enumerate(counts)
    ]


@dataclass(frozen=True)
class TestRate:
    __test__ = False  # not a pytest class

    name: str
    visibility: str
    passed: int
    total: int
    max_points: float

    @property
    def percent(self) -> float:
        return 100 * self.passed / self.total if self.total else 0.0


def pass_rates(results: list[GradeResult]) -> list[TestRate]:
    """Per test, how many graded results passed it; the most failed tests first."""
    passed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    info: dict[str, tuple[str, float]] = {}
    for result in results:
        if result.status != "graded":
            continue
        for test in result.tests:
            total[test.name] += 1
            passed[test.name] += test.outcome == "passed"
            info[test.name] = (test.visibility, test.max_points)
    rates = [TestRate(name, info[name][0], passed[name], total[name], info[name][1]) for name in total]
    return sorted(rates, key=lambda rate: (rate.percent, rate.name))


def _manual_by_login(session: Session, assignment: Assignment):
    """login -> the student's manual points on the assignment (grader.rubrics) as the gradebook counts
    them: none for an assignment without questions, 0 for a student not graded yet."""
    if not assignment.questions:
        return lambda login: None
    totals = rubrics.manual_totals(session, assignments=[assignment])
    return lambda login: gradebook.Manual(totals.get((login, assignment.slug), 0), assignment.manual_max)


@dataclass
class AssignmentSummary:
    assignment: Assignment
    due_text: str
    counts: dict[str, int]  # by status
    students: int  # students with at least one submission
    smoke: SmokeRun | None
    infrastructure_errors: int
    flagged: int
    smoke_pending: list[Pending] = field(default_factory=list)  # a smoke check started from a page


def summary(session: Session, assignment: Assignment) -> AssignmentSummary:
    """One assignment's submission counts and the reference solution's last smoke run."""
    slug = assignment.slug
    found = submissions.assignment_counts(session, slug=slug)
    pending = settle(session=session, assignment=assignment)
    return AssignmentSummary(
        assignment=assignment,
        due_text=local_time(assignment.due, assignment.course.timezone),
        counts=submissions.status_counts(session, slug=slug),
        students=found.students,
        smoke=catalog.last_smoke(session=session, slug=slug),
        infrastructure_errors=found.infrastructure_errors,
        flagged=found.flagged,
        smoke_pending=pending,
    )


@dataclass
class Dashboard:
    assignment: Assignment
    summary: AssignmentSummary
    histogram: list[Bucket]
    counted_students: int
    mean_percent: float | None
    pass_rates: list[TestRate]
    pending: list[tuple[Submission, User]]
    problems: list[tuple[Submission, User, str]]  # infrastructure errors and flagged submissions


def dashboard(session: Session, *, settings: Settings, slug: str) -> Dashboard | None:
    """One assignment: the counted score of each student, per-test pass rates, the queue, problems."""
    assignment = catalog.current(session=session, settings=settings).get(slug)
    if assignment is None:
        return None
    rows = submissions.of_assignment(session, slug=slug)
    by_student: dict[int, list[Submission]] = defaultdict(list)
    logins = {}
    for sub, user in rows:
        by_student[sub.user_id].append(sub)
        logins[sub.user_id] = user.login
    granted = {ext.user_id: ext for ext, _ in extensions.stored(session, slugs=[slug])}
    manual = _manual_by_login(session, assignment)  # manual points count as in the gradebook
    percents, counted_results = [], []
    for user_id, subs in by_student.items():
        deadline = extensions.deadline_with(assignment, granted.get(user_id))
        chosen = counted(subs, logins[user_id], deadline, assignment, manual(logins[user_id]))
        if chosen is None:
            continue
        percents.append(float(chosen.final))
        sub = next(s for s in subs if s.id == chosen.submission.id)
        if sub.result:
            counted_results.append(GradeResult.model_validate(sub.result))
    problems = []
    for sub, user in rows:
        if sub.error_kind == "infrastructure":
            message = (sub.result or {}).get("error", {}) or {}
            problems.append((sub, user, f"infrastructure error: {message.get('message', '')}"))
        elif sub.flagged:
            problems.append((sub, user, "flagged: " + ", ".join((sub.result or {}).get("flags", []))))
    return Dashboard(
        assignment=assignment,
        summary=summary(session, assignment),
        histogram=histogram(percents),
        counted_students=len(percents),
        mean_percent=sum(percents) / len(percents) if percents else None,
        pass_rates=pass_rates(counted_results),
        pending=[(s, u) for s, u in rows if s.status in ("queued", "running")],
        problems=problems[-50:],
    )


@dataclass
class StudentSummary:
    user: User
    submissions: int
    last_at: datetime | None


@dataclass
class StudentAssignment:
    assignment: Assignment
    deadline: policies.Deadline
    extension: Extension | None
    due_text: str
    cutoff_text: str  # "" when uploads never close
    due_local_input: str  # for <input type=datetime-local>, in the course's time zone
    cutoff_local_input: str
    submissions: list[tuple[Submission, str, str]] = field(default_factory=list)  # (sub, lateness, when)
    counted_id: str | None = None
    counted_score: str = ""


def _local_input(moment: datetime, timezone: str) -> str:
    return policies.utc(moment).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%dT%H:%M")


def student_detail(
    session: Session, *, settings: Settings, login: str
) -> tuple[User, list[StudentAssignment]] | None:
    """Every submission of one student, per assignment, with their extensions."""
    user = accounts.find(session, login=login, role="student")
    if user is None:
        return None
    subs = submissions.of_student(session, user_id=user.id)
    granted = {ext.assignment: ext for ext, _ in extensions.stored(session, user_id=user.id)}
    out = []
    assignments = catalog.current(session=session, settings=settings)
    for slug, assignment in sorted(assignments.items(), key=lambda kv: kv[1].due):
        tz = assignment.course.timezone
        ext = granted.get(slug)
        deadline = extensions.deadline_with(assignment, ext)
        mine = [s for s in subs if s.assignment == slug]
        chosen = counted(
            mine, user.login, deadline, assignment, _manual_by_login(session, assignment)(user.login)
        )
        cutoff = deadline.cutoff
        out.append(
            StudentAssignment(
                assignment=assignment,
                deadline=deadline,
                extension=ext,
                due_text=local_time(deadline.due, tz),
                cutoff_text=local_time(cutoff, tz) if cutoff else "",
                due_local_input=_local_input(deadline.due, tz),
                cutoff_local_input=_local_input(ext.cutoff, tz) if ext and ext.cutoff else "",
                submissions=[
                    (s, lateness_text(deadline, s.submitted_at), local_time(s.submitted_at, tz)) for s in mine
                ],
                counted_id=chosen.submission.id if chosen else None,
                counted_score=counted_text(chosen) if chosen else "",
            )
        )
    return user, out


# ---- the pages ---------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep, web: InstructorPageDep) -> Response:
    """Every assignment's counts and smoke run, and the queue."""
    assignments = catalog.current(session=session, settings=get_settings()).values()
    return render(
        request,
        "instructor_overview.html",
        web=web,
        title="Assignments",
        nav="overview",
        summaries=sorted((summary(session, a) for a in assignments), key=lambda s: s.assignment.due),
        queue=submissions.queue_state(session, settings=get_settings()),
    )


@router.get("/assignments/{slug}", response_class=HTMLResponse)
def assignment(request: Request, session: SessionDep, web: InstructorPageDep, slug: str) -> Response:
    """One assignment's dashboard."""
    board = dashboard(session, settings=get_settings(), slug=slug)
    if board is None:
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    title = board.assignment.title
    return render(
        request,
        "instructor_assignment.html",
        web=web,
        title=title,
        nav="overview",
        board=board,
        late_policy=policies.effective_late_policy(board.assignment),
    )


@router.post("/assignments/{slug}/regrade")
def regrade_all(request: Request, session: SessionDep, web: InstructorFormDep, slug: str) -> Response:
    """Queue every submission of the assignment to be graded again."""
    sent = submissions.regrade(session=session, settings=get_settings(), slug=slug)
    message = f"Queued {sent} submission{'s' * (sent != 1)} for regrading."
    return flash_redirect(request, f"/instructor/assignments/{slug}", web, message)


@router.post("/submissions/{submission_id}/regrade")
def regrade_one(
    request: Request,
    session: SessionDep,
    web: InstructorFormDep,
    submission_id: str,
    back: Annotated[str, Form()] = "/instructor",
) -> Response:
    """Queue one submission to be graded again."""
    sent = submissions.regrade(session=session, settings=get_settings(), submission_id=submission_id)
    # Only a page of ours: "/instructor.evil.example" or "//..." would be an open redirect.
    back = back if back.startswith("/instructor/") or back == "/instructor" else "/instructor"
    if sent:
        return flash_redirect(request, back, web, "Queued the submission for regrading.")
    return flash_redirect(request, back, web, "Nothing to regrade: it is being graded right now.", "error")


@router.get("/students", response_class=HTMLResponse)
def students(request: Request, session: SessionDep, web: InstructorPageDep) -> Response:
    """The roster with each student's number of submissions."""
    rows = [
        StudentSummary(user=u, submissions=n, last_at=last) for u, n, last in submissions.per_student(session)
    ]
    return render(
        request, "instructor_students.html", web=web, title="Students", nav="students", students=rows
    )


def _student_page(
    request: Request, session, web, login: str, *, error: str = "", status: int = 200
) -> Response:
    found = student_detail(session, settings=get_settings(), login=login)
    if found is None:
        raise PageError(404, "No such student", f"There is no student {login!r}.")
    student, rows = found
    return render(
        request,
        "instructor_student.html",
        web=web,
        status_code=status,
        title=student.name,
        nav="students",
        student=student,
        rows=rows,
        error=error,
    )


@router.get("/students/{login}", response_class=HTMLResponse)
def student(request: Request, session: SessionDep, web: InstructorPageDep, login: str) -> Response:
    """One student's submissions and extensions."""
    return _student_page(request, session, web, login)


@router.post("/students/{login}/extensions/{slug}")
def extension(
    request: Request,
    session: SessionDep,
    web: InstructorFormDep,
    login: str,
    slug: str,
    due: Annotated[str, Form(max_length=40)] = "",
    cutoff: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
    remove: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Grant, change or remove one student's extension for one assignment."""
    user = accounts.find(session, login=login, role="student")
    assignment = catalog.current(session=session, settings=get_settings()).get(slug)
    if user is None or assignment is None:
        raise PageError(404, "Not found", "No such student or assignment.")
    if remove:
        extensions.remove(session=session, user=user, slug=slug)
        message = f"Removed the extension on {slug}."
    else:
        try:
            extensions.grant(
                session=session, user=user, assignment=assignment, due=due, cutoff=cutoff, reason=reason
            )
        except extensions.BadExtension as exc:
            # Back to the page's own address, not this form's: a reload must not post it again.
            return flash_redirect(
                request, f"/instructor/students/{login}#a-{slug}", web, f"{slug}: {exc}", "error"
            )
        message = f"Saved the extension on {slug}."
    return flash_redirect(request, f"/instructor/students/{login}#a-{slug}", web, message)


@router.get("/gradebook", response_class=HTMLResponse)
def gradebook_page(request: Request, session: SessionDep, web: InstructorPageDep) -> Response:
    """The gradebook as a table, with its CSV files."""
    settings = get_settings()
    table = list(csv.reader(gradebook_csv_lines(session, settings=settings)))
    return render(
        request,
        "instructor_gradebook.html",
        web=web,
        title="Gradebook",
        nav="gradebook",
        header=table[0] if table else [],
        rows=table[1:],
        per_test=gradebook.in_order(catalog.current(session=session, settings=settings).values()),
    )

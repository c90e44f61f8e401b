"""What the instructor pages show and change: plain functions over the database, no HTTP."""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grader import accounts, display, gradebook, policies, submissions
from grader.assignments import Assignment
from grader.config import Settings
from grader.db import utcnow
from grader.models import STATUSES, Extension, SmokeRun, Submission, User, Worker
from grader.results import GradeResult
from grader.student_pages import course_assignments, submission_row


@dataclass
class AssignmentSummary:
    assignment: Assignment
    due_text: str
    counts: dict[str, int]  # by status
    students: int  # students with at least one submission
    smoke: SmokeRun | None
    infrastructure_errors: int
    flagged: int


def _smoke(session: Session, slug: str) -> SmokeRun | None:
    return session.scalar(
        select(SmokeRun).where(SmokeRun.assignment == slug).order_by(SmokeRun.at.desc()).limit(1)
    )


def _status_counts(session: Session, slug: str | None = None) -> dict[str, int]:
    query = select(Submission.status, func.count()).group_by(Submission.status)
    if slug is not None:
        query = query.where(Submission.assignment == slug)
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: n for status, n in session.execute(query)})
    return counts


def overview(session: Session, *, settings: Settings) -> list[AssignmentSummary]:
    """Every assignment with its submission counts and the reference solution's last smoke run."""
    summaries = []
    for slug, assignment in course_assignments(session, settings).items():
        where = Submission.assignment == slug
        summaries.append(
            AssignmentSummary(
                assignment=assignment,
                due_text=display.local_time(assignment.due, assignment.course.timezone),
                counts=_status_counts(session, slug),
                students=session.scalar(select(func.count(func.distinct(Submission.user_id))).where(where))
                or 0,
                smoke=_smoke(session, slug),
                infrastructure_errors=session.scalar(
                    select(func.count()).where(where, Submission.error_kind == "infrastructure")
                )
                or 0,
                flagged=session.scalar(select(func.count()).where(where, Submission.flagged.is_(True))) or 0,
            )
        )
    return sorted(summaries, key=lambda s: s.assignment.due)


@dataclass
class QueueState:
    counts: dict[str, int]
    oldest_queued: datetime | None
    workers: list[Worker]
    live_workers: int


def queue_state(session: Session) -> QueueState:
    """How much is waiting and who is grading it (workers seen in the last two minutes are live)."""
    now = utcnow()
    workers = list(session.scalars(select(Worker).order_by(Worker.seen_at.desc())))
    return QueueState(
        counts=_status_counts(session),
        oldest_queued=session.scalar(
            select(func.min(Submission.submitted_at)).where(Submission.status == "queued")
        ),
        workers=workers,
        live_workers=sum(now - w.seen_at < timedelta(minutes=2) for w in workers),
    )


@dataclass
class Dashboard:
    assignment: Assignment
    summary: AssignmentSummary
    histogram: list[display.Bucket]
    counted_students: int
    mean_percent: float | None
    pass_rates: list[display.TestRate]
    pending: list[tuple[Submission, User]]
    problems: list[tuple[Submission, User, str]]  # infrastructure errors and flagged submissions


def _extensions(session: Session, slug: str | None = None) -> dict[tuple[int, str], Extension]:
    query = select(Extension)
    if slug is not None:
        query = query.where(Extension.assignment == slug)
    return {(e.user_id, e.assignment): e for e in session.scalars(query)}


def dashboard(session: Session, *, settings: Settings, slug: str) -> Dashboard | None:
    """One assignment: the counted score of each student, per-test pass rates, the queue, problems."""
    assignment = course_assignments(session, settings).get(slug)
    if assignment is None:
        return None
    summary = next(s for s in overview(session, settings=settings) if s.assignment.slug == slug)
    rows = session.execute(
        select(Submission, User)
        .join(User, User.id == Submission.user_id)
        .where(Submission.assignment == slug, User.role == "student")
        .order_by(Submission.submitted_at)
    ).all()
    by_student: dict[int, list[Submission]] = defaultdict(list)
    logins = {}
    for sub, user in rows:
        by_student[sub.user_id].append(sub)
        logins[sub.user_id] = user.login
    extensions = _extensions(session, slug)
    percents, counted_results = [], []
    for user_id, subs in by_student.items():
        deadline = policies.deadline_for(
            assignment, submissions.extension_row(extensions.get((user_id, slug)), logins[user_id])
        )
        counted = gradebook.counted_submission(
            [submission_row(s, logins[user_id]) for s in subs], deadline, assignment.submissions.counts
        )
        if counted is None:
            continue
        percents.append(float(counted.final))
        chosen = next(s for s in subs if s.id == counted.submission.id)
        if chosen.result:
            counted_results.append(GradeResult.model_validate(chosen.result))
    problems = []
    for sub, user in rows:
        if sub.error_kind == "infrastructure":
            message = (sub.result or {}).get("error", {}) or {}
            problems.append((sub, user, f"infrastructure error: {message.get('message', '')}"))
        elif sub.flagged:
            problems.append((sub, user, "flagged: " + ", ".join((sub.result or {}).get("flags", []))))
    return Dashboard(
        assignment=assignment,
        summary=summary,
        histogram=display.histogram(percents),
        counted_students=len(percents),
        mean_percent=sum(percents) / len(percents) if percents else None,
        pass_rates=display.pass_rates(counted_results),
        pending=[(s, u) for s, u in rows if s.status in ("queued", "running")],
        problems=problems[-50:],
    )


@dataclass
class StudentSummary:
    user: User
    submissions: int
    last_at: datetime | None


def students(session: Session) -> list[StudentSummary]:
    rows = session.execute(
        select(User, func.count(Submission.id), func.max(Submission.submitted_at))
        .outerjoin(Submission, Submission.user_id == User.id)
        .where(User.role == "student")
        .group_by(User.id)
        .order_by(User.login)
    ).all()
    return [StudentSummary(user=u, submissions=n, last_at=last) for u, n, last in rows]


@dataclass
class StudentAssignment:
    assignment: Assignment
    deadline: policies.Deadline
    extension: Extension | None
    due_text: str
    due_local_input: str  # for <input type=datetime-local>, in the course's time zone
    submissions: list[tuple[Submission, int, str]] = field(default_factory=list)  # (sub, late units, when)
    counted_id: str | None = None
    counted_percent: str = ""


def student_detail(
    session: Session, *, settings: Settings, login: str
) -> tuple[User, list[StudentAssignment]] | None:
    """Every submission of one student, per assignment, with their extensions."""
    login = accounts.normalize_login(login)
    user = session.scalar(select(User).where(User.login == login, User.role == "student"))
    if user is None:
        return None
    subs = list(
        session.scalars(
            select(Submission).where(Submission.user_id == user.id).order_by(Submission.submitted_at.desc())
        )
    )
    extensions = {slug: e for (_, slug), e in _extensions(session).items() if e.user_id == user.id}
    out = []
    for slug, assignment in sorted(course_assignments(session, settings).items(), key=lambda kv: kv[1].due):
        tz = assignment.course.timezone
        ext = extensions.get(slug)
        deadline = policies.deadline_for(assignment, submissions.extension_row(ext, login))
        mine = [s for s in subs if s.assignment == slug]
        counted = gradebook.counted_submission(
            [submission_row(s, login) for s in mine], deadline, assignment.submissions.counts
        )
        out.append(
            StudentAssignment(
                assignment=assignment,
                deadline=deadline,
                extension=ext,
                due_text=display.local_time(deadline.due, tz),
                due_local_input=deadline.due.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M"),
                submissions=[
                    (s, policies.late_units(deadline, s.submitted_at), display.local_time(s.submitted_at, tz))
                    for s in mine
                ],
                counted_id=counted.submission.id if counted else None,
                counted_percent=f"{gradebook.rounded(counted.final)}%" if counted else "",
            )
        )
    return user, out


class BadExtension(Exception):
    pass


def parse_local(value: str, timezone: str) -> datetime:
    """A datetime-local form value (`2026-09-20T23:59`) read in the course's time zone."""
    try:
        naive = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadExtension(f"{value!r} is not a date and time") from exc
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=ZoneInfo(timezone))


def set_extension(
    session: Session, *, user: User, assignment: Assignment, due: str, cutoff: str = "", reason: str = ""
) -> Extension:
    """Grant or change one student's due date (and optional cutoff) for one assignment; the caller commits."""
    tz = assignment.course.timezone
    new_due = parse_local(due, tz)
    new_cutoff = parse_local(cutoff, tz) if cutoff.strip() else None
    if new_cutoff is not None and new_cutoff < new_due:
        raise BadExtension("the cutoff is before the new due date")
    ext = session.scalar(
        select(Extension).where(Extension.user_id == user.id, Extension.assignment == assignment.slug)
    )
    if ext is None:
        ext = Extension(user_id=user.id, assignment=assignment.slug)
        session.add(ext)
    ext.due, ext.cutoff, ext.reason = new_due, new_cutoff, reason.strip()[:1000]
    session.flush()
    return ext


def remove_extension(session: Session, *, user: User, slug: str) -> None:
    ext = session.scalar(select(Extension).where(Extension.user_id == user.id, Extension.assignment == slug))
    if ext is not None:
        session.delete(ext)


def assignment_submission_ids(session: Session, slug: str) -> list[str]:
    return list(session.scalars(select(Submission.id).where(Submission.assignment == slug)))


def gradebook_csv_lines(session: Session, *, settings: Settings) -> Iterator[str]:
    """The gradebook CSV, exactly what GET /api/gradebook.csv serves, as lines to stream."""
    assignments = gradebook.in_order(course_assignments(session, settings).values())
    if not assignments:
        return iter(())
    return gradebook.export_csv(session=session, assignments=assignments, course=assignments[0].course)

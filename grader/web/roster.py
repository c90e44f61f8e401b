"""One assignment's roster: every student on it with their status, counted score, lateness, extension
and number of submissions, the way the gradebook counts them."""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import catalog, extensions, submissions
from grader.assignments import Assignment
from grader.config import Settings, get_settings
from grader.deps import SessionDep
from grader.models import Excusal, Extension, Submission, User
from grader.web.common import (
    InstructorPageDep,
    PageError,
    counted,
    counted_text,
    lateness_text,
    local_time,
    render,
)

router = APIRouter(prefix="/instructor", include_in_schema=False)


@dataclass
class RosterRow:
    student: User
    status: str  # missing, excused, queued, running, graded, error (of the counted or latest submission)
    submissions: int
    counted_id: str | None
    score: str
    percent: Decimal | None  # after the late penalty; for sorting
    lateness: str
    late_seconds: int  # of the counted submission; for sorting
    extension: Extension | None
    due_text: str  # the student's own due date when extended


@dataclass
class Roster:
    assignment: Assignment
    rows: list[RosterRow]


def _students(session: Session) -> list[User]:
    return list(session.scalars(select(User).where(User.role == "student").order_by(User.login)))


def roster(session: Session, *, settings: Settings, slug: str) -> Roster | None:
    """Every student on the roster and where they stand on one assignment; None for no such assignment."""
    assignment = catalog.current(session=session, settings=settings).get(slug)
    if assignment is None:
        return None
    tz = assignment.course.timezone
    by_student: dict[int, list[Submission]] = defaultdict(list)
    for sub, user in submissions.of_assignment(session, slug=slug):
        by_student[user.id].append(sub)
    granted = {ext.user_id: ext for ext, _ in extensions.stored(session, slugs=[slug])}
    excused = set(session.scalars(select(Excusal.user_id).where(Excusal.assignment == slug)))
    rows = []
    for student in _students(session):
        subs = by_student.get(student.id, [])
        ext = granted.get(student.id)
        deadline = extensions.deadline_with(assignment, ext)
        chosen = counted(subs, student.login, deadline, assignment)
        sub = next((s for s in subs if chosen and s.id == chosen.submission.id), subs[-1] if subs else None)
        late = int((sub.submitted_at - deadline.due).total_seconds()) if sub else 0
        if student.id in excused:
            status = "excused"
        else:
            status = sub.status if sub else "missing"
        rows.append(
            RosterRow(
                student=student,
                status=status,
                submissions=len(subs),
                counted_id=chosen.submission.id if chosen else None,
                score=counted_text(chosen) if chosen else "–",
                percent=chosen.final if chosen else None,
                lateness=lateness_text(deadline, sub.submitted_at) if sub else "",
                late_seconds=max(0, late),
                extension=ext,
                due_text=local_time(deadline.due, tz) if ext else "",
            )
        )
    return Roster(assignment=assignment, rows=rows)


@router.get("/assignments/{slug}/roster", response_class=HTMLResponse)
def roster_page(request: Request, session: SessionDep, web: InstructorPageDep, slug: str) -> Response:
    """Every student's standing on one assignment, searchable and sortable."""
    found = roster(session, settings=get_settings(), slug=slug)
    if found is None:
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    return render(
        request,
        "instructor_roster.html",
        web=web,
        title=f"Roster · {found.assignment.title}",
        nav="overview",
        roster=found,
    )

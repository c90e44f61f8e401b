"""The smoke check started from the dashboard: the assignment's reference solution (and starter) uploaded
as the instructor, graded like any submission, then judged by `grader smoke`'s own rules.

No table of its own: the run's uploads are the instructor's submissions whose bytes are the solution's
or the starter's as packaged now, made since the last recorded smoke run. The first page that finds
them all graded records the verdict.
"""

import hashlib
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import catalog, submissions
from grader.assignments import Assignment
from grader.config import Settings, get_settings
from grader.deps import SessionDep
from grader.models import Submission, User
from grader.smoke import FINISHED, Upload, packaged
from grader.web.common import InstructorFormDep, PageError, flash_redirect

router = APIRouter(prefix="/instructor", include_in_schema=False)


@dataclass
class Pending:
    label: str  # solution | starter
    submission: Submission


def _packages(assignment: Assignment) -> dict[str, tuple[str, bytes]]:
    folders = {"solution": assignment.solution_dir, "starter": assignment.starter_dir}
    return {label: packaged(folder) for label, folder in folders.items() if folder.is_dir()}


def start(*, session: Session, settings: Settings, assignment: Assignment, instructor: User) -> int:
    """Upload the solution and the starter as the instructor (no limits apply); how many."""
    packages = _packages(assignment)
    for name, data in packages.values():
        submissions.accept(
            session=session,
            settings=settings,
            assignment=assignment,
            student=instructor,
            filename=name,
            data=data,
            by_instructor=True,
        )
    return len(packages)


def settle(*, session: Session, assignment: Assignment) -> list[Pending]:
    """Record the verdict of the latest smoke run once its uploads are graded; those still waiting."""
    labels = {hashlib.sha256(data).hexdigest(): label for label, (_, data) in _packages(assignment).items()}
    if not labels:
        return []
    query = (
        select(Submission)
        .join(User, User.id == Submission.user_id)
        .where(
            Submission.assignment == assignment.slug,
            User.role == "instructor",
            Submission.sha256.in_(labels),
        )
        .order_by(Submission.submitted_at)
    )
    last = catalog.last_smoke(session=session, slug=assignment.slug)
    if last is not None:
        query = query.where(Submission.submitted_at > last.at)
    newest = {labels[sub.sha256]: sub for sub in session.scalars(query)}  # the latest upload of each
    if not newest:
        return []
    waiting = [Pending(label, sub) for label, sub in newest.items() if sub.status not in FINISHED]
    if waiting:
        return waiting
    problems = []
    for label, sub in newest.items():
        body = {**(sub.result or {}), "status": sub.status, "score": sub.score, "max_score": sub.max_score}
        if problem := Upload(assignment.slug, label, id=sub.id, body=body).verdict():
            problems.append(problem)
    catalog.record_smoke(
        session=session, slug=assignment.slug, passed=not problems, detail="; ".join(problems)
    )
    return []


@router.post("/assignments/{slug}/smoke")
def run_smoke(request: Request, session: SessionDep, web: InstructorFormDep, slug: str) -> Response:
    """Start a smoke check of one assignment from the dashboard."""
    settings = get_settings()
    assignment = catalog.current(session=session, settings=settings).get(slug)
    if assignment is None:
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    try:
        sent = start(session=session, settings=settings, assignment=assignment, instructor=web.user)
    except submissions.Refused as exc:
        message = f"The reference solution of {slug} was refused: {exc.message}"
        return flash_redirect(request, "/instructor", web, message, "error")
    what = "the reference solution and the starter" if sent == 2 else "the reference solution"
    return flash_redirect(
        request, "/instructor", web, f"Queued {what} of {slug}; the verdict shows here when graded."
    )

"""One submission as staff see it: the upload read-only (a notebook with its outputs, a zip's files, a PDF),
every test with its message, the student's output, flags, lateness, and the original file to download.

Students have their own page for their submissions (student.py), which shows only what feedback allows.
"""

from dataclasses import dataclass, field
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy.orm import Session

from grader import catalog, extensions, submissions
from grader.assignments import Assignment
from grader.config import Settings, get_settings
from grader.deps import SessionDep
from grader.models import Submission, User
from grader.policies import Deadline
from grader.results import GradeResult
from grader.storage import upload_path
from grader.web.common import (
    InstructorPageDep,
    PageError,
    counted,
    lateness_text,
    local_time,
    render,
    score_text,
)
from grader.web.source_view import SourceView, submission_view

router = APIRouter(prefix="/instructor", include_in_schema=False)


@dataclass
class Sibling:
    """Another submission of the same student to the same assignment."""

    submission: Submission
    submitted_text: str
    counts: bool


@dataclass
class StaffSubmission:
    submission: Submission
    student: User
    assignment: Assignment | None  # None: its folder is gone
    slug: str
    result: GradeResult | None
    deadline: Deadline | None
    extended: bool
    submitted_text: str
    lateness: str
    score: str
    counts: bool
    source: SourceView
    durations: dict[str, str] = field(default_factory=dict)
    siblings: list[Sibling] = field(default_factory=list)


def staff_submission(session: Session, *, settings: Settings, submission_id: str) -> StaffSubmission | None:
    """Everything staff see of one submission; None if there is no such submission."""
    found = submissions.with_owner(session, submission_id=submission_id)
    if found is None:
        return None
    sub, student = found
    assignment = catalog.current(session=session, settings=settings).get(sub.assignment)
    timezone = assignment.course.timezone if assignment else "UTC"
    mine = submissions.of_student(session, user_id=student.id, slug=sub.assignment)
    deadline, extended, chosen_id = None, False, None
    if assignment is not None:
        ext = extensions.find(session, user_id=student.id, slug=assignment.slug)
        deadline, extended = extensions.deadline_with(assignment, ext), ext is not None
        chosen = counted(mine, student.login, deadline, assignment) if student.role == "student" else None
        chosen_id = chosen.submission.id if chosen else None
    durations = {}
    if sub.started_at and sub.finished_at and sub.finished_at >= sub.started_at:
        durations["grading"] = f"{(sub.finished_at - sub.started_at).total_seconds():.1f} s"
    if sub.finished_at:
        durations["finished"] = local_time(sub.finished_at, timezone)
    return StaffSubmission(
        submission=sub,
        student=student,
        assignment=assignment,
        slug=sub.assignment,
        result=GradeResult.model_validate(sub.result) if sub.result else None,
        deadline=deadline,
        extended=extended,
        submitted_text=local_time(sub.submitted_at, timezone),
        lateness=lateness_text(deadline, sub.submitted_at) if deadline else "",
        score=score_text(sub.score, sub.max_score) if sub.status == "graded" else "–",
        counts=chosen_id == sub.id,
        source=submission_view(settings, sub),
        durations=durations,
        siblings=[Sibling(s, local_time(s.submitted_at, timezone), s.id == chosen_id) for s in mine],
    )


def download_name(sub: Submission, login: str, submitted_at: datetime) -> str:
    """`s1001-hw1-mlp-20260918-2359-hw1.ipynb`: whose, for what and when, then the student's own name."""
    return f"{login}-{sub.assignment}-{submitted_at:%Y%m%d-%H%M}-{sub.filename}"


# ---- the pages ---------------------------------------------------------------------------------------


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
def submission_page(request: Request, session: SessionDep, web: InstructorPageDep, submission_id: str):
    """One submission: the upload, every test, output, flags, and the original file."""
    view = staff_submission(session, settings=get_settings(), submission_id=submission_id)
    if view is None:
        raise PageError(404, "No such submission", "There is no submission with this id.")
    return render(
        request,
        "staff_submission.html",
        web=web,
        title=f"{view.student.login} · {view.assignment.title if view.assignment else view.slug}",
        nav="students",
        view=view,
    )


@router.get("/submissions/{submission_id}/upload")
def submission_upload(session: SessionDep, web: InstructorPageDep, submission_id: str) -> Response:
    """The file exactly as the student uploaded it."""
    found = submissions.with_owner(session, submission_id=submission_id)
    if found is None:
        raise PageError(404, "No such submission", "There is no submission with this id.")
    sub, student = found
    path = upload_path(get_settings(), sub.sha256)
    if not path.is_file():
        raise PageError(410, "Upload missing", "The file of this submission is no longer stored.")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=download_name(sub, student.login, sub.submitted_at),
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"},
    )

"""The grading pages (instructors and TAs, under /staff/grading): progress per question, grade by
question (the next ungraded submission across students, keyboard driven), each student's grades and
history, regrade requests; and, for instructors, the release switch and regrade previews. The student's
side is grading_student.py."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from grader import (
    accounts,
    catalog,
    grading_queue,
    regrade_requests,
    regrades,
    release,
    rubrics,
    submissions,
)
from grader.assignments import Assignment, Question
from grader.config import get_settings
from grader.deps import SessionDep
from grader.models import ManualGrade, RegradeRequest, RegradeRun, User, WebSession
from grader.web import source_view
from grader.web.common import (
    CsrfCheckedDep,
    InstructorFormDep,
    PageError,
    StaffPageDep,
    flash_redirect,
    redirect,
    render,
)

router = APIRouter(include_in_schema=False)
BASE = "/staff/grading"


async def _staff_form(web: CsrfCheckedDep) -> WebSession:
    if not web.user.is_staff:
        raise PageError(403, "Staff only", "This action is for the course's instructors and TAs.")
    return web


async def _instructor_page(web: StaffPageDep) -> WebSession:
    if not web.user.is_instructor:
        raise PageError(403, "Instructors only", "Regrade previews are for the course's instructors.")
    return web


StaffFormDep = Annotated[WebSession, Depends(_staff_form)]
InstructorOnlyPageDep = Annotated[WebSession, Depends(_instructor_page)]


def _assignment(session: Session, slug: str) -> Assignment:
    found = catalog.current(session=session, settings=get_settings()).get(slug)
    if found is None:
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    return found


def _question(assignment: Assignment, question_id: str) -> Question:
    question = assignment.question(question_id)
    if question is None:
        raise PageError(404, "No such question", f"{assignment.slug} has no question {question_id!r}.")
    return question


# ---- the overview and one assignment ----------------------------------------------------------------


@router.get(BASE, response_class=HTMLResponse)
def index(request: Request, session: SessionDep, web: StaffPageDep) -> Response:
    """Every assignment with its questions' progress, its release and its waiting requests."""
    assignments = sorted(
        catalog.current(session=session, settings=get_settings()).values(), key=lambda a: a.due
    )
    rows = [
        (
            a,
            grading_queue.progress(session, assignment=a) if a.questions else [],
            release.state(session, slug=a.slug),
            sum(r.answered_at is None for r, _ in regrade_requests.of_assignment(session, slug=a.slug)),
        )
        for a in assignments
    ]
    return render(request, "grading_index.html", web=web, title="Grading", nav="grading", rows=rows)


@dataclass
class StudentRow:
    student: User
    submission_id: str
    grades: dict[str, ManualGrade]
    total: float


@router.get(BASE + "/{slug}", response_class=HTMLResponse)
def assignment_page(request: Request, session: SessionDep, web: StaffPageDep, slug: str) -> Response:
    """One assignment: each student's points per question, the release, requests, regrade previews."""
    assignment = _assignment(session, slug)
    found = grading_queue.entries(session, assignment=assignment)
    rows = []
    for entry in found:
        grades = rubrics.grades_of(session, user_id=entry.student.id, slug=slug)
        total = rubrics.total_for(session, assignment=assignment, user_id=entry.student.id)
        rows.append(StudentRow(entry.student, entry.submission.id, grades, total))
    return render(
        request,
        "grading_assignment.html",
        web=web,
        title=f"Grading {assignment.title}",
        nav="grading",
        a=assignment,
        rows=rows,
        progress=grading_queue.progress(session, assignment=assignment, found=found),
        state=release.state(session, slug=slug),
        needs_release=release.needs_release(assignment),
        requests=regrade_requests.of_assignment(session, slug=slug),
        runs=regrades.runs(session, slug=slug) if web.user.is_instructor else [],
        open_run=regrades.open_run(session, slug=slug),
    )


# ---- grade by question --------------------------------------------------------------------------------


@router.get(BASE + "/{slug}/q/{question_id}", response_class=HTMLResponse)
def next_ungraded(
    request: Request, session: SessionDep, web: StaffPageDep, slug: str, question_id: str, after: str = ""
) -> Response:
    """The next submission without a grade on this question (after `after`), across students."""
    assignment = _assignment(session, slug)
    _question(assignment, question_id)
    entry = grading_queue.next_ungraded(
        session, assignment=assignment, question_id=question_id, after=after or None
    )
    if entry is None:
        return flash_redirect(
            request, f"{BASE}/{slug}", web, f"Every submission is graded on {question_id}.", "ok"
        )
    return redirect(f"{BASE}/{slug}/q/{question_id}/{entry.student.login}")


@router.get(BASE + "/{slug}/q/{question_id}/{login}", response_class=HTMLResponse)
def grade_page(
    request: Request, session: SessionDep, web: StaffPageDep, slug: str, question_id: str, login: str
) -> Response:
    """One student's submission beside one question's rubric."""
    return _grade_page(request, session, web, slug, question_id, login)


def _grade_page(request, session, web, slug, question_id, login, *, error: str = "", status: int = 200):
    assignment = _assignment(session, slug)
    question = _question(assignment, question_id)
    found = grading_queue.entries(session, assignment=assignment)
    entry = next((e for e in found if e.student.login == login), None)
    if entry is None:
        raise PageError(404, "Nothing to grade", f"{login} has no graded submission to {slug}.")
    grade = rubrics.grades_of(session, user_id=entry.student.id, slug=slug).get(question_id)
    progress = next(
        p
        for p in grading_queue.progress(session, assignment=assignment, found=found)
        if p.question == question_id
    )
    return render(
        request,
        "grading_question.html",
        web=web,
        status_code=status,
        title=f"{question.title} · {login}",
        nav="grading",
        a=assignment,
        q=question,
        entry=entry,
        grade=grade,
        progress=progress,
        previous=grading_queue.neighbour(found, login, -1),
        following=grading_queue.neighbour(found, login, +1),
        bank=rubrics.bank(session, assignment=assignment, question_id=question_id),
        history=[
            c
            for c in rubrics.history(session, user_id=entry.student.id, slug=slug)
            if c.question == question_id
        ],
        shown=source_view.submission_view(get_settings(), entry.submission),
        error=error,
    )


@router.post(BASE + "/{slug}/q/{question_id}/{login}")
def save_grade(
    request: Request,
    session: SessionDep,
    web: StaffFormDep,
    slug: str,
    question_id: str,
    login: str,
    items: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI reads the default)
    comment: Annotated[str, Form(max_length=rubrics.MAX_COMMENT)] = "",
    adjustment: Annotated[str, Form(max_length=20)] = "",
    adjustment_reason: Annotated[str, Form(max_length=1000)] = "",
    add_to_bank: Annotated[str, Form(max_length=8)] = "",
    then: Annotated[str, Form(max_length=8)] = "next",
    submission_id: Annotated[str, Form(max_length=36)] = "",
) -> Response:
    """Save one question's grade, then go to the next ungraded submission (or stay)."""
    assignment = _assignment(session, slug)
    student = accounts.find(session, login=login, role="student")
    if student is None:
        raise PageError(404, "No such student", f"There is no student {login!r}.")
    try:
        points = float(adjustment) if adjustment.strip() else 0.0
    except ValueError:
        return _grade_page(
            request,
            session,
            web,
            slug,
            question_id,
            login,
            error="The adjustment is not a number.",
            status=400,
        )
    try:
        rubrics.save(
            session=session,
            assignment=assignment,
            student=student,
            question_id=question_id,
            items=items,
            comment=comment,
            grader=web.user,
            adjustment=points,
            adjustment_reason=adjustment_reason,
            submission_id=_looked_at(session, submission_id, student, slug),
            add_to_bank=bool(add_to_bank),
        )
    except rubrics.BadGrade as exc:
        return _grade_page(request, session, web, slug, question_id, login, error=str(exc), status=400)
    if then == "stay":
        return flash_redirect(request, f"{BASE}/{slug}/q/{question_id}/{login}", web, "Saved.", "ok")
    return redirect(f"{BASE}/{slug}/q/{question_id}?after={login}")


def _looked_at(session: Session, submission_id: str, student: User, slug: str) -> str | None:
    """The submission the grader saw, if it is this student's to this assignment."""
    sub = (
        submissions.owned(session, submission_id=submission_id, user_id=student.id) if submission_id else None
    )
    return sub.id if sub is not None and sub.assignment == slug else None


@router.get(BASE + "/files/{submission_id}/{path:path}")
def inline_file(session: SessionDep, web: StaffPageDep, submission_id: str, path: str) -> Response:
    """A PDF upload, or a PDF or image of a zip, shown inline to staff (the grading pages and the staff
    submission page): under /staff, where TAs and instructors both reach it."""
    row = submissions.with_owner(session, submission_id=submission_id)
    found = source_view.inline_file(get_settings(), row[0], path) if row else None
    if found is None:
        raise PageError(404, "No such file", "That file is not in the submission, or cannot be shown inline.")
    content, media_type = found
    return Response(
        content,
        media_type=media_type,
        headers={
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private",
            # The student's file is a document of its own: no script of it runs on our origin.
            "Content-Security-Policy": "sandbox",
        },
    )


# ---- release, regrade previews, regrade requests ------------------------------------------------------


@router.post(BASE + "/{slug}/release")
def set_release(
    request: Request,
    session: SessionDep,
    web: InstructorFormDep,
    slug: str,
    released: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Release the assignment's grades to students, or take the release back."""
    _assignment(session, slug)
    release.set_released(session=session, slug=slug, by=web.user, release=released == "1")
    said = "Released the grades of" if released == "1" else "Took back the release of"
    return flash_redirect(request, f"{BASE}/{slug}", web, f"{said} {slug}.", "ok")


@router.post(BASE + "/{slug}/regrade-preview")
def start_preview(request: Request, session: SessionDep, web: InstructorFormDep, slug: str) -> Response:
    """Regrade every finished submission into a preview."""
    _assignment(session, slug)
    try:
        run = regrades.start_preview(session=session, settings=get_settings(), slug=slug, by=web.user)
    except regrades.RegradeConflict as exc:
        run = regrades.open_run(session, slug=slug)
        return flash_redirect(
            request, f"{BASE}/regrades/{run.id}" if run else f"{BASE}/{slug}", web, str(exc), "error"
        )
    return redirect(f"{BASE}/regrades/{run.id}")


def _run(session, run_id: int) -> RegradeRun:
    run = session.get(RegradeRun, run_id)
    if run is None:
        raise PageError(404, "No such regrade", "There is no such regrade preview.")
    return run


@router.get(BASE + "/regrades/{run_id}", response_class=HTMLResponse)
def preview_page(request: Request, session: SessionDep, web: InstructorOnlyPageDep, run_id: int) -> Response:
    """What the regrade would change; refreshes itself while submissions are being graded."""
    run = _run(session, run_id)
    return render(
        request,
        "grading_regrade.html",
        web=web,
        title=f"Regrade preview of {run.assignment}",
        nav="grading",
        preview=regrades.preview(session, run=run),
    )


@router.post(BASE + "/regrades/{run_id}/{action}")
def close_preview(
    request: Request, session: SessionDep, web: InstructorFormDep, run_id: int, action: str
) -> Response:
    """Apply the preview, or discard it."""
    run = _run(session, run_id)
    try:
        if action == "apply":
            done = regrades.apply(session=session, run=run, by=web.user)
            message = f"Applied {done.applied} new grading(s)" + (
                f"; {done.skipped} skipped (graded again since)." if done.skipped else "."
            )
        elif action == "discard":
            regrades.discard(session=session, run=run, by=web.user)
            message = "Discarded the preview; every score stays as it was."
        else:
            raise PageError(404, "No such action", "Apply or discard.")
    except regrades.RegradeConflict as exc:
        return flash_redirect(request, f"{BASE}/regrades/{run_id}", web, f"{exc}", "error")
    return flash_redirect(request, f"{BASE}/{run.assignment}", web, f"{message}", "ok")


@router.post(BASE + "/requests/{request_id}/answer")
def answer_request(
    request: Request,
    session: SessionDep,
    web: StaffFormDep,
    request_id: int,
    answer: Annotated[str, Form(max_length=regrade_requests.MAX_MESSAGE)] = "",
    adjustment: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Answer a regrade request, changing the question's adjustment when one is given."""
    found = session.get(RegradeRequest, request_id)
    if found is None:
        raise PageError(404, "No such request", "There is no such regrade request.")
    assignment = _assignment(session, found.assignment)
    try:
        value = float(adjustment) if adjustment.strip() else None
        regrade_requests.answer(
            session=session,
            assignment=assignment,
            request=found,
            grader=web.user,
            text=answer,
            adjustment=value,
        )
    except ValueError:
        return flash_redirect(
            request,
            f"{BASE}/{found.assignment}",
            web,
            "The adjustment is not a number; nothing was saved.",
            "error",
        )
    except (regrade_requests.BadRequest, rubrics.BadGrade) as exc:
        return flash_redirect(request, f"{BASE}/{found.assignment}", web, f"Not saved: {exc}", "error")
    return flash_redirect(
        request, f"{BASE}/{found.assignment}", web, "Answered the request of the student.", "ok"
    )

"""The instructor's web pages: assignments, students, extensions, regrades, the gradebook."""

import csv
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from grader import dispatch, instructor_pages
from grader.config import get_settings
from grader.deps import SessionDep
from grader.routes.pages_common import CsrfCheckedDep, InstructorPageDep, PageError, redirect, render

router = APIRouter(prefix="/instructor", include_in_schema=False)


def _instructor_only(web) -> None:
    # CsrfCheckedDep proves a signed-in session; POSTs here must also come from an instructor.
    if web.user.role != "instructor":
        raise PageError(403, "Instructors only", "This action is for the course's instructors.")


@router.get("", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep, web: InstructorPageDep) -> Response:
    return render(
        request,
        "instructor_overview.html",
        web=web,
        title="Assignments",
        nav="overview",
        summaries=instructor_pages.overview(session, settings=get_settings()),
        queue=instructor_pages.queue_state(session),
    )


@router.get("/assignments/{slug}", response_class=HTMLResponse)
def assignment(request: Request, session: SessionDep, web: InstructorPageDep, slug: str) -> Response:
    board = instructor_pages.dashboard(session, settings=get_settings(), slug=slug)
    if board is None:
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    title = board.assignment.title
    return render(request, "instructor_assignment.html", web=web, title=title, nav="overview", board=board)


@router.post("/assignments/{slug}/regrade")
def regrade_all(session: SessionDep, web: CsrfCheckedDep, slug: str) -> Response:
    _instructor_only(web)
    ids = instructor_pages.assignment_submission_ids(session, slug)
    sent = dispatch.regrade(session=session, settings=get_settings(), submission_ids=ids)
    return redirect(f"/instructor/assignments/{slug}?ok=Queued {sent} submission(s) for regrading.")


@router.post("/submissions/{submission_id}/regrade")
def regrade_one(
    session: SessionDep, web: CsrfCheckedDep, submission_id: str, back: Annotated[str, Form()] = "/instructor"
) -> Response:
    _instructor_only(web)
    sent = dispatch.regrade(session=session, settings=get_settings(), submission_ids=[submission_id])
    back = back if back.startswith("/instructor") else "/instructor"
    return redirect(
        f"{back}?ok=" + ("Queued the submission for regrading." if sent else "Nothing to regrade.")
    )


@router.get("/students", response_class=HTMLResponse)
def students(request: Request, session: SessionDep, web: InstructorPageDep) -> Response:
    return render(
        request,
        "instructor_students.html",
        web=web,
        title="Students",
        nav="students",
        students=instructor_pages.students(session),
    )


def _student_page(
    request: Request, session, web, login: str, *, error: str = "", status: int = 200
) -> Response:
    found = instructor_pages.student_detail(session, settings=get_settings(), login=login)
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
    return _student_page(request, session, web, login)


@router.post("/students/{login}/extensions/{slug}")
def extension(
    request: Request,
    session: SessionDep,
    web: CsrfCheckedDep,
    login: str,
    slug: str,
    due: Annotated[str, Form(max_length=40)] = "",
    cutoff: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
    remove: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Grant, change or remove one student's extension for one assignment."""
    _instructor_only(web)
    settings = get_settings()
    found = instructor_pages.student_detail(session, settings=settings, login=login)
    assignment = instructor_pages.course_assignments(session, settings).get(slug)
    if found is None or assignment is None:
        raise PageError(404, "Not found", "No such student or assignment.")
    user = found[0]
    if remove:
        instructor_pages.remove_extension(session, user=user, slug=slug)
        message = f"Removed the extension on {slug}."
    else:
        try:
            instructor_pages.set_extension(
                session, user=user, assignment=assignment, due=due, cutoff=cutoff, reason=reason
            )
        except instructor_pages.BadExtension as exc:
            session.rollback()
            return _student_page(request, session, web, login, error=f"{slug}: {exc}", status=400)
        message = f"Saved the extension on {slug}."
    session.commit()
    return redirect(f"/instructor/students/{login}?ok={message}")


@router.get("/gradebook", response_class=HTMLResponse)
def gradebook(request: Request, session: SessionDep, web: InstructorPageDep) -> Response:
    lines = instructor_pages.gradebook_csv_lines(session, settings=get_settings())
    table = list(csv.reader(lines))
    return render(
        request,
        "instructor_gradebook.html",
        web=web,
        title="Gradebook",
        nav="gradebook",
        header=table[0] if table else [],
        rows=table[1:],
    )


@router.get("/gradebook.csv")
def gradebook_csv(session: SessionDep, web: InstructorPageDep) -> Response:
    lines = instructor_pages.gradebook_csv_lines(session, settings=get_settings())
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="gradebook.csv"'},
    )

"""The web pages for everyone: sign-in, sign-out, and the student's assignments and submissions."""

import math
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from grader import accounts, dispatch, policies, student_pages, submissions
from grader.config import get_settings
from grader.db import utcnow
from grader.deps import SessionDep
from grader.routes import forms
from grader.routes.pages_common import (
    SESSION_COOKIE,
    SIGNIN_CSRF_COOKIE,
    CsrfCheckedDep,
    PageError,
    StudentPageDep,
    WebSessionDep,
    new_csrf_token,
    redirect,
    render,
    set_cookie,
)

router = APIRouter(include_in_schema=False)

# A refused upload's status on the form; anything else is 400.
REFUSED_STATUS = {"not_released": 404, "rate_limited": 429}


def _safe_next(path: str, default: str) -> str:
    # Only a path on this site: "//evil.example" and "https://..." would be an open redirect.
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else default


def _home_for(web) -> str:
    return "/instructor" if web.user.role == "instructor" else "/assignments"


@router.get("/")
def home(web: WebSessionDep) -> Response:
    return redirect(_home_for(web) if web else "/signin")


def _signin_page(request: Request, *, next_path: str, login: str = "", error: str = "", status: int = 200):
    token = request.cookies.get(SIGNIN_CSRF_COOKIE) or new_csrf_token()
    response = render(
        request,
        "signin.html",
        web=None,
        status_code=status,
        title="Sign in",
        next=next_path,
        login=login,
        error=error,
        csrf_token=token,
    )
    set_cookie(response, request, SIGNIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, web: WebSessionDep, next: str = "") -> Response:
    if web:
        return redirect(_safe_next(next, _home_for(web)))
    return _signin_page(request, next_path=next)


@router.post("/signin")
def signin(
    request: Request,
    session: SessionDep,
    login: Annotated[str, Form(max_length=128)] = "",
    secret: Annotated[str, Form(max_length=256)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=512)] = "",
) -> Response:
    if not accounts.csrf_matches(request.cookies.get(SIGNIN_CSRF_COOKIE), csrf_token):
        return _signin_page(
            request,
            next_path=next,
            login=login,
            status=403,
            error="The sign-in form expired (or cookies are blocked). Please try again.",
        )
    try:
        user = accounts.sign_in(session, login=login, secret=secret)
    except accounts.LockedOut as exc:
        minutes = max(1, math.ceil((exc.until - datetime.now(UTC)).total_seconds() / 60))
        return _signin_page(
            request,
            next_path=next,
            login=login,
            status=429,
            error=f"Too many wrong secrets for this id: sign-in is locked for {minutes} more minute(s). "
            "Ask your instructor for a new secret if you lost yours.",
        )
    if user is None:
        return _signin_page(
            request, next_path=next, login=login, status=401, error="Unknown student id or wrong secret."
        )
    token = accounts.open_session(session, user)
    session.commit()
    response = redirect(_safe_next(next, "/instructor" if user.role == "instructor" else "/assignments"))
    set_cookie(
        response, request, SESSION_COOKIE, token, max_age=int(accounts.SESSION_LIFETIME.total_seconds())
    )
    response.delete_cookie(SIGNIN_CSRF_COOKIE, path="/")
    return response


@router.post("/signout")
def signout(request: Request, session: SessionDep, web: CsrfCheckedDep) -> Response:
    accounts.close_session(session, request.cookies.get(SESSION_COOKIE))
    session.commit()
    response = redirect("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ---- students ----------------------------------------------------------------------------------------


@router.get("/assignments", response_class=HTMLResponse)
def assignment_list(request: Request, session: SessionDep, web: StudentPageDep) -> Response:
    rows = student_pages.assignment_rows(session, user=web.user, settings=get_settings())
    return render(
        request, "student_assignments.html", web=web, title="Assignments", nav="assignments", rows=rows
    )


def _assignment_page(request: Request, session, web, slug: str, *, error: str = "", status: int = 200):
    settings = get_settings()
    page = student_pages.assignment_page(session, user=web.user, slug=slug, settings=settings)
    if page is None:
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    return render(
        request,
        "student_assignment.html",
        web=web,
        status_code=status,
        title=page.row.assignment.title,
        nav="assignments",
        page=page,
        error=error,
        max_upload_bytes=settings.max_upload_bytes,
    )


@router.get("/assignments/{slug}", response_class=HTMLResponse)
def assignment_detail(request: Request, session: SessionDep, web: StudentPageDep, slug: str) -> Response:
    return _assignment_page(request, session, web, slug)


@router.post("/assignments/{slug}/submit")
async def submit(request: Request, session: SessionDep, web: StudentPageDep, slug: str) -> Response:
    """Accept an upload from the form (or from its script, which asks for JSON)."""
    settings = get_settings()
    wants_json = "application/json" in request.headers.get("accept", "")

    def refuse(message: str, status: int) -> Response:
        if wants_json:
            return JSONResponse({"detail": message}, status_code=status)
        return _assignment_page(request, session, web, slug, error=message, status=status)

    assignment = student_pages.course_assignments(session, settings).get(slug)
    if assignment is None or not policies.released(assignment, utcnow()):
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    try:
        form = await forms.receive_form(request, max_file_bytes=settings.max_upload_bytes)
    except forms.TooLarge:
        return refuse(f"The file is larger than the limit of {settings.max_upload_bytes // 2**20} MiB.", 413)
    except forms.BadForm as exc:
        return refuse(f"The upload could not be read: {exc}", 400)
    try:
        if not accounts.csrf_matches(web.csrf_token, str(form.get("csrf_token") or "")):
            return refuse("This form is stale or came from another site; reload the page and try again.", 403)
        upload = form.get("file")
        if upload is None or isinstance(upload, str) or not upload.filename:
            return refuse("Choose a file to upload.", 400)
        data = await upload.read()
        filename = upload.filename
    finally:
        await form.close()
    try:
        submission = submissions.create_submission(
            session=session,
            settings=settings,
            assignment=assignment,
            student=web.user,
            filename=filename,
            data=data,
        )
    except submissions.Refused as exc:
        return refuse(exc.message, REFUSED_STATUS.get(exc.reason, 400))
    dispatch.enqueue(session=session, settings=settings, submissions=[(submission.id, submission.queue)])
    url = f"/submissions/{submission.id}"
    return JSONResponse({"url": url}, status_code=201) if wants_json else redirect(url)


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
def submission_detail(
    request: Request, session: SessionDep, web: StudentPageDep, submission_id: str
) -> Response:
    view = student_pages.submission_view(
        session, user=web.user, submission_id=submission_id, settings=get_settings()
    )
    if view is None:
        # Someone else's submission reads exactly like one that does not exist.
        raise PageError(404, "No such submission", "There is no such submission among yours.")
    return render(
        request,
        "submission.html",
        web=web,
        title=f"Submission to {view.assignment.title}",
        nav="assignments",
        view=view,
    )


@router.get("/submissions/{submission_id}/status.json")
def submission_status(session: SessionDep, web: StudentPageDep, submission_id: str) -> JSONResponse:
    state = student_pages.submission_state(session, user=web.user, submission_id=submission_id)
    if state is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return JSONResponse(state, headers={"Cache-Control": "no-store"})

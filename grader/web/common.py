"""What every web page shares: templates, the signed-in user from the session cookie, CSRF checks,
times in the course's zone, and submissions as the gradebook counts them."""

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from grader import accounts, gradebook
from grader.assignments import Assignment, InvalidAssignment, load_course
from grader.config import get_settings
from grader.deps import SessionDep
from grader.models import Submission, User, WebSession
from grader.policies import Deadline

WEB_DIR = Path(__file__).resolve().parent
# Jinja2Templates turns autoescaping on for .html: every value a template prints is escaped.
templates = Jinja2Templates(directory=WEB_DIR / "templates")

SESSION_COOKIE = "grader_session"
# Before sign-in there is no session to hold the CSRF token: the sign-in form uses a double-submit cookie.
SIGNIN_CSRF_COOKIE = "grader_signin_csrf"


class PageError(Exception):
    """Shown to the person as an error page with this status (raised by page dependencies)."""

    def __init__(self, status_code: int, title: str, message: str):
        self.status_code, self.title, self.message = status_code, title, message


class SignInRequired(Exception):
    def __init__(self, next_path: str):
        self.next_path = next_path


def cookie_secure(request: Request) -> bool:
    """Whether cookies get the Secure flag: the request came over https."""
    # Behind a TLS proxy, uvicorn --proxy-headers makes the scheme https.
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """Set an HttpOnly, SameSite=Lax cookie for the whole site (Secure over https)."""
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="lax", secure=cookie_secure(request), path="/"
    )


def _web_session(request: Request, session: SessionDep) -> WebSession | None:
    return accounts.load_session(session, request.cookies.get(SESSION_COOKIE))


WebSessionDep = Annotated[WebSession | None, Depends(_web_session)]


def _signed_in(request: Request, web: WebSessionDep) -> WebSession:
    if web is None:
        raise SignInRequired(request.url.path)
    return web


SignedInDep = Annotated[WebSession, Depends(_signed_in)]


def _student(web: SignedInDep) -> WebSession:
    if web.user.role != "student":
        raise PageError(
            403, "Students only", "These pages are for students; instructors use the course pages."
        )
    return web


def _instructor(web: SignedInDep) -> WebSession:
    if web.user.role != "instructor":
        raise PageError(403, "Instructors only", "This page is for the course's instructors.")
    return web


def _staff(web: SignedInDep) -> WebSession:
    if not web.user.is_staff:
        raise PageError(403, "Staff only", "This page is for the course's instructors and TAs.")
    return web


StaffPageDep = Annotated[WebSession, Depends(_staff)]
StudentPageDep = Annotated[WebSession, Depends(_student)]
InstructorPageDep = Annotated[WebSession, Depends(_instructor)]


def _checked_csrf(web: SignedInDep, csrf_token: Annotated[str, Form()] = "") -> WebSession:
    """The signed-in session, once the form's CSRF token matches the session's."""
    if not accounts.csrf_matches(web.csrf_token, csrf_token):
        raise PageError(
            403, "Form expired", "This form is stale or came from another site; reload and try again."
        )
    return web


CsrfCheckedDep = Annotated[WebSession, Depends(_checked_csrf)]


def render(
    request: Request, template: str, *, web: WebSession | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page from its template, with the user, the CSRF token, the course and flash messages."""
    user: User | None = web.user if web else None
    flashes = []
    if message := request.query_params.get("ok"):
        flashes.append(("ok", message[:300]))
    return templates.TemplateResponse(
        request,
        template,
        {
            "user": user,
            "csrf_token": web.csrf_token if web else "",
            "course": course_config(get_settings().assignments_dir),
            "flashes": flashes,
            **context,
        },
        status_code=status_code,
    )


def course_config(assignments_dir: Path):
    """The course (title, time zone) or None before any course.toml exists."""
    try:
        return load_course(assignments_dir / "course.toml")
    except InvalidAssignment:
        return None


def local_time(moment: datetime | None, timezone: str) -> str:
    """`Tue 15 Sep 2026, 23:59 EDT`: a moment in the course's time zone, as people read it."""
    if moment is None:
        return ""
    if moment.tzinfo is None:  # only ever UTC in this service (grader.db.UTCDateTime)
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(timezone)).strftime("%a %d %b %Y, %H:%M %Z")


def _local(moment) -> str:
    course = course_config(get_settings().assignments_dir)
    return local_time(moment, course.timezone if course else "UTC")


templates.env.filters["local"] = _local


def new_csrf_token() -> str:
    """A fresh random CSRF token."""
    return secrets.token_urlsafe(32)


def redirect(url: str) -> RedirectResponse:
    """A redirect the browser follows with a GET."""
    # 303: the browser follows a POST's answer with a GET.
    return RedirectResponse(url, status_code=303)


def submission_row(sub: Submission, login: str) -> gradebook.SubmissionRow:
    """A stored submission as the gradebook counts it."""
    return gradebook.SubmissionRow(
        id=sub.id,
        student_id=login,
        assignment=sub.assignment,
        submitted_at=sub.submitted_at,
        status=sub.graded_status or sub.status,  # a regrade keeps the current grading until it is in
        score=sub.score,
        max_score=sub.max_score,
        pinned=sub.pinned,
    )


def counted(
    subs: Iterable[Submission],
    login: str,
    deadline: Deadline,
    assignment: Assignment,
    manual: gradebook.Manual | None = None,
) -> gradebook.Scored | None:
    """The submission that counts for the student's grade on this assignment, as the gradebook picks it
    (with `manual`: its manual points added)."""
    return gradebook.counted_submission(
        [submission_row(s, login) for s in subs], deadline, assignment.submissions.counts, manual
    )

"""What every web page shares: templates, the signed-in user from the session cookie, CSRF checks,
times in the course's zone, and submissions as the gradebook counts them."""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from grader import accounts, auth, gradebook, policies
from grader.assignments import Assignment, InvalidAssignment, load_course
from grader.config import get_settings
from grader.deps import SessionDep
from grader.models import Submission, User, WebSession
from grader.policies import Deadline
from grader.routes import forms

WEB_DIR = Path(__file__).resolve().parent
# Jinja2Templates turns autoescaping on for .html: every value a template prints is escaped.
templates = Jinja2Templates(directory=WEB_DIR / "templates")

SESSION_COOKIE = "grader_session"
# Before sign-in there is no session to hold the CSRF token: the sign-in form uses a double-submit cookie.
SIGNIN_CSRF_COOKIE = "grader_signin_csrf"
# A message for the next page after a redirect ("Saved the extension"), signed with the session's own
# CSRF token: never taken from the address, where anyone could write a "success" banner of their own.
FLASH_COOKIE = "grader_flash"
FLASH_MAX_CHARS = 300
FLASH_KINDS = ("ok", "error")


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


# The checks on a page's signed-in user are async: FastAPI runs a plain function dependency in a worker
# thread of its own, one hop per check per request (grader/deps.py).


async def _web_session(request: Request, session: SessionDep) -> WebSession | None:
    """The cookie's sign-in: from this process's memory on the event loop (no statement, no thread
    hop), else read in a worker thread, in turn, together with the other sign-ins this process is
    reading then (forms.in_turn_together, accounts.read_sign_ins)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    web = accounts.remembered_session(session, token)
    if web is None:
        digest = auth.token_digest(token)
        # In the request's place: the form's upload then takes its own turn in the same place.
        copy = await forms.in_turn_together(
            accounts.read_sign_ins, session.get_bind(), digest, arrived=forms.arrival(request)
        )
        web = None if copy is None else session.merge(copy, load=False)
    return web


WebSessionDep = Annotated[WebSession | None, Depends(_web_session)]


async def _signed_in(request: Request, web: WebSessionDep) -> WebSession:
    if web is None:
        raise SignInRequired(request.url.path)
    return web


SignedInDep = Annotated[WebSession, Depends(_signed_in)]


async def _student(web: SignedInDep) -> WebSession:
    if web.user.role != "student":
        raise PageError(
            403, "Students only", "These pages are for students; instructors use the course pages."
        )
    return web


async def _instructor(web: SignedInDep) -> WebSession:
    if web.user.role != "instructor":
        raise PageError(403, "Instructors only", "This page is for the course's instructors.")
    return web


async def _staff(web: SignedInDep) -> WebSession:
    if not web.user.is_staff:
        raise PageError(403, "Staff only", "This page is for the course's instructors and TAs.")
    return web


StaffPageDep = Annotated[WebSession, Depends(_staff)]
StudentPageDep = Annotated[WebSession, Depends(_student)]
InstructorPageDep = Annotated[WebSession, Depends(_instructor)]


async def _checked_csrf(web: SignedInDep, csrf_token: Annotated[str, Form()] = "") -> WebSession:
    """The signed-in session, once the form's CSRF token matches the session's."""
    if not accounts.csrf_matches(web.csrf_token, csrf_token):
        raise PageError(
            403, "Form expired", "This form is stale or came from another site; reload and try again."
        )
    return web


CsrfCheckedDep = Annotated[WebSession, Depends(_checked_csrf)]


async def _instructor_form(web: CsrfCheckedDep) -> WebSession:
    # CsrfCheckedDep proves a signed-in session; these POSTs must also come from an instructor.
    if web.user.role != "instructor":
        raise PageError(403, "Instructors only", "This action is for the course's instructors.")
    return web


InstructorFormDep = Annotated[WebSession, Depends(_instructor_form)]


def _flash_signature(web: WebSession, payload: str) -> str:
    return hmac.new(web.csrf_token.encode(), payload.encode(), hashlib.sha256).hexdigest()


def flash_redirect(request: Request, url: str, web: WebSession, message: str, kind: str = "ok") -> Response:
    """A redirect to `url` whose page shows `message` once (kind: ok or error)."""
    response = redirect(url)
    payload = base64.urlsafe_b64encode(f"{kind}:{message[:FLASH_MAX_CHARS]}".encode()).decode()
    set_cookie(response, request, FLASH_COOKIE, f"{payload}.{_flash_signature(web, payload)}", max_age=120)
    return response


def read_flash(request: Request, web: WebSession | None) -> tuple[str, str] | None:
    """The (kind, message) the last redirect left for this session, if its signature holds."""
    value = request.cookies.get(FLASH_COOKIE, "")
    if web is None or "." not in value:
        return None
    payload, signature = value.rsplit(".", 1)
    if not hmac.compare_digest(signature, _flash_signature(web, payload)):
        return None
    try:
        kind, _, message = base64.urlsafe_b64decode(payload.encode()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (kind, message[:FLASH_MAX_CHARS]) if kind in FLASH_KINDS else None


def render(
    request: Request, template: str, *, web: WebSession | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page from its template, with the user, the CSRF token, the course and the flash message."""
    user: User | None = web.user if web else None
    flash = read_flash(request, web)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "user": user,
            "csrf_token": web.csrf_token if web else "",
            "course": course_config(get_settings().assignments_dir),
            "flashes": [flash] if flash else [],
            **context,
        },
        status_code=status_code,
    )
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


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


def course_timezone() -> str:
    course = course_config(get_settings().assignments_dir)
    return course.timezone if course else "UTC"


def _local(moment) -> str:
    return local_time(moment, course_timezone())


def clock_time(moment: datetime, timezone: str, now: datetime | None = None) -> str:
    """`14:05` today, else `Wed 23 Sep, 14:05`: a moment soon, in the course's time zone."""
    local = policies.utc(moment).astimezone(ZoneInfo(timezone))
    today = policies.utc(now or datetime.now(UTC)).astimezone(ZoneInfo(timezone)).date()
    return local.strftime("%H:%M %Z" if local.date() == today else "%a %d %b, %H:%M %Z")


def duration_text(seconds: float) -> str:
    """`10 h 12 min`, `3 days 4 h`, `5 min`: a span of time as people say it."""
    minutes = max(0, int(seconds // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} day{'s' * (days != 1)}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    return f"{minutes} min" if minutes else "less than a minute"


def lateness_text(deadline: Deadline, submitted_at: datetime) -> str:
    """`on time`, `10 h 12 min late (counts as 1 day, -10%)`, or `4 min late (within the grace period)`."""
    late = (policies.utc(submitted_at) - deadline.due).total_seconds()
    if late <= 0:
        return "on time"
    units = policies.late_units(deadline, submitted_at)
    if units == 0:
        return f"{duration_text(late)} late (within the grace period)"
    unit = deadline.policy.unit + ("s" if units != 1 else "")
    penalty = policies.penalty_percent(deadline, submitted_at)
    return f"{duration_text(late)} late (counts as {units} {unit}, −{points(penalty)}%)"


def points(value: float | Decimal | None) -> str:
    """Points as people write them: `15.3`, `17`, `0.67`."""
    if value is None:
        return "–"
    text = f"{Decimal(repr(value)) if isinstance(value, float) else value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def score_text(score: float | Decimal | None, max_score: float | None) -> str:
    """The one way pages show a score: `15.3 / 17 (90.00%)`."""
    if max_score is None:
        return "–"
    score = score or 0
    percent = gradebook.rounded(policies.dec(score) * 100 / policies.dec(max_score)) if max_score else None
    return f"{points(score)} / {points(max_score)}" + (f" ({percent}%)" if percent is not None else "")


def counted_text(chosen: gradebook.Scored | None) -> str:
    """A counted submission's score after its late penalty: `13.77 / 17 (81.00%)`, or `–`."""
    if chosen is None:
        return "–"
    if not chosen.out_of:
        return "0%" if chosen.submission.status == "error" else "–"
    # Out of the auto points plus, where they count, the manual ones: as the gradebook counts it.
    final = chosen.final * chosen.out_of / 100
    return score_text(gradebook.rounded(final), chosen.out_of)


templates.env.filters["local"] = _local
templates.env.globals.update(points=points, score_text=score_text)


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
    late_days_left: int = 0,
) -> gradebook.Scored | None:
    """The submission that counts for the student's grade on this assignment, as the gradebook picks it
    (with `manual`: its manual points added; with `late_days_left`: as many late days to spend)."""
    return gradebook.counted_submission(
        [submission_row(s, login) for s in subs],
        deadline,
        assignment.submissions.counts,
        late_days_left,
        manual=manual,
    )

"""What every web page shares: templates, the signed-in user from the session cookie, CSRF checks."""

import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from grader import accounts, display
from grader.config import get_settings
from grader.deps import SessionDep
from grader.models import User, WebSession

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
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
    # Behind a TLS proxy, uvicorn --proxy-headers makes the scheme https.
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
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
    from grader.assignments import InvalidAssignment, load_course

    try:
        return load_course(assignments_dir / "course.toml")
    except InvalidAssignment:
        return None


def _local(moment) -> str:
    course = course_config(get_settings().assignments_dir)
    return display.local_time(moment, course.timezone if course else "UTC")


templates.env.filters["local"] = _local


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def redirect(url: str) -> RedirectResponse:
    # 303: the browser follows a POST's answer with a GET.
    return RedirectResponse(url, status_code=303)


def install(app: FastAPI) -> None:
    """Add the web pages to the app: routers, static files, and the pages' error handlers."""
    from grader.routes import pages, pages_instructor

    app.include_router(pages.router)
    app.include_router(pages_instructor.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

    @app.exception_handler(SignInRequired)
    async def _to_signin(request: Request, exc: SignInRequired) -> Response:
        return redirect(f"/signin?next={exc.next_path}")

    @app.exception_handler(PageError)
    async def _error_page(request: Request, exc: PageError) -> Response:
        return render(
            request, "error.html", web=None, status_code=exc.status_code, title=exc.title, message=exc.message
        )

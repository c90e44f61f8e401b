"""The web pages people use: sign-in (signin.py), students' (student.py), instructors' (instructor.py,
roster.py) and staff's view of one submission (staff.py), on what they share (common.py); Jinja
templates and static files beside them. The JSON API is grader.routes."""

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from grader import accounts, db
from grader.config import get_settings
from grader.models import WebSession
from grader.web import (
    exports,
    grading,
    grading_student,
    instructor,
    roster,
    signin,
    similarity,
    smoke_check,
    staff,
    student,
)
from grader.web.common import SESSION_COOKIE, WEB_DIR, PageError, SignInRequired, redirect, render

# Paths that answer JSON whatever happens: the API, its documentation, and the pages' polling.
JSON_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json")
ERROR_TITLES = {404: "Page not found", 405: "Not allowed here", 413: "Too large"}


def _web_session(request: Request) -> WebSession | None:
    """The signed-in session for an error page's navigation bar (its own database session: the
    request's may be the one that failed)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        with db.session_factory(get_settings())() as session:
            web = accounts.load_session(session, token)
            if web is not None:
                session.expunge(web.user)
                session.expunge(web)
            return web
    except Exception:  # an error page never fails for want of its navigation bar
        return None


def _wants_page(request: Request) -> bool:
    path = request.url.path
    if path.startswith(JSON_PREFIXES) or path.endswith(".json"):
        return False
    return "text/html" in request.headers.get("accept", "") or request.method == "GET"


def install(app: FastAPI) -> None:
    """Add the web pages to the app: routers, static files, and the pages' error handlers."""
    app.include_router(signin.router)
    app.include_router(student.router)
    app.include_router(instructor.router)
    app.include_router(roster.router)
    app.include_router(staff.router)
    app.include_router(exports.router)
    app.include_router(smoke_check.router)
    app.include_router(similarity.router)
    app.include_router(grading.router)
    app.include_router(grading_student.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

    @app.exception_handler(SignInRequired)
    async def _to_signin(request: Request, exc: SignInRequired) -> Response:
        return redirect(f"/signin?next={exc.next_path}")

    @app.exception_handler(PageError)
    async def _error_page(request: Request, exc: PageError) -> Response:
        return render(
            request,
            "error.html",
            web=_web_session(request),
            status_code=exc.status_code,
            title=exc.title,
            message=exc.message,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # The API keeps its JSON errors; a person who follows a bad link gets a page with the menu.
        if not _wants_page(request) or exc.status_code not in ERROR_TITLES:
            return await http_exception_handler(request, exc)
        message = {
            404: f"There is nothing at {request.url.path}. It may have moved, or the link is mistyped.",
            405: "This address does not answer that kind of request.",
            413: "The request was larger than this service accepts.",
        }[exc.status_code]
        return render(
            request,
            "error.html",
            web=_web_session(request),
            status_code=exc.status_code,
            title=ERROR_TITLES[exc.status_code],
            message=message,
        )

"""The web pages people use: sign-in (signin.py), students' (student.py) and instructors' (instructor.py),
on what they share (common.py); Jinja templates and static files beside them. The JSON API is
grader.routes."""

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from grader.web import grading, grading_student, instructor, signin, student
from grader.web.common import WEB_DIR, PageError, SignInRequired, redirect, render


def install(app: FastAPI) -> None:
    """Add the web pages to the app: routers, static files, and the pages' error handlers."""
    app.include_router(signin.router)
    app.include_router(student.router)
    app.include_router(instructor.router)
    app.include_router(grading.router)
    app.include_router(grading_student.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

    @app.exception_handler(SignInRequired)
    async def _to_signin(request: Request, exc: SignInRequired) -> Response:
        return redirect(f"/signin?next={exc.next_path}")

    @app.exception_handler(PageError)
    async def _error_page(request: Request, exc: PageError) -> Response:
        return render(
            request, "error.html", web=None, status_code=exc.status_code, title=exc.title, message=exc.message
        )

"""Signing in and out of the web pages, and the home page that sends each person to theirs."""

import math
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from grader import accounts
from grader.deps import SessionDep
from grader.models import WebSession
from grader.web.common import (
    SESSION_COOKIE,
    SIGNIN_CSRF_COOKIE,
    CsrfCheckedDep,
    WebSessionDep,
    new_csrf_token,
    redirect,
    render,
    set_cookie,
)

router = APIRouter(include_in_schema=False)


def _safe_next(path: str, default: str) -> str:
    # Only a path on this site: "//evil.example" and "https://..." would be an open redirect.
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else default


HOMES = {"instructor": "/instructor", "ta": "/staff/grading"}


def _home_for(web: WebSession) -> str:
    return HOMES.get(web.user.role, "/assignments")


@router.get("/")
def home(web: WebSessionDep) -> Response:
    """Each person's own start page, or the sign-in form."""
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
    """The sign-in form (or the start page for someone signed in)."""
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
    """Check the secret, then open a browser session."""
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
    response = redirect(_safe_next(next, HOMES.get(user.role, "/assignments")))
    set_cookie(
        response, request, SESSION_COOKIE, token, max_age=int(accounts.SESSION_LIFETIME.total_seconds())
    )
    response.delete_cookie(SIGNIN_CSRF_COOKIE, path="/")
    return response


@router.post("/signout")
def signout(request: Request, session: SessionDep, web: CsrfCheckedDep) -> Response:
    """End this browser's session."""
    accounts.close_session(session, request.cookies.get(SESSION_COOKIE))
    response = redirect("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

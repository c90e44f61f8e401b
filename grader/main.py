"""The FastAPI app: the JSON API's routers, the web pages, the database-unavailable handler, and what
is prepared before the first request."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from grader import accounts, auth, dispatch, remembered, web
from grader.config import Settings, get_settings
from grader.routes import accommodations, assignments, gradebook, grading, submissions, tokens

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    dispatch.prepare(settings)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_recheck_credentials, settings)
        yield
        tasks.cancel_scope.cancel()


async def _recheck_credentials(settings: Settings) -> None:
    """The tokens and sign-in sessions this process remembers, checked again (one statement for each
    kind) every half remembered.RECHECK_S: one in use is then never read on its own, and a revoked one
    stops within the second."""
    while True:
        await anyio.sleep(remembered.RECHECK_S / 2)
        try:
            await anyio.to_thread.run_sync(_recheck, settings)
        except Exception as exc:  # the database is down: they are read again when it is back
            log.warning("could not check the remembered tokens and sign-ins again: %s", exc)


def _recheck(settings: Settings) -> None:
    auth.recheck_remembered(settings)
    accounts.recheck_sessions(settings)


app = FastAPI(title="grader", description="Autograder for deep-learning homeworks.", lifespan=lifespan)
app.include_router(submissions.router)
app.include_router(assignments.router)
app.include_router(gradebook.router)
app.include_router(tokens.router)
app.include_router(accommodations.router)
app.include_router(grading.router)
web.install(app)  # the web pages for students and instructors


@app.exception_handler(OperationalError)
@app.exception_handler(InterfaceError)
async def database_unavailable(request: Request, exc: DBAPIError) -> JSONResponse:
    log.error("database unavailable during %s %s: %s", request.method, request.url.path, exc.orig)
    return JSONResponse(
        {"detail": "the database is unavailable; nothing was changed, try again in a moment"},
        status_code=503,
        headers={"Retry-After": "30"},
    )


@app.get("/api/health", tags=["health"])
def health() -> dict[str, str]:
    return {"status": "ok"}

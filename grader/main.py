"""The FastAPI app: the JSON API's routers, the web pages, the database-unavailable handler, and what
is prepared before the first request."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from grader import dispatch, web
from grader.config import get_settings
from grader.routes import accommodations, assignments, gradebook, grading, submissions, tokens

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    dispatch.prepare(get_settings())
    yield


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

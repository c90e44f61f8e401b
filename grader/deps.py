"""Dependency aliases for the routes."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from grader import auth, catalog, db
from grader.assignments import Assignment
from grader.config import Settings, get_settings
from grader.models import User
from grader.routes import forms

# Both async although they do nothing asynchronous: FastAPI runs a plain function dependency in a
# worker thread, and a generator's start and end in one each. Those hops were a quarter of the event
# loop's time in a deadline burst (bench/README.md sections 12 and 14).


async def current_settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(current_settings)]


async def get_session(settings: SettingsDep) -> AsyncIterator[Session]:
    """A session per request (no connection until first used), closed afterwards: in a worker thread
    only when it holds a connection, as its rollback talks to the database."""
    session = db.session_factory(settings)()
    try:
        yield session
    finally:
        if db.holds_connection(session):
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="a token from `grader token create`")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def current_user(request: Request, session: SessionDep, credentials: BearerDep) -> User:
    """The token's user, 401 for a missing, unknown, expired or revoked token. From this process's
    memory when it checked the token lately, with no statement and no thread hop (auth.checked_user);
    else read in a worker thread, in turn, together with the other tokens this process is reading then
    (forms.in_turn_together, auth.read_tokens). Before an upload's body is read: nobody without a valid
    token makes us take in an upload."""
    user = auth.checked_user(session=session, token=credentials.credentials) if credentials else None
    if user is None and credentials is not None:
        digest = auth.token_digest(credentials.credentials)
        copy = await forms.in_turn_together(
            auth.read_tokens, session.get_bind(), digest, arrived=forms.arrival(request)
        )
        user = None if copy is None else session.merge(copy, load=False)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(current_user)]


# The role checks are async too: no hop for a check on a user already loaded.


async def instructor(user: CurrentUser) -> User:
    if not user.is_instructor:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "instructors only")
    return user


InstructorDep = Annotated[User, Depends(instructor)]


async def staff(user: CurrentUser) -> User:
    if not user.is_staff:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "instructors and TAs only")
    return user


# Instructors and TAs: grading, reading submissions.
StaffDep = Annotated[User, Depends(staff)]


async def exporter(user: CurrentUser, settings: SettingsDep) -> User:
    if user.is_instructor or (user.role == "ta" and settings.ta_may_export):
        return user
    raise HTTPException(
        status.HTTP_403_FORBIDDEN, "exports are for instructors (GRADER_TA_MAY_EXPORT for TAs)"
    )


# The gradebook exports: instructors, and TAs when GRADER_TA_MAY_EXPORT is set.
ExporterDep = Annotated[User, Depends(exporter)]


def assignments(session: SessionDep, settings: SettingsDep) -> dict[str, Assignment]:
    return catalog.current(session=session, settings=settings)


AssignmentsDep = Annotated[dict[str, Assignment], Depends(assignments)]

"""Deadlines per student: the stored extensions, read by one query, and the instructor's changes to them."""

from collections.abc import Collection
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import policies
from grader.assignments import Assignment
from grader.models import Extension, User


class BadExtension(Exception):
    """The instructor's form does not make a valid extension; nothing was changed."""


def stored(
    session: Session, *, user_id: int | None = None, slugs: Collection[str] | None = None
) -> list[tuple[Extension, str]]:
    """The extensions of one student and/or some assignments (all when neither), with the student's login."""
    query = select(Extension, User.login).join(User, User.id == Extension.user_id)
    if user_id is not None:
        query = query.where(Extension.user_id == user_id)
    if slugs is not None:
        query = query.where(Extension.assignment.in_(slugs))
    return [(ext, login) for ext, login in session.execute(query)]


def find(session: Session, *, user_id: int, slug: str) -> Extension | None:
    """The student's extension on one assignment, if any."""
    found = stored(session, user_id=user_id, slugs=[slug])
    return found[0][0] if found else None


def as_row(ext: Extension | None, student_id: str) -> policies.ExtensionRow | None:
    """A stored extension as the late policy sees it."""
    if ext is None:
        return None
    return policies.ExtensionRow(
        student_id=student_id, assignment=ext.assignment, due=ext.due, cutoff=ext.cutoff, reason=ext.reason
    )


def deadline_with(assignment: Assignment, ext: Extension | None) -> policies.Deadline:
    """The assignment's deadline moved by this (already loaded) extension, if any."""
    return policies.deadline_for(assignment, as_row(ext, str(ext.user_id) if ext else ""))


def deadline(*, session: Session, assignment: Assignment, user_id: int) -> policies.Deadline:
    """The student's due date and cutoff: the assignment's, moved by their extension if any."""
    return deadline_with(assignment, find(session, user_id=user_id, slug=assignment.slug))


def parse_local(value: str, timezone: str) -> datetime:
    """A datetime-local form value (`2026-09-20T23:59`) read in the course's time zone."""
    try:
        naive = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadExtension(f"{value!r} is not a date and time") from exc
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=ZoneInfo(timezone))


def grant(
    *, session: Session, user: User, assignment: Assignment, due: str, cutoff: str = "", reason: str = ""
) -> Extension:
    """Grant or change one student's due date (and optional cutoff) on one assignment, and commit."""
    tz = assignment.course.timezone
    new_due = parse_local(due, tz)
    new_cutoff = parse_local(cutoff, tz) if cutoff.strip() else None
    if new_cutoff is not None and new_cutoff < new_due:
        raise BadExtension("the cutoff is before the new due date")
    ext = find(session, user_id=user.id, slug=assignment.slug)
    if ext is None:
        ext = Extension(user_id=user.id, assignment=assignment.slug)
        session.add(ext)
    ext.due, ext.cutoff, ext.reason = new_due, new_cutoff, reason.strip()[:1000]
    session.commit()
    return ext


def remove(*, session: Session, user: User, slug: str) -> None:
    """Take back one student's extension on one assignment (none is fine), and commit."""
    ext = find(session, user_id=user.id, slug=slug)
    if ext is not None:
        session.delete(ext)
    session.commit()

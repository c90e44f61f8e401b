"""Deadlines per student: the stored extensions, read by one query, and the instructor's changes to them
(extensions and excusals, one at a time; a CSV of many at once is grader.accommodations)."""

import re
from collections.abc import Collection
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import policies
from grader.assignments import Assignment
from grader.models import Excusal, Extension, User

# `+2d`, `+36h`: a due date given relative to the assignment's own.
RELATIVE = re.compile(r"^\+\s*(\d{1,3})\s*([dh])$")
MAX_REASON = 1000


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
    # Not through stored(): it renders its IN list again on every call, and joins a table not needed here.
    return session.scalar(select(Extension).where(Extension.user_id == user_id, Extension.assignment == slug))


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
        raise BadExtension(f"{value!r} is not a date and time (2027-03-05T23:59, or +2d / +36h)") from exc
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=ZoneInfo(timezone))


def parse_due(value: str, assignment: Assignment) -> datetime:
    """A new due date: a date and time (in the course's zone unless it has an offset), or `+2d` / `+36h`
    after the assignment's own due date."""
    relative = RELATIVE.match(value.strip())
    if relative:
        amount, unit = int(relative[1]), relative[2]
        return assignment.due + (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    return parse_local(value, assignment.course.timezone)


def checked(assignment: Assignment, due: str, cutoff: str = "") -> tuple[datetime, datetime | None]:
    """The new due date and cutoff from the instructor's text; BadExtension says what is wrong."""
    if not due.strip():
        raise BadExtension("give the new due date")
    new_due = parse_due(due, assignment)
    new_cutoff = parse_due(cutoff, assignment) if cutoff.strip() else None
    if new_due <= assignment.due:
        raise BadExtension(f"the new due date is not after the assignment's ({assignment.due.isoformat()})")
    if new_cutoff is not None and new_cutoff < new_due:
        raise BadExtension("the cutoff is before the new due date")
    return new_due, new_cutoff


def put(
    session: Session, *, user: User, slug: str, due: datetime, cutoff: datetime | None, reason: str
) -> Extension:
    """Set one student's extension in the session (no commit): for one grant or a batch of them."""
    ext = find(session, user_id=user.id, slug=slug)
    if ext is None:
        ext = Extension(user_id=user.id, assignment=slug)
        session.add(ext)
    ext.due, ext.cutoff, ext.reason = due, cutoff, reason.strip()[:MAX_REASON]
    session.flush()
    return ext


def grant(
    *, session: Session, user: User, assignment: Assignment, due: str, cutoff: str = "", reason: str = ""
) -> Extension:
    """Grant or change one student's due date (and optional cutoff) on one assignment, and commit."""
    new_due, new_cutoff = checked(assignment, due, cutoff)
    ext = put(session, user=user, slug=assignment.slug, due=new_due, cutoff=new_cutoff, reason=reason)
    session.commit()
    return ext


def remove(*, session: Session, user: User, slug: str) -> bool:
    """Take back one student's extension on one assignment, and commit; whether there was one."""
    ext = find(session, user_id=user.id, slug=slug)
    if ext is not None:
        session.delete(ext)
    session.commit()
    return ext is not None


# ---- excusals: the assignment is left out of the student's total -------------------------------------


def excusals(
    session: Session, *, user_id: int | None = None, slugs: Collection[str] | None = None
) -> list[tuple[Excusal, str]]:
    """The excusals of one student and/or some assignments (all when neither), with the student's login."""
    query = select(Excusal, User.login).join(User, User.id == Excusal.user_id)
    if user_id is not None:
        query = query.where(Excusal.user_id == user_id)
    if slugs is not None:
        query = query.where(Excusal.assignment.in_(slugs))
    return [(exc, login) for exc, login in session.execute(query.order_by(User.login, Excusal.assignment))]


def put_excusal(session: Session, *, user: User, slug: str, reason: str) -> Excusal:
    """Excuse one student from one assignment in the session (no commit)."""
    found = excusals(session, user_id=user.id, slugs=[slug])
    excusal = found[0][0] if found else Excusal(user_id=user.id, assignment=slug)
    excusal.reason = reason.strip()[:MAX_REASON]
    session.add(excusal)
    session.flush()
    return excusal


def excuse(*, session: Session, user: User, slug: str, reason: str = "") -> Excusal:
    """Excuse one student from one assignment (or change the reason), and commit."""
    excusal = put_excusal(session, user=user, slug=slug, reason=reason)
    session.commit()
    return excusal


def unexcuse(*, session: Session, user: User, slug: str) -> bool:
    """Take back one student's excusal from one assignment, and commit; whether there was one."""
    found = excusals(session, user_id=user.id, slugs=[slug])
    for excusal, _ in found:
        session.delete(excusal)
    session.commit()
    return bool(found)

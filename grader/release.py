"""What students may see, and when: each test's visibility and the per-assignment "release grades" switch.

A test is `visible` (details always), `hidden` (counted, details never), `after_due` (details once the
student's due date has passed) or `after_release` (details once the instructor released the grades).
Tests in public_tests/ are always visible; those in tests/ take the first [feedback.visibility] pattern
that matches their name, else [feedback] tests. Before the release a student sees no manual points and
no rubric comments; after it, the final score (auto + manual) and the comments. A test's source is never
served to a student: only its name, points and, when its details may be shown, its message.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import extensions, feedback
from grader.assignments import Assignment
from grader.db import utcnow
from grader.models import GradeRelease, User
from grader.results import GradeResult, TestResult


def visibility(assignment: Assignment, test: TestResult) -> str:
    """The test's visibility under the assignment's [feedback]."""
    if test.visibility == "public":
        return "visible"
    file = test.name.split("::", 1)[0]
    for pattern, seen in assignment.config.feedback.visibility.items():
        if fnmatchcase(test.name, pattern) or fnmatchcase(file, pattern):
            return seen
    return assignment.config.feedback.default_visibility


def details_shown(seen: str, *, now: datetime, due: datetime, released: bool) -> bool:
    """Whether a student sees the details (message) of a test of this visibility now."""
    if seen == "visible":
        return True
    if seen == "after_due":
        return now >= due
    if seen == "after_release":
        return released
    return False


def shown_for(
    assignment: Assignment, *, now: datetime, due: datetime, released: bool
) -> Callable[[TestResult], bool]:
    """For grader.feedback.for_student: whether a student sees this test's details now."""

    def shown(test: TestResult) -> bool:
        return details_shown(visibility(assignment, test), now=now, due=due, released=released)

    return shown


def for_student(session: Session, *, assignment: Assignment, user_id: int, result: GradeResult):
    """What this student sees of the result now: grader.feedback.for_student under the visibilities."""
    due = extensions.deadline(session=session, assignment=assignment, user_id=user_id).due
    shown = shown_for(assignment, now=utcnow(), due=due, released=released(session, slug=assignment.slug))
    return feedback.for_student(result, hidden=assignment.config.feedback.hidden, shown=shown)


def needs_release(assignment: Assignment) -> bool:
    """Whether anything waits for the release: manual points, or tests shown only after it."""
    feedback = assignment.config.feedback
    return bool(assignment.questions) or "after_release" in (
        feedback.default_visibility,
        *feedback.visibility.values(),
    )


def released(session: Session, *, slug: str) -> bool:
    """Whether the instructor released this assignment's grades."""
    return session.get(GradeRelease, slug) is not None


def released_slugs(session: Session) -> set[str]:
    return set(session.scalars(select(GradeRelease.assignment)))


@dataclass(frozen=True)
class ReleaseState:
    released: bool
    released_at: datetime | None


def state(session: Session, *, slug: str) -> ReleaseState:
    row = session.get(GradeRelease, slug)
    return ReleaseState(released=row is not None, released_at=row.released_at if row else None)


def set_released(*, session: Session, slug: str, by: User, release: bool) -> bool:
    """Release the assignment's grades (or take the release back), and commit; whether it changed."""
    row = session.get(GradeRelease, slug)
    if release and row is None:
        session.add(GradeRelease(assignment=slug, released_at=utcnow(), released_by=by.id))
    elif not release and row is not None:
        session.delete(row)
    else:
        return False
    session.commit()
    return True

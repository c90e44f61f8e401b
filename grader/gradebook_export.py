"""The gradebook of the database: its rows read in four queries, whatever the roster's size (students,
extensions, excusals, then one stream of submissions ordered by user), plus, when assignments have
manually graded questions, one per such assignment for the manual points and one for the releases; then
streamed through the pure CSV writers of grader.gradebook.

The route must keep the session open while the lines stream (FastAPI closes `yield` dependencies after
the response since 0.118).
"""

from collections.abc import Collection, Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import extensions, release, rubrics
from grader.assignments import Assignment, CourseConfig
from grader.gradebook import (
    ExcusalRow,
    Extra,
    RosterEntry,
    SubmissionRow,
    TestRow,
    gradebook_csv,
    moodle_csv,
    per_test_csv,
    student_grades,
)
from grader.models import Excusal, Submission, User
from grader.policies import ExtensionRow

STREAM_BATCH = 1000


def _roster(session: Session) -> list[RosterEntry]:
    rows = session.execute(
        select(User.login, User.name, User.email).where(User.role == "student").order_by(User.login)
    )
    return [RosterEntry(login, name, email) for login, name, email in rows]


def _extensions(session: Session, slugs: list[str]) -> list[ExtensionRow]:
    return [extensions.as_row(ext, login) for ext, login in extensions.stored(session, slugs=slugs)]


def _excusals(session: Session, slugs: list[str]) -> list[ExcusalRow]:
    rows = session.execute(
        select(User.login, Excusal.assignment)
        .join(User, Excusal.user_id == User.id)
        .where(Excusal.assignment.in_(slugs))
    )
    return [ExcusalRow(*row) for row in rows]


def _submissions(session: Session, slugs: list[str], *, with_tests: bool = False) -> Iterator[SubmissionRow]:
    columns = [
        User.login,
        Submission.id,
        Submission.assignment,
        Submission.submitted_at,
        Submission.status,
        Submission.graded_status,
        Submission.score,
        Submission.max_score,
        Submission.pinned,
    ]
    # The result JSON is the heavy column: read only for the per-test export.
    if with_tests:
        columns.append(Submission.result)
    stmt = (
        select(*columns)
        .join(User, Submission.user_id == User.id)
        .where(Submission.assignment.in_(slugs), User.role == "student")
        # By user id, not login: what groups a student's rows is the order, whatever the collation.
        .order_by(Submission.user_id, Submission.submitted_at)
        .execution_options(yield_per=STREAM_BATCH)
    )
    for row in session.execute(stmt):
        tests = ()
        if with_tests:
            tests = tuple(
                TestRow(t["name"], t["outcome"] == "passed") for t in (row.result or {}).get("tests", [])
            )
        yield SubmissionRow(
            id=row.id,
            student_id=row.login,
            assignment=row.assignment,
            submitted_at=row.submitted_at,
            # A submission being regraded counts with its current grading until the new one is in.
            status=row.graded_status or row.status,
            score=row.score,
            max_score=row.max_score,
            pinned=row.pinned,
            tests=tests,
        )


def _grades_from_db(session: Session, assignments: Sequence[Assignment], course: CourseConfig):
    slugs = [a.slug for a in assignments]
    return student_grades(
        roster=_roster(session),
        assignments=assignments,
        submissions=_submissions(session, slugs),
        course=course,
        extensions=_extensions(session, slugs),
        excusals=_excusals(session, slugs),
        manual=rubrics.manual_totals(session, assignments=assignments),
    )


def _unreleased(session: Session, assignments: Sequence[Assignment]) -> set[str]:
    waiting = {a.slug for a in assignments if release.needs_release(a)}
    return waiting - release.released_slugs(session) if waiting else set()


def export_csv(
    *,
    session: Session,
    assignments: Sequence[Assignment],
    course: CourseConfig,
    extra: Collection[Extra] = (),
) -> Iterator[str]:
    """The gradebook CSV of every student in the database, as lines to stream."""
    return gradebook_csv(
        _grades_from_db(session, assignments, course),
        assignments=assignments,
        course=course,
        extra=extra,
        unreleased=_unreleased(session, assignments),
    )


def export_moodle_csv(
    *, session: Session, assignments: Sequence[Assignment], course: CourseConfig
) -> Iterator[str]:
    """The Moodle grade-import CSV of every student in the database, as lines to stream."""
    return moodle_csv(_grades_from_db(session, assignments, course), assignments=assignments, course=course)


def export_per_test_csv(*, session: Session, assignment: Assignment) -> Iterator[str]:
    """Which tests each student's counted submission passed, for one assignment, as lines to stream."""
    slugs = [assignment.slug]
    return per_test_csv(
        roster=_roster(session),
        assignment=assignment,
        submissions=_submissions(session, slugs, with_tests=True),
        extensions=_extensions(session, slugs),
        excusals=_excusals(session, slugs),
        manual=rubrics.manual_points(session, assignment=assignment),
    )

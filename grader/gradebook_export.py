"""The gradebook of the database: its rows read in five queries, whatever the roster's size (students,
extensions, excusals, the teams' uploads credited to each member, then one stream of the other
submissions ordered by user), plus, when assignments have manually graded questions, one per such
assignment for the manual points and one for the releases; then streamed through the pure CSV
writers of grader.gradebook.

The route must keep the session open while the lines stream (FastAPI closes `yield` dependencies after
the response since 0.118).
"""

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import extensions, release, rubrics
from grader.assignments import Assignment, CourseConfig
from grader.gradebook import (
    ExcusalRow,
    Extra,
    RosterEntry,
    StudentGrades,
    SubmissionRow,
    TestRow,
    gradebook_csv,
    moodle_csv,
    per_test_csv,
    student_grades,
)
from grader.models import Excusal, Submission, TeamMember, User
from grader.policies import ExtensionRow

STREAM_BATCH = 1000


def _roster(session: Session, user_id: int | None = None) -> list[RosterEntry]:
    query = select(User.login, User.name, User.email).where(User.role == "student")
    if user_id is not None:
        query = query.where(User.id == user_id)
    return [
        RosterEntry(login, name, email) for login, name, email in session.execute(query.order_by(User.login))
    ]


def _extensions(session: Session, slugs: list[str], user_id: int | None = None) -> list[ExtensionRow]:
    found = extensions.stored(session, slugs=slugs, user_id=user_id)
    return [extensions.as_row(ext, login) for ext, login in found]


def _excusals(session: Session, slugs: list[str], user_id: int | None = None) -> list[ExcusalRow]:
    query = (
        select(User.login, Excusal.assignment)
        .join(User, Excusal.user_id == User.id)
        .where(Excusal.assignment.in_(slugs))
    )
    if user_id is not None:
        query = query.where(Excusal.user_id == user_id)
    return [ExcusalRow(*row) for row in session.execute(query)]


def _row(row, student_id: str, with_tests: bool) -> SubmissionRow:
    tests = ()
    if with_tests:
        tests = tuple(
            TestRow(t["name"], t["outcome"] == "passed") for t in (row.result or {}).get("tests", [])
        )
    return SubmissionRow(
        id=row.id,
        student_id=student_id,
        assignment=row.assignment,
        submitted_at=row.submitted_at,
        # A submission being regraded counts with its current grading until the new one is in.
        status=row.graded_status or row.status,
        score=row.score,
        max_score=row.max_score,
        pinned=row.pinned,
        tests=tests,
    )


def _columns(with_tests: bool) -> list:
    """What _row reads of a submission; the result JSON is the heavy column: only for the per-test export."""
    return [
        User.login,
        Submission.id,
        Submission.assignment,
        Submission.submitted_at,
        Submission.status,
        Submission.graded_status,
        Submission.score,
        Submission.max_score,
        Submission.pinned,
        *([Submission.result] if with_tests else []),
    ]


def _team_submissions(
    session: Session, slugs: list[str], *, user_id: int | None = None, with_tests: bool = False
) -> dict[str, list[SubmissionRow]]:
    """The teams' uploads, credited to each current member of the team, by the member's student id."""
    query = (
        select(*_columns(with_tests))
        .join(TeamMember, TeamMember.team_id == Submission.team_id)
        .join(User, User.id == TeamMember.user_id)
        .where(Submission.assignment.in_(slugs), User.role == "student")
    )
    if user_id is not None:
        query = query.where(TeamMember.user_id == user_id)
    shared: dict[str, list[SubmissionRow]] = defaultdict(list)
    for row in session.execute(query):
        shared[row.login].append(_row(row, row.login, with_tests))
    return shared


def _submissions(
    session: Session, slugs: list[str], *, with_tests: bool = False, user_id: int | None = None
) -> Iterator[SubmissionRow]:
    stmt = (
        select(*_columns(with_tests))
        .join(User, Submission.user_id == User.id)
        # A team's uploads count for its members, not for whoever uploaded: _team_submissions.
        .where(Submission.assignment.in_(slugs), User.role == "student", Submission.team_id.is_(None))
        # By user id, not login: what groups a student's rows is the order, whatever the collation.
        .order_by(Submission.user_id, Submission.submitted_at)
        .execution_options(yield_per=STREAM_BATCH)
    )
    if user_id is not None:
        stmt = stmt.where(Submission.user_id == user_id)
    for row in session.execute(stmt):
        yield _row(row, row.login, with_tests)


def _grades_from_db(
    session: Session, assignments: Sequence[Assignment], course: CourseConfig, user_id: int | None = None
):
    slugs = [a.slug for a in assignments]
    return student_grades(
        roster=_roster(session, user_id),
        assignments=assignments,
        submissions=_submissions(session, slugs, user_id=user_id),
        course=course,
        extensions=_extensions(session, slugs, user_id),
        excusals=_excusals(session, slugs, user_id),
        shared=_team_submissions(session, slugs, user_id=user_id),
        manual=rubrics.manual_totals(session, assignments=assignments),
    )


def grades_of(
    *, session: Session, assignments: Sequence[Assignment], course: CourseConfig, user: User
) -> StudentGrades:
    """One student's gradebook row, exactly as the CSV computes it (late days included)."""
    return next(iter(_grades_from_db(session, assignments, course, user.id)))


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
        shared=_team_submissions(session, slugs, with_tests=True),
        manual=rubrics.manual_points(session, assignment=assignment),
    )

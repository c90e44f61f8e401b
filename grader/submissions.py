"""Submissions: accept an upload (check it, store the file, insert the row, commit, then send it to a
grader by id), queue submissions to be graded again, and the reads the API and the pages make. The
API and the web form both accept uploads here, so they apply the same rules."""

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import Select, bindparam, func, or_, select
from sqlalchemy.orm import Session

from grader import catalog, dispatch, extensions, grading, policies, storage, teams
from grader.assignments import Assignment
from grader.config import Settings
from grader.db import lock_for_write, utcnow
from grader.models import STATUSES, Extension, Submission, User, Worker
from grader.uploads import BadUpload, unpack


class Refused(Exception):
    """The upload is not accepted and nothing was stored; `reason` says which rule refused it."""

    def __init__(self, reason: str, message: str, *, retry_after: int | None = None):
        # reason: bad_format, bad_upload, too_large, not_released, closed, no_team, max_submissions,
        # rate_limited
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        super().__init__(message)


def stored_filename(filename: str) -> str:
    """The upload's name as stored: its last part, shortened to fit the column by its stem, never its
    extension, from which the worker reads the format again."""
    name = Path(filename).name
    limit = Submission.filename.type.length
    if len(name) <= limit:
        return name
    suffix = Path(name).suffix[:limit]
    return name[: limit - len(suffix)] + suffix


def check_limits(
    *,
    session: Session,
    assignment: Assignment,
    user_id: int,
    now: datetime,
    due: policies.Deadline | None = None,
) -> policies.Deadline:
    """A student's uploads, on every path: refuse before the release, past the cutoff, past
    submissions.max, or past submissions.per_hour. Returns the student's deadline (`due`, when the
    caller already looked it up)."""
    if not policies.released(assignment, now):
        # Worded like an unknown slug: students are not told what is coming.
        raise Refused("not_released", f"no assignment {assignment.slug!r}")
    if due is None:
        due = extensions.deadline(session=session, assignment=assignment, user_id=user_id)
    cutoff = due.cutoff
    if cutoff is not None and now > cutoff:
        raise Refused(
            "closed", f"{assignment.slug} closed at {cutoff.isoformat()}; uploads are no longer accepted"
        )
    team = teams.team_of(session, user_id=user_id) if assignment.is_team else None
    if assignment.is_team and team is None:
        raise Refused(
            "no_team", f"{assignment.slug} is a team assignment and you are in no team: ask the instructor"
        )
    policy = assignment.submissions
    if policy.max is None and policy.per_hour is None:
        return due
    if team is not None:
        charged = session.scalars(_CHARGED_TO_TEAM, {"team_id": team.id, "slug": assignment.slug}).all()
    else:
        charged = session.scalars(_CHARGED_TO_STUDENT, {"user_id": user_id, "slug": assignment.slug}).all()
    hit = policies.submission_limit(policy, charged, now)
    if hit is None:
        return due
    if hit.allowed_at is None:
        raise Refused("max_submissions", f"you have used all {policy.max} submissions for {assignment.slug}")
    seconds = max(1, math.ceil((hit.allowed_at - now).total_seconds()))
    raise Refused(
        "rate_limited",
        f"at most {policy.per_hour} submissions per hour for {assignment.slug}; try again in {seconds} s",
        retry_after=seconds,
    )


# The upload path's statements are built once: building one and its cache key each time cost 0.1-0.13
# ms of the API's CPU per upload, a twentieth of it in a deadline burst (bench/README.md section 16).


def _charged(whose) -> Select:
    """The submit times of uploads charged to someone: those that failed on our side, or could not be
    graded at all (a syntax error), are never charged; a team's are the team's."""
    return select(Submission.submitted_at).where(
        whose,
        Submission.assignment == bindparam("slug"),
        or_(Submission.error_kind.is_(None), Submission.error_kind != "infrastructure"),
        Submission.ungradable.is_(False),
    )


_CHARGED_TO_STUDENT = _charged(Submission.user_id == bindparam("user_id"))
_CHARGED_TO_TEAM = _charged(Submission.team_id == bindparam("team_id"))

# The student's row, locked, joined to their extension on the assignment: None when they have none.
_LOCK_WITH_EXTENSION = (
    select(Extension)
    .select_from(User)
    .outerjoin(Extension, (Extension.user_id == User.id) & (Extension.assignment == bindparam("slug")))
    .where(User.id == bindparam("user_id"))
    .with_for_update(of=User)
)


class Accepted(NamedTuple):
    submission: Submission
    due: policies.Deadline  # the student's deadline, for the answer


def accept(
    *,
    session: Session,
    settings: Settings,
    assignment: Assignment,
    student: User,
    filename: str,
    data: bytes,
    by_instructor: bool = False,
) -> Accepted:
    """Check the upload, store it, insert and commit its row (queued), then send it to a grader by id.
    Raises Refused, having stored nothing, when a rule refuses it."""
    try:
        # The checks and the insert, one upload of this student at a time: otherwise simultaneous
        # uploads all pass the limits before any of them is inserted. The checks come before the
        # unpacking, so a refused student costs none. Their extension is read with the lock.
        extension = lock_for_write(
            session, _LOCK_WITH_EXTENSION, {"user_id": student.id, "slug": assignment.slug}
        ).scalar()
        due = extensions.deadline_with(assignment, extension)
        now = utcnow()
        # Instructors' uploads (CI smoke runs) ignore the student's release, deadlines and limits.
        if not by_instructor:
            check_limits(session=session, assignment=assignment, user_id=student.id, now=now, due=due)
        try:
            unpacked = unpack(
                data,
                filename,
                assignment,
                max_bytes=settings.max_unpacked_bytes,
                max_files=settings.max_upload_files,
            )
        except BadUpload as exc:
            raise Refused(exc.code, exc.message) from exc
        team = teams.team_of(session, user_id=student.id) if assignment.is_team else None
        # An instructor's upload for a student in no team is refused; their own (a smoke run) is not.
        if assignment.is_team and team is None and not student.is_instructor:
            raise Refused(
                "no_team", f"{assignment.slug} is a team assignment and {student.login} is in no team"
            )
        # Before the commit: a committed row always has its file (and grading its unpacked form).
        digest = storage.store(settings, data, unpacked, assignment)
        # Without an automatic check, the upload waits for manual grading: nothing to send.
        graded_here = assignment.autograded
        submission = Submission(
            user_id=student.id,
            assignment=assignment.slug,
            submitted_at=now,
            sha256=digest,
            filename=stored_filename(filename),
            format=unpacked.kind,
            queue="gpu" if assignment.sandbox.gpu else "cpu",
            status="queued" if graded_here else "submitted",
            enqueued_at=now if graded_here else None,  # sent just below; unset again if no grader takes it
            team_id=team.id if team else None,
        )
        session.add(submission)
        session.commit()
    except BaseException:
        session.rollback()  # let the next upload in now, not when the request's session closes
        raise
    if graded_here:
        # Committed: now it may be sent. If the broker is down the sweeper sends it later.
        dispatch.enqueue(session=session, settings=settings, submissions=[(submission.id, submission.queue)])
    return Accepted(submission, due)


def regrade(
    *,
    session: Session,
    settings: Settings,
    slug: str | None = None,
    user_id: int | None = None,
    submission_id: str | None = None,
) -> int:
    """Queue one submission, or those of an assignment (of one student), to be graded again (not those
    running now); commits, then sends them by id. How many."""
    chosen = [submission_id] if submission_id is not None else ids(session, slug=slug, user_id=user_id)
    # A project milestone without an automatic check has nothing to run, and its points are manual.
    manual = [
        a.slug for a in catalog.current(session=session, settings=settings).values() if not a.autograded
    ]
    if manual and chosen:
        kept = select(Submission.id).where(Submission.id.in_(chosen), Submission.assignment.not_in(manual))
        chosen = list(session.scalars(kept))
    reset = grading.queue_again(session=session, submission_ids=chosen)
    dispatch.enqueue(session=session, settings=settings, submissions=reset)
    return len(reset)


# ---- reads -------------------------------------------------------------------------------------------


def yours(user_id: int):
    """The condition for a student's submissions: their own uploads and their team's."""
    return or_(Submission.user_id == user_id, Submission.team_id.in_(teams.teams_of_user(user_id)))


def of_student(session: Session, *, user_id: int, slug: str | None = None) -> list[Submission]:
    """One student's submissions (to one assignment, or to all), their team's included, newest first."""
    query = select(Submission).where(yours(user_id))
    if slug is not None:
        query = query.where(Submission.assignment == slug)
    return list(session.scalars(query.order_by(Submission.submitted_at.desc())))


def owned(session: Session, *, submission_id: str, user_id: int) -> Submission | None:
    """The submission if it is this user's (or their team's); None for someone else's, exactly as for
    a missing one."""
    return session.scalar(select(Submission).where(Submission.id == submission_id, yours(user_id)))


def with_owner(session: Session, *, submission_id: str) -> tuple[Submission, User] | None:
    """The submission and its student, or None."""
    row = session.execute(
        select(Submission, User)
        .join(User, User.id == Submission.user_id)
        .where(Submission.id == submission_id)
    ).first()
    return (row.Submission, row.User) if row else None


def listing(
    session: Session, *, user_id: int | None = None, login: str | None = None, slug: str | None = None
) -> list[tuple[Submission, User]]:
    """Submissions with their students, newest first, at most 500: of one user (by id, their team's
    included, or by login) and/or one assignment."""
    query = select(Submission, User).join(User, User.id == Submission.user_id)
    if user_id is not None:
        query = query.where(yours(user_id))
    if login is not None:
        query = query.where(User.login == login)
    if slug:
        query = query.where(Submission.assignment == slug)
    return [
        (sub, owner)
        for sub, owner in session.execute(query.order_by(Submission.submitted_at.desc()).limit(500))
    ]


def of_assignment(session: Session, *, slug: str) -> list[tuple[Submission, User]]:
    """Every student's submissions to one assignment with the student, oldest first."""
    rows = session.execute(
        select(Submission, User)
        .join(User, User.id == Submission.user_id)
        .where(Submission.assignment == slug, User.role == "student")
        .order_by(Submission.submitted_at)
    )
    return [(sub, user) for sub, user in rows]


def ids(session: Session, *, slug: str | None = None, user_id: int | None = None) -> list[str]:
    """The ids of the submissions to one assignment and/or of one student."""
    query = select(Submission.id)
    if slug is not None:
        query = query.where(Submission.assignment == slug)
    if user_id is not None:
        query = query.where(Submission.user_id == user_id)
    return list(session.scalars(query))


def status_counts(session: Session, *, slug: str | None = None) -> dict[str, int]:
    """How many submissions (to one assignment, or to all) are in each status."""
    query = select(Submission.status, func.count()).group_by(Submission.status)
    if slug is not None:
        query = query.where(Submission.assignment == slug)
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: n for status, n in session.execute(query)})
    return counts


@dataclass(frozen=True)
class AssignmentCounts:
    students: int  # students with at least one submission
    infrastructure_errors: int
    flagged: int


def assignment_counts(session: Session, *, slug: str) -> AssignmentCounts:
    """Who submitted to one assignment, and how many of its submissions need a look."""
    where = Submission.assignment == slug
    return AssignmentCounts(
        students=session.scalar(select(func.count(func.distinct(Submission.user_id))).where(where)) or 0,
        infrastructure_errors=session.scalar(
            select(func.count()).where(where, Submission.error_kind == "infrastructure")
        )
        or 0,
        flagged=session.scalar(select(func.count()).where(where, Submission.flagged.is_(True))) or 0,
    )


def per_student(session: Session) -> list[tuple[User, int, datetime | None]]:
    """Every student by login with their number of submissions and the time of the last one."""
    rows = session.execute(
        select(User, func.count(Submission.id), func.max(Submission.submitted_at))
        .outerjoin(Submission, Submission.user_id == User.id)
        .where(User.role == "student")
        .group_by(User.id)
        .order_by(User.login)
    )
    return [(user, n, last) for user, n, last in rows]


@dataclass
class QueueState:
    counts: dict[str, int]
    oldest_queued: datetime | None
    workers: list[Worker]
    live_workers: int


def queue_state(session: Session, *, settings: Settings) -> QueueState:
    """How much is waiting and who is grading it."""
    live_since = dispatch.live_since(settings)
    workers = list(session.scalars(select(Worker).order_by(Worker.seen_at.desc())))
    return QueueState(
        counts=status_counts(session),
        oldest_queued=session.scalar(
            select(func.min(Submission.submitted_at)).where(Submission.status == "queued")
        ),
        workers=workers,
        live_workers=sum(w.seen_at > live_since for w in workers),
    )

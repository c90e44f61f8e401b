"""Accept an upload: check it, store the file, insert the row and commit. Enqueueing comes after."""

import hashlib
import math
import os
import tempfile
from datetime import datetime
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from grader import policies
from grader.assignments import Assignment
from grader.config import Settings
from grader.db import lock_for_write, utcnow
from grader.models import Extension, Submission, User
from grader.uploads import BadUpload, detect_format, unpack


class Refused(Exception):
    """The upload is not accepted and nothing was stored; `reason` says which rule refused it."""

    def __init__(self, reason: str, message: str, *, retry_after: int | None = None):
        # reason: bad_format, bad_upload, not_released, closed, max_submissions, rate_limited
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        super().__init__(message)


def find_extension(session: Session, *, user_id: int, slug: str) -> Extension | None:
    return session.scalar(select(Extension).where(Extension.user_id == user_id, Extension.assignment == slug))


def extension_row(ext: Extension | None, student_id: str) -> policies.ExtensionRow | None:
    """A stored extension as the late policy sees it."""
    if ext is None:
        return None
    return policies.ExtensionRow(
        student_id=student_id, assignment=ext.assignment, due=ext.due, cutoff=ext.cutoff, reason=ext.reason
    )


def deadline(*, session: Session, assignment: Assignment, user_id: int) -> policies.Deadline:
    """The student's due date and cutoff: the assignment's, moved by their extension if any."""
    ext = find_extension(session, user_id=user_id, slug=assignment.slug)
    return policies.deadline_for(assignment, extension_row(ext, str(user_id)))


def stored_filename(filename: str) -> str:
    """The upload's name as stored: its last part, shortened to fit the column by its stem, never its
    extension, from which the worker reads the format again."""
    name = Path(filename).name
    limit = Submission.filename.type.length
    if len(name) <= limit:
        return name
    suffix = Path(name).suffix[:limit]
    return name[: limit - len(suffix)] + suffix


def upload_path(settings: Settings, sha256: str) -> Path:
    return settings.data_dir / "uploads" / sha256[:2] / sha256


def store_upload(settings: Settings, data: bytes) -> str:
    """Write the upload under its content hash (atomically; identical uploads share a file)."""
    digest = hashlib.sha256(data).hexdigest()
    path = upload_path(settings, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return digest


def check_limits(*, session: Session, assignment: Assignment, user_id: int, now: datetime) -> None:
    """A student's uploads, on every path: refuse before the release, past the cutoff, past
    submissions.max, or past submissions.per_hour."""
    if not policies.released(assignment, now):
        # Worded like an unknown slug: students are not told what is coming.
        raise Refused("not_released", f"no assignment {assignment.slug!r}")
    cutoff = deadline(session=session, assignment=assignment, user_id=user_id).cutoff
    if cutoff is not None and now > cutoff:
        raise Refused(
            "closed", f"{assignment.slug} closed at {cutoff.isoformat()}; uploads are no longer accepted"
        )
    policy = assignment.submissions
    if policy.max is None and policy.per_hour is None:
        return
    # Submissions that failed on our side are never charged to the student.
    charged = session.scalars(
        select(Submission.submitted_at).where(
            Submission.user_id == user_id,
            Submission.assignment == assignment.slug,
            or_(Submission.error_kind.is_(None), Submission.error_kind != "infrastructure"),
        )
    ).all()
    hit = policies.submission_limit(policy, charged, now)
    if hit is None:
        return
    if hit.allowed_at is None:
        raise Refused("max_submissions", f"you have used all {policy.max} submissions for {assignment.slug}")
    seconds = max(1, math.ceil((hit.allowed_at - now).total_seconds()))
    raise Refused(
        "rate_limited",
        f"at most {policy.per_hour} submissions per hour for {assignment.slug}; try again in {seconds} s",
        retry_after=seconds,
    )


def create_submission(
    *,
    session: Session,
    settings: Settings,
    assignment: Assignment,
    student: User,
    filename: str,
    data: bytes,
    by_instructor: bool = False,
) -> Submission:
    """Check the upload, store it, insert and commit its row (status queued). Refused stores nothing."""
    # Instructors' uploads (CI smoke runs) ignore the student's release, deadlines and limits.
    if not by_instructor:  # first without a lock: a refused student costs no unpacking
        check_limits(session=session, assignment=assignment, user_id=student.id, now=utcnow())
    try:
        kind = detect_format(filename, data[:64])
    except BadUpload as exc:
        raise Refused(exc.code, exc.message) from exc
    if kind not in assignment.config.formats:
        accepted = " or ".join(f".{fmt}" for fmt in assignment.config.formats)
        raise Refused("bad_format", f"{assignment.slug} accepts {accepted} uploads, not .{kind}")
    try:
        unpack(
            data,
            filename,
            assignment,
            max_bytes=settings.max_unpacked_bytes,
            max_files=settings.max_upload_files,
        )
    except BadUpload as exc:
        raise Refused(exc.code, exc.message) from exc
    # The check that counts, and the insert, one upload of this student at a time: otherwise
    # simultaneous uploads all pass the limits before any of them is inserted.
    lock_for_write(session, select(User.id).where(User.id == student.id))
    try:
        now = utcnow()
        if not by_instructor:
            check_limits(session=session, assignment=assignment, user_id=student.id, now=now)
        digest = store_upload(settings, data)  # before the commit: a committed row always has its file
        submission = Submission(
            user_id=student.id,
            assignment=assignment.slug,
            submitted_at=now,
            sha256=digest,
            filename=stored_filename(filename),
            format=kind,
            queue="gpu" if assignment.sandbox.gpu else "cpu",
            status="queued",
        )
        session.add(submission)
        session.commit()
    except BaseException:
        session.rollback()  # let the next upload in now, not when the request's session closes
        raise
    return submission

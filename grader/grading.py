"""Grade a stored submission: claim it under a lease, run the sandbox, save the result once.

Safe to run twice: claiming is a conditional UPDATE, so a redelivered task for a submission that is
graded, or that a live worker holds, does nothing; and only the lease holder may save a result.
"""

import logging
import threading
from datetime import timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session

from grader import reference, sandbox
from grader.assignments import InvalidAssignment, load_assignment
from grader.config import Settings
from grader.db import session_factory, utcnow
from grader.models import Submission
from grader.results import GradeResult, ungraded
from grader.submissions import upload_path
from grader.uploads import BadUpload, unpack

log = logging.getLogger(__name__)


def claim(*, session: Session, submission_id: str, worker: str, settings: Settings) -> Submission | None:
    """Take the submission if it is queued or its lease expired; None if someone else has it or it is done."""
    now = utcnow()
    taken = session.execute(
        update(Submission)
        .where(
            Submission.id == submission_id,
            or_(
                Submission.status == "queued",
                and_(Submission.status == "running", Submission.lease_until < now),
            ),
        )
        .values(
            status="running",
            worker=worker,
            lease_until=now + timedelta(seconds=settings.lease_s),
            started_at=now,
            finished_at=None,
            attempts=Submission.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return session.get(Submission, submission_id, populate_existing=True) if taken else None


def _held(submission_id: str, worker: str):
    return and_(Submission.id == submission_id, Submission.status == "running", Submission.worker == worker)


def renew(*, session: Session, submission_id: str, worker: str, settings: Settings) -> bool:
    """Extend the lease; False if the worker lost it (the sweeper gave the submission to another)."""
    renewed = session.execute(
        update(Submission)
        .where(_held(submission_id, worker))
        .values(lease_until=utcnow() + timedelta(seconds=settings.lease_s))
    ).rowcount
    session.commit()
    return bool(renewed)


def finish(*, session: Session, submission_id: str, worker: str, result: GradeResult) -> bool:
    """Save the result if this worker still holds the lease; otherwise drop it (someone regrades)."""
    saved = session.execute(
        update(Submission)
        .where(_held(submission_id, worker))
        .values(
            status=result.status,
            score=result.score if result.status == "graded" else None,
            max_score=result.max_score,
            result=result.model_dump(mode="json"),
            error_kind=result.error.kind if result.error and result.status == "error" else None,
            flagged=bool(result.flags),
            finished_at=utcnow(),
            lease_until=None,
        )
    ).rowcount
    session.commit()
    return bool(saved)


def after_failure(
    *, settings: Settings, submission_id: str, worker: str, exc: sandbox.SandboxUnavailable
) -> float | None:
    """After a sandbox failure: seconds until the retry (the submission is queued again), or None when
    the attempts are used up and the submission is stored as an infrastructure error."""
    with session_factory(settings)() as session:
        submission = session.get(Submission, submission_id)
        if submission is None:
            return None
        if submission.attempts >= settings.max_attempts:
            message = f"gave up after {submission.attempts} attempts: {exc.message}"
            finish(
                session=session,
                submission_id=submission_id,
                worker=worker,
                result=ungraded("infrastructure", exc.code, message),
            )
            return None
        delay = settings.retry_backoff_s * 2 ** (submission.attempts - 1)
        session.execute(
            update(Submission)
            .where(_held(submission_id, worker))
            .values(
                status="queued",
                worker=None,
                lease_until=None,
                enqueued_at=utcnow() + timedelta(seconds=delay),
            )
        )
        session.commit()
        return delay


class _Lease:
    """Renews the lease in a thread while grading runs."""

    def __init__(self, settings: Settings, submission_id: str, worker: str):
        self.args = dict(settings=settings, submission_id=submission_id, worker=worker)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"lease-{submission_id[:8]}")

    def _run(self) -> None:
        settings = self.args["settings"]
        while not self.stop.wait(settings.lease_s / 3):
            try:
                with session_factory(settings)() as session:
                    if not renew(session=session, **self.args):
                        return
            except Exception:  # the database hiccuped: try again next round, before the lease runs out
                log.exception("could not renew the lease on %s", self.args["submission_id"])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def grade_submission(
    *, settings: Settings, submission_id: str, worker: str, gpu_ids: list[str] | None = None
) -> str:
    """Grade one submission if it still needs grading. Returns "graded", "error" or "skipped";
    raises SandboxUnavailable (the submission still held) for the caller to retry."""
    with session_factory(settings)() as session:
        submission = claim(session=session, submission_id=submission_id, worker=worker, settings=settings)
        if submission is None:
            return "skipped"
        if submission.attempts > settings.max_attempts:
            # Each attempt died with its worker (a submission that crashes workers, or a crash loop).
            result = ungraded(
                "infrastructure",
                "attempts",
                f"gave up after {settings.max_attempts} attempts; the worker stopped each time",
            )
        else:
            result = _grade(settings, submission, worker, gpu_ids)
        finish(session=session, submission_id=submission_id, worker=worker, result=result)
        return result.status


def _grade(settings: Settings, submission: Submission, worker: str, gpu_ids: list[str] | None) -> GradeResult:
    try:
        assignment = load_assignment(settings.assignments_dir / submission.assignment)
    except InvalidAssignment as exc:
        return ungraded("infrastructure", "assignment", str(exc))
    try:
        data = upload_path(settings, submission.sha256).read_bytes()
    except OSError as exc:
        return ungraded("infrastructure", "upload_missing", f"the stored upload cannot be read: {exc}")
    try:
        unpacked = unpack(
            data,
            submission.filename,
            assignment,
            max_bytes=settings.max_unpacked_bytes,
            max_files=settings.max_upload_files,
        )
    except BadUpload as exc:
        return ungraded("student", exc.code, exc.message)
    labels = {"grader.submission": submission.id, "grader.worker": worker}
    with _Lease(settings, submission.id, worker):
        result = sandbox.grade(assignment, unpacked, settings=settings, labels=labels, gpu_ids=gpu_ids)
        # Arguments changed in place where the reference solution leaves them alone: flagged (the first
        # time, one more run, of the solution; it never fails this grading).
        return reference.flag_mutations(result, assignment, settings=settings, labels=labels, gpu_ids=gpu_ids)

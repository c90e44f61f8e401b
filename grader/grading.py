"""The life of a submission after its insert (submissions.accept inserts it queued and marked sent):
every change to its status, lease and delivery columns, and attempt(), the one grading step that the
Celery task and the embedded threads both call.

    queued --claim--> running --finish--> graded | error
    running --retry_later (sandbox unavailable), take_back (lease expired)--> queued
    any but running --queue_again (a regrade)--> queued, the current grading kept until the new one

Safe to run twice: claiming is a conditional UPDATE, so a redelivered task for a submission that is
graded, or that a live worker holds, does nothing; and only the lease holder may save a result.
`enqueued_at` is set in the commit that queues a submission, just before it is sent by id
(grader.dispatch), and cleared again when no grader took it, for the sweeper to send.
"""

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session

from grader import reference, sandbox, storage
from grader.assignments import InvalidAssignment, load_assignment
from grader.config import Settings
from grader.db import session_factory, utcnow
from grader.models import Grading, Submission
from grader.results import GradeResult, ungraded
from grader.uploads import BadUpload

log = logging.getLogger(__name__)
# Error codes of an upload that could not be graded at all: nothing of it ran, so, as PrairieLearn does,
# it is not charged to the submission limits (submissions.check_limits).
UNGRADABLE = ("syntax",)


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
    """Save the result if this worker still holds the lease; otherwise drop it (someone regrades).

    Every grading is kept (a Grading row). It becomes the current one, whose score the submission shows
    and the gradebook counts, unless the submission was queued for a regrade preview
    (grader.regrades): then the current grading stays until the preview is applied.
    """
    held = session.execute(
        select(Submission.regrade_run_id, Submission.graded_status, Submission.score).where(
            _held(submission_id, worker)
        )
    ).first()
    if held is None:
        session.commit()
        return False
    preview = held.regrade_run_id is not None and held.graded_status is not None
    now = utcnow()
    values: dict = dict(finished_at=now, lease_until=None, regrade_run_id=None)
    if preview:
        values["status"] = held.graded_status
    else:
        values.update(
            status=result.status,
            graded_status=result.status,
            score=result.score if result.status == "graded" else None,
            max_score=result.max_score,
            result=result.model_dump(mode="json"),
            error_kind=result.error.kind if result.error and result.status == "error" else None,
            ungradable=result.error is not None and result.error.code in UNGRADABLE,
            flagged=bool(result.flags),
        )
    saved = session.execute(update(Submission).where(_held(submission_id, worker)).values(**values)).rowcount
    if saved:
        if not preview:
            session.execute(
                update(Grading)
                .where(Grading.submission_id == submission_id, Grading.current.is_(True))
                .values(current=False)
            )
        session.add(
            Grading(
                submission_id=submission_id,
                created_at=now,
                status=result.status,
                score=result.score if result.status == "graded" else None,
                max_score=result.max_score,
                result=result.model_dump(mode="json"),
                error_kind=result.error.kind if result.error and result.status == "error" else None,
                current=not preview,
                current_since=None if preview else now,
                replaced_score=None if preview else held.score,
                replaced_status=None if preview else held.graded_status,
                regrade_run_id=held.regrade_run_id if preview else None,
            )
        )
    session.commit()
    return bool(saved)


def retry_later(*, session: Session, submission_id: str, worker: str, delay: float) -> bool:
    """Give a held submission back to the queue, to be sent again in `delay` seconds."""
    given = session.execute(
        update(Submission)
        .where(_held(submission_id, worker))
        .values(
            status="queued",
            worker=None,
            lease_until=None,
            enqueued_at=utcnow() + timedelta(seconds=delay),
        )
    ).rowcount
    session.commit()
    return bool(given)


def take_back(*, session: Session, submission_ids: list[str], now: datetime) -> int:
    """Queue again those of these submissions whose lease expired before `now` (their worker died or
    hung); they are marked unsent, for the sweeper to send. How many."""
    if not submission_ids:
        return 0
    taken = session.execute(
        update(Submission)
        .where(
            Submission.id.in_(submission_ids),
            Submission.status == "running",
            Submission.lease_until < now,
        )
        .values(status="queued", worker=None, lease_until=None, enqueued_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return taken


def queue_again(
    *, session: Session, submission_ids: list[str], regrade_run_id: int | None = None
) -> list[tuple[str, str]]:
    """Queue these submissions to be graded afresh (not those running now), marked as sent; the (id,
    queue) of each one reset, for the caller to send. Their current grading (score, result) stays until
    the new one is in. With `regrade_run_id` (a preview), only finished submissions are taken, and
    their new grading will not be current."""
    if not submission_ids:
        return []
    query = update(Submission).where(Submission.id.in_(submission_ids), Submission.status != "running")
    if regrade_run_id is not None:
        query = query.where(Submission.status.in_(("graded", "error")))
    reset = session.execute(
        query.values(
            status="queued",
            # What the gradebook counts meanwhile: the current grading's status.
            graded_status=case(
                (Submission.status.in_(("graded", "error")), Submission.status),
                else_=Submission.graded_status,
            ),
            regrade_run_id=regrade_run_id,
            attempts=0,
            enqueued_at=utcnow(),
            started_at=None,
            finished_at=None,
            lease_until=None,
            worker=None,
        )
        .returning(Submission.id, Submission.queue)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return [(row.id, row.queue) for row in reset]


def mark_sent(*, session: Session, submission_ids: list[str]) -> None:
    """Record that these queued submissions are sent now, before the sweeper sends them again."""
    _set_enqueued_at(session, submission_ids, utcnow())


def mark_unsent(*, session: Session, submission_ids: list[str]) -> None:
    """Record that no grader took these queued submissions (the broker was down): the sweeper sends them."""
    _set_enqueued_at(session, submission_ids, None)


def _set_enqueued_at(session: Session, submission_ids: list[str], value: datetime | None) -> None:
    if not submission_ids:
        return
    session.execute(
        update(Submission)
        .where(Submission.id.in_(submission_ids), Submission.status == "queued")
        .values(enqueued_at=value)
    )
    session.commit()


@dataclass(frozen=True)
class Attempt:
    """What attempt() did: "graded", "error", "skipped" (graded already, or held by another worker), or
    "retry" (the sandbox was unavailable: send the submission again in `retry_in` seconds)."""

    status: str
    retry_in: float | None = None
    failure: sandbox.SandboxUnavailable | None = None


def attempt(
    *, settings: Settings, submission_id: str, worker: str, gpu_ids: list[str] | None = None
) -> Attempt:
    """Grade one submission if it still needs grading. When the sandbox is unavailable, give it back to
    the queue with exponential backoff, or, once the attempts are used up, store an infrastructure error."""
    try:
        return Attempt(_claim_and_grade(settings, submission_id, worker, gpu_ids))
    except sandbox.SandboxUnavailable as exc:
        with session_factory(settings)() as session:
            submission = session.get(Submission, submission_id)
            if submission is None:
                return Attempt("skipped")
            if submission.attempts >= settings.max_attempts:
                message = f"gave up after {submission.attempts} attempts: {exc.message}"
                result = ungraded("infrastructure", exc.code, message)
                finish(session=session, submission_id=submission_id, worker=worker, result=result)
                return Attempt("error", failure=exc)
            delay = settings.retry_backoff_s * 2 ** (submission.attempts - 1)
            retry_later(session=session, submission_id=submission_id, worker=worker, delay=delay)
            return Attempt("retry", retry_in=delay, failure=exc)


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


def _claim_and_grade(settings: Settings, submission_id: str, worker: str, gpu_ids: list[str] | None) -> str:
    """ "graded", "error" or "skipped"; raises SandboxUnavailable with the submission still held."""
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
        unpacked = storage.load(
            settings, sha256=submission.sha256, filename=submission.filename, assignment=assignment
        )
    except OSError as exc:
        return ungraded("infrastructure", "upload_missing", f"the stored upload cannot be read: {exc}")
    except BadUpload as exc:
        return ungraded("student", exc.code, exc.message)
    labels = {"grader.submission": submission.id, "grader.worker": worker}
    with _Lease(settings, submission.id, worker):
        result = sandbox.grade(assignment, unpacked, settings=settings, labels=labels, gpu_ids=gpu_ids)
        # Arguments changed in place where the reference solution leaves them alone: flagged (the first
        # time, one more run, of the solution; it never fails this grading).
        return reference.flag_mutations(result, assignment, settings=settings, labels=labels, gpu_ids=gpu_ids)

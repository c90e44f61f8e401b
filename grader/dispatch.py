"""Send committed submissions to their graders, by id: the Celery broker, or the in-process threads."""

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from grader import embedded
from grader.config import Settings
from grader.db import utcnow
from grader.models import Submission
from grader.worker import GRADE_TASK, publisher

log = logging.getLogger(__name__)


def send(*, settings: Settings, submission_id: str, queue: str) -> bool:
    """Hand one submission to a grader; False when the broker could not be reached (the sweeper retries)."""
    if settings.embedded:
        embedded.submit(submission_id)
        return True
    try:
        publisher(settings.broker_url).send_task(GRADE_TASK, args=[submission_id], queue=queue)
    except Exception as exc:  # kombu raises several types for a broker that is down
        log.warning("could not enqueue %s (%s); the sweeper will send it again", submission_id, exc)
        return False
    return True


def enqueue(*, session: Session, settings: Settings, submissions: list[tuple[str, str]]) -> int:
    """Send (id, queue) pairs of committed submissions and record which reached the broker."""
    sent = [sid for sid, queue in submissions if send(settings=settings, submission_id=sid, queue=queue)]
    if sent:
        session.execute(
            update(Submission)
            .where(Submission.id.in_(sent), Submission.status == "queued")
            .values(enqueued_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        session.commit()
    return len(sent)


def regrade(*, session: Session, settings: Settings, submission_ids: list[str]) -> int:
    """Queue submissions to be graded again (not those running now); commits, then enqueues by id."""
    subs = list(
        session.scalars(
            select(Submission).where(Submission.id.in_(submission_ids), Submission.status != "running")
        )
    )
    for sub in subs:
        sub.status, sub.attempts = "queued", 0
        sub.score = sub.max_score = sub.result = sub.error_kind = None
        sub.flagged = False
        sub.enqueued_at = sub.started_at = sub.finished_at = sub.lease_until = None
        sub.worker = None
    session.commit()
    enqueue(session=session, settings=settings, submissions=[(s.id, s.queue) for s in subs])
    return len(subs)

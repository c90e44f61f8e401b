"""Send committed submissions to their graders, by id: the Celery broker, or the in-process threads."""

import base64
import json
import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from grader import embedded
from grader.config import Settings
from grader.db import utcnow
from grader.models import Submission
from grader.worker import GRADE_TASK, QUEUES, publisher

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


def held_by_broker(settings: Settings) -> set[str] | None:
    """The ids of the submissions whose grading task the broker holds: waiting in a queue, or delivered
    to a worker and not yet acknowledged (acks_late: until graded). None when that cannot be known: no
    broker, one that is not Redis, or one that does not answer."""
    if settings.embedded or not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    try:
        with publisher(settings.broker_url).connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)  # a sweep does not wait for a broker that is down
            channel = connection.default_channel
            # kombu's Redis transport: a list per queue and priority, then a hash of the delivered ones.
            # The lists first, as a worker takes a message from them into the hash. A message missed
            # in between is sent twice, which is harmless: grading claims the row, once.
            keys = list(QUEUES)
            keys += [
                f"{queue}{channel.sep}{step}" for queue in QUEUES for step in channel.priority_steps if step
            ]
            messages = [json.loads(raw) for key in keys for raw in channel.client.lrange(key, 0, -1)]
            messages += [json.loads(raw)[0] for raw in channel.client.hvals(channel.unacked_key)]
    except Exception as exc:  # down, or not what we expect: the sweeper falls back to requeue_after_s
        log.warning("cannot read the broker's queues (%s)", exc)
        return None
    return {sid for sid in map(_submission_id, messages) if sid is not None}


def _submission_id(message: dict) -> str | None:
    """The submission a grading task's message is for (Celery's message protocol 2), else None."""
    try:
        if message["headers"]["task"] != GRADE_TASK:
            return None
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


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

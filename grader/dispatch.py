"""Send committed submissions to their graders by id: the Celery broker, or, in the embedded default
(no broker), a queue and a few grading threads in this process. And who is grading: the workers'
heartbeats and the one definition of a live worker.

The embedded threads need no durable queue of their own: a submission queued when the process stops is
still queued in the database, and the sweeper sends it again at the next start.
"""

import base64
import json
import logging
import os
import socket
import threading
from datetime import datetime, timedelta
from queue import Queue

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import grading, pool
from grader.config import Settings
from grader.db import utcnow
from grader.models import Worker
from grader.worker import GRADE_TASK, QUEUES, publisher

log = logging.getLogger(__name__)

_pending: Queue[str] = Queue()  # the embedded threads' queue


def send(*, settings: Settings, submission_id: str, queue: str) -> bool:
    """Hand one submission to a grader; False when the broker could not be reached (the sweeper retries)."""
    if settings.embedded:
        _pending.put(submission_id)
        return True
    try:
        # The args' repr given (for logs and monitors): Celery would build it with its saferepr, a
        # twentieth of the send. For our ids, UUIDs, repr's is the same.
        args = [submission_id]
        shown = repr(args)
        publisher(settings.broker_url).send_task(
            GRADE_TASK, args=args, queue=queue, argsrepr=shown, kwargsrepr="{}"
        )
    except Exception as exc:  # kombu raises several types for a broker that is down
        log.warning("could not enqueue %s (%s); the sweeper will send it again", submission_id, exc)
        return False
    return True


def prepare(settings: Settings) -> None:
    """Import the broker's transport and build the publisher's pools now (no connection yet): otherwise
    the first upload after a start waits for them, about 0.15 s, and in a deadline burst every upload
    queued behind it does too."""
    if settings.embedded:
        return
    try:
        publisher(settings.broker_url).producer_pool  # noqa: B018 (built on first access)
    except Exception as exc:  # the uploads then say so, one by one, as before
        log.warning("cannot prepare the broker %s: %s", settings.broker_url, exc)


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
    """Send (id, queue) pairs of committed submissions, whose commit marked them sent (enqueued_at);
    those no grader took are marked unsent, for the sweeper. How many were sent."""
    failed = [
        sid for sid, queue in submissions if not send(settings=settings, submission_id=sid, queue=queue)
    ]
    grading.mark_unsent(session=session, submission_ids=failed)
    return len(submissions) - len(failed)


# ---- the embedded default's grading threads ------------------------------------------------------------


def start_threads(settings: Settings) -> str:
    """Start the embedded grading threads; returns the worker name they grade under."""
    name = f"embedded@{socket.gethostname()}-{os.getpid()}"
    pool.start(settings)  # one warm pool for the threads (if pool_size > 0)
    for index in range(settings.embedded_workers):
        threading.Thread(
            target=_grade_pending, args=(settings, name), daemon=True, name=f"grader-{index}"
        ).start()
    return name


def _grade_pending(settings: Settings, name: str) -> None:
    while True:
        submission_id = _pending.get()
        try:
            done = grading.attempt(settings=settings, submission_id=submission_id, worker=name)
        except Exception:
            # The submission stays running under a lease that is no longer renewed: the sweeper retries it.
            log.exception("grading %s failed", submission_id)
            continue
        if done.retry_in is not None:
            log.warning(
                "sandbox unavailable for %s (%s); retrying in %.0f s",
                submission_id,
                done.failure,
                done.retry_in,
            )
            timer = threading.Timer(done.retry_in, _pending.put, [submission_id])
            timer.daemon = True
            timer.start()


# ---- who is grading --------------------------------------------------------------------------------------


def heartbeat_s(settings: Settings) -> float:
    """How often a worker records that it is alive."""
    return max(1.0, settings.lease_s / 3)


def live_since(settings: Settings) -> datetime:
    """A worker is live if its last heartbeat is after this: it missed fewer than about three beats."""
    return utcnow() - timedelta(seconds=settings.lease_s)


def beat(*, session: Session, name: str, queues: list[str], gpus: int = 0) -> None:
    """Record that this worker is alive and which queues it serves."""
    worker = session.get(Worker, name) or Worker(name=name, queues=",".join(queues), gpus=gpus)
    worker.seen_at = utcnow()
    session.add(worker)
    session.commit()


# (database URL, queue) -> whether a live worker serves it, and until when that answer holds. Every
# upload's answer asks; in a deadline burst that was one statement in eight (bench/README.md 13, 14).
_served: dict[tuple[str, str], tuple[bool, datetime]] = {}
SERVED_RECHECK = timedelta(seconds=1)


def serving(*, session: Session, settings: Settings, queue: str) -> bool:
    """Whether a live worker serves this queue. The answer is remembered for a second: a worker seen at
    T is live until T + lease_s anyway, and one that starts is seen within the second."""
    key, now = (settings.effective_database_url, queue), utcnow()
    known = _served.get(key)
    if known is not None and known[1] > now:
        return known[0]
    rows = session.execute(select(Worker.queues, Worker.seen_at).where(Worker.seen_at > live_since(settings)))
    seen = [at for queues, at in rows if queue in queues.split(",")]
    if not seen:
        _served[key] = (False, now + SERVED_RECHECK)
        return False
    _served[key] = (True, min(max(seen) + timedelta(seconds=settings.lease_s), now + SERVED_RECHECK))
    return True

"""Nothing accepted is lost: re-enqueue what is stuck, clear dead workers' containers, keep heartbeats.

Runs as a thread in `grader serve` and in every `grader worker`; several sweepers at once are safe
(every change is a conditional UPDATE, and a task sent twice is graded once).
"""

import logging
import threading
from datetime import timedelta

from sqlalchemy import and_, or_, select

from grader import dispatch, engine, grading, similarity_jobs
from grader.config import Settings
from grader.db import session_factory, utcnow
from grader.models import Submission

log = logging.getLogger(__name__)

# A submission committed this recently may still be on its way to the broker from the request.
SEND_GRACE_S = 5
# Containers of submissions finished this recently are looked for (and removed) on every sweep.
FINISHED_WINDOW = timedelta(hours=6)


def _remove_containers(settings: Settings, submission_ids: list[str]) -> None:
    if not submission_ids:
        return
    try:
        removed = engine.remove_orphans(settings=settings, submission_ids=set(submission_ids))
        if removed:
            log.warning("removed %d container(s) left behind by stopped workers", removed)
    except Exception as exc:  # no engine here (an API-only host) or it is down: try again next sweep
        log.warning("could not look for orphaned containers: %s", exc)


def sweep(*, settings: Settings) -> dict[str, int]:
    """One pass: take submissions back from workers whose lease expired, send again what never reached
    a broker or what the broker lost, remove containers nobody owns."""
    now = utcnow()
    with session_factory(settings)() as session:
        expired = list(
            session.scalars(
                select(Submission.id).where(Submission.status == "running", Submission.lease_until < now)
            )
        )
        finished = session.scalars(
            select(Submission.id).where(
                Submission.status.in_(("graded", "error")), Submission.finished_at > now - FINISHED_WINDOW
            )
        ).all()
        # Expired: their worker is gone (or hung), so their containers go before someone else grades
        # them. Finished: nobody needs theirs. One listing of the engine's containers for both.
        _remove_containers(settings, [*expired, *finished])
        requeued = grading.take_back(session=session, submission_ids=expired, now=now)

        settled = now - timedelta(seconds=SEND_GRACE_S)
        waiting = session.execute(
            select(Submission.id, Submission.queue, Submission.enqueued_at).where(
                Submission.status == "queued",
                or_(
                    and_(Submission.enqueued_at.is_(None), Submission.submitted_at < settled),
                    Submission.enqueued_at < settled,
                ),
            )
        ).all()
        # Sent ones are sent again when the broker no longer holds their task (a Redis restart or
        # flush loses its queues); when that cannot be known, once they have waited requeue_after_s.
        held = dispatch.held_by_broker(settings) if any(row.enqueued_at for row in waiting) else None
        long_ago = now - timedelta(seconds=settings.requeue_after_s)
        stale = [
            (row.id, row.queue)
            for row in waiting
            if row.enqueued_at is None
            or (row.id not in held if held is not None else row.enqueued_at < long_ago)
        ]
        grading.mark_sent(session=session, submission_ids=[sid for sid, _ in stale])
        sent = dispatch.enqueue(session=session, settings=settings, submissions=stale)

    try:
        similarity_jobs.after_cutoff(settings=settings)
    except Exception:  # a similarity report is never worth a sweep: grading goes on
        log.exception("could not ask for the similarity reports due after a cutoff")

    if requeued or stale:
        log.info(
            "sweep: %d lease(s) expired, %d of %d stuck submission(s) sent again", requeued, sent, len(stale)
        )
    return {"expired": requeued, "stale": len(stale), "sent": sent}


def run(
    *,
    settings: Settings,
    stop: threading.Event,
    worker: str | None = None,
    queues: list[str] = (),
    gpus: int = 0,
) -> None:
    """Sweep every sweep_interval_s and, for a worker, beat every heartbeat_s, until `stop` is set."""
    next_sweep = 0.0
    clock = 0.0
    tick = min(dispatch.heartbeat_s(settings), settings.sweep_interval_s)
    while True:
        try:
            if worker:
                with session_factory(settings)() as session:
                    dispatch.beat(session=session, name=worker, queues=list(queues), gpus=gpus)
            if clock >= next_sweep:
                sweep(settings=settings)
                next_sweep = clock + settings.sweep_interval_s
        except Exception:  # the database or broker is down: keep trying, never die
            log.exception("sweeper pass failed")
        if stop.wait(tick):
            return
        clock += tick


def start(
    *, settings: Settings, worker: str | None = None, queues: list[str] = (), gpus: int = 0
) -> threading.Event:
    """Run the sweeper in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(
        target=run,
        kwargs=dict(settings=settings, stop=stop, worker=worker, queues=queues, gpus=gpus),
        daemon=True,
        name="grader-sweeper",
    ).start()
    return stop

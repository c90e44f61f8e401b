"""Celery tasks: thin wrappers over grader.grading, plus the worker's start-up hooks."""

import logging

from billiard.process import current_process
from celery import signals

from grader import db, grading, pool, similarity_jobs, sweeper
from grader.config import get_settings
from grader.worker import GRADE_TASK, app

log = logging.getLogger(__name__)

# Set in each pool process of a GPU worker: the one GPU its sandboxes get.
_gpu_ids: list[str] | None = None


@app.task(name=GRADE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def grade(self, submission_id: str) -> str:
    """Grade one submission by id; retried with backoff only when the sandbox is unavailable."""
    worker = self.request.hostname or "celery"
    done = grading.attempt(
        settings=get_settings(), submission_id=submission_id, worker=worker, gpu_ids=_gpu_ids
    )
    if done.retry_in is not None:
        raise self.retry(exc=done.failure, countdown=done.retry_in, max_retries=None)
    return done.status


@app.task(name=similarity_jobs.SIMILARITY_TASK, acks_late=True, reject_on_worker_lost=True)
def similarity(slug: str, job_id: str) -> str:
    """Build one assignment's similarity report (grader.similarity_jobs); a job run twice is run once."""
    return similarity_jobs.run(settings=get_settings(), slug=slug, job_id=job_id)


@signals.worker_process_init.connect
def _in_pool_process(**_) -> None:
    global _gpu_ids
    db.after_fork()
    gpus = int(app.conf.get("grader_gpus") or 0)
    if gpus:
        # billiard numbers pool processes 0..N-1 and gives a replacement its predecessor's number.
        index = getattr(current_process(), "index", 0) or 0
        _gpu_ids = [str(index % gpus)]
        log.info("pool process %d grades on GPU %s", index, _gpu_ids[0])
    else:
        pool.start(get_settings())  # warm sandboxes (if pool_size > 0); GPU sandboxes are never pooled


@signals.worker_process_shutdown.connect
def _pool_process_ends(**_) -> None:
    pool.stop()


@signals.worker_ready.connect
def _worker_ready(sender, **_) -> None:
    settings = get_settings()
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else ["cpu"]
    # Take back what dead workers left (their expired leases, their containers) before grading anything.
    try:
        sweeper.sweep(settings=settings)
    except Exception:  # the database is down: the sweeper thread keeps trying
        log.exception("first sweep failed")
    sweeper.start(
        settings=settings, worker=sender.hostname, queues=queues, gpus=int(app.conf.get("grader_gpus") or 0)
    )

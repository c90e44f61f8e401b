"""Grading inside the API process, for the embedded default (no broker): a queue and a few threads.

The database row is the source of truth, as with Celery: a submission the threads never reached
(the process stopped) is still queued in the database and the sweeper sends it again at the next start.
"""

import logging
import os
import queue
import socket
import threading

from grader import grading, sandbox
from grader.config import Settings

log = logging.getLogger(__name__)

_pending: queue.Queue[str] = queue.Queue()


def worker_name() -> str:
    return f"embedded@{socket.gethostname()}-{os.getpid()}"


def submit(submission_id: str) -> None:
    _pending.put(submission_id)


def _run(settings: Settings, name: str) -> None:
    while True:
        submission_id = _pending.get()
        try:
            grading.grade_submission(settings=settings, submission_id=submission_id, worker=name)
        except sandbox.SandboxUnavailable as exc:
            delay = grading.after_failure(
                settings=settings, submission_id=submission_id, worker=name, exc=exc
            )
            if delay is not None:
                log.warning("sandbox unavailable for %s (%s); retrying in %.0f s", submission_id, exc, delay)
                timer = threading.Timer(delay, submit, [submission_id])
                timer.daemon = True
                timer.start()
        except Exception:
            # The submission stays running under a lease that is no longer renewed: the sweeper retries it.
            log.exception("grading %s failed", submission_id)


def start(settings: Settings) -> str:
    """Start the grading threads; returns the worker name they grade under."""
    name = worker_name()
    for index in range(settings.embedded_workers):
        threading.Thread(target=_run, args=(settings, name), daemon=True, name=f"grader-{index}").start()
    return name

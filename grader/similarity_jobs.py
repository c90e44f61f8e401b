"""Similarity reports as background jobs: asked for by an instructor, `grader similarity`, or the sweeper
once an assignment's last cutoff has passed; run by a Celery worker, or on the embedded default by a
thread of this process. Their state and the last report are files under the data dir, which the API
and the workers share already (uploads):

    data_dir/similarity/<slug>/job.json      the last job: queued, running (with its progress), done, failed
    data_dir/similarity/<slug>/report.json   the last finished report (grader.similarity.Report)
    data_dir/similarity/<slug>/cutoff        the automatic run after the cutoff was asked for (once)

Nothing here is shown to students: only the instructor's pages and the CLI read these files.
"""

import functools
import logging
import os
import tempfile
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from queue import Queue
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select

from grader import catalog, similarity
from grader.config import Settings
from grader.db import session_factory, utcnow
from grader.models import Submission

log = logging.getLogger(__name__)

SIMILARITY_TASK = "grader.similarity"
# A running job that has not reported progress for this long died with its worker: it may be asked again.
STALE_AFTER_S = 600
# Progress is written at most this often.
PROGRESS_EVERY_S = 0.5


class Job(BaseModel):
    id: str
    slug: str
    status: Literal["queued", "running", "done", "failed"]
    trigger: str
    requested_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    stage: str = ""
    done: int = 0
    total: int = 0
    error: str = ""

    def alive(self, settings: Settings, now: datetime | None = None) -> bool:
        """Queued or running, and not left behind by a dead worker or a lost message."""
        now = now or utcnow()
        if self.status == "queued":
            return now - self.requested_at < timedelta(seconds=settings.requeue_after_s)
        if self.status == "running":
            return now - (self.heartbeat_at or self.requested_at) < timedelta(seconds=STALE_AFTER_S)
        return False

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


def folder(settings: Settings, slug: str) -> Path:
    return settings.data_dir / "similarity" / slug


def _replace(path: Path, text: str) -> None:
    """Write the file atomically: a reader sees the old one or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_job(settings: Settings, slug: str) -> Job | None:
    """The assignment's last job, if any."""
    try:
        return Job.model_validate_json((folder(settings, slug) / "job.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _save(settings: Settings, job: Job) -> None:
    _replace(folder(settings, job.slug) / "job.json", job.model_dump_json())


def load_report(settings: Settings, slug: str) -> similarity.Report | None:
    """The assignment's last finished report, if any."""
    path = folder(settings, slug) / "report.json"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    return _parsed(path, stamp)


@functools.lru_cache(maxsize=4)
def _parsed(path: Path, stamp: int) -> similarity.Report | None:
    # A report is a few MB of JSON: read once per version, not once per page.
    try:
        return similarity.Report.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def save_report(settings: Settings, report: similarity.Report) -> None:
    """Store the report as the assignment's last one."""
    _replace(folder(settings, report.slug) / "report.json", report.model_dump_json())


def archive_for(settings: Settings, slug: str) -> Path:
    """The folder of earlier terms' submissions to this assignment (it need not exist)."""
    return settings.similarity_archive_root / slug


# ---- asking ----------------------------------------------------------------------------------------------


def request(*, settings: Settings, slug: str, trigger: str) -> Job:
    """Ask for a new report of the assignment; the job already on its way if there is one. A job whose
    message could not reach the broker is returned failed, saying so."""
    current = read_job(settings, slug)
    if current is not None and current.alive(settings):
        return current
    job = Job(id=str(uuid.uuid4()), slug=slug, status="queued", trigger=trigger, requested_at=utcnow())
    _save(settings, job)
    if settings.embedded:
        _embedded_queue().put((settings, slug, job.id))
        return job
    from grader.worker import publisher

    try:
        publisher(settings.broker_url).send_task(SIMILARITY_TASK, args=[slug, job.id], queue="cpu")
    except Exception as exc:  # kombu raises several types for a broker that is down
        log.warning("could not enqueue the similarity report of %s (%s)", slug, exc)
        job.status, job.error, job.finished_at = "failed", f"the job queue is unreachable: {exc}", utcnow()
        _save(settings, job)
    return job


def after_cutoff(*, settings: Settings) -> list[str]:
    """Ask, once per assignment, for the report after its last cutoff (extensions included), once nothing
    of it waits to be graded and two students or more submitted; the slugs asked for. Safe in several
    sweepers at once: the marker file is created by one of them only."""
    asked = []
    now = utcnow()
    with session_factory(settings)() as session:
        for slug, assignment in catalog.current(session=session, settings=settings).items():
            marker = folder(settings, slug) / "cutoff"
            if marker.exists():
                job = read_job(settings, slug)
                # Asked, but lost: the embedded process stopped with it queued, or its worker died.
                if (
                    job
                    and job.trigger == "cutoff"
                    and job.status in ("queued", "running")
                    and not job.alive(settings)
                ):
                    if request(settings=settings, slug=slug, trigger="cutoff").status != "failed":
                        asked.append(slug)
                continue
            cutoff = similarity.last_cutoff(session=session, assignment=assignment)
            if cutoff is None or cutoff > now:
                continue
            pending, students = session.execute(
                select(
                    func.count().filter(Submission.status.in_(("queued", "running"))),
                    func.count(func.distinct(Submission.user_id)),
                ).where(Submission.assignment == slug)
            ).one()
            if pending or students < 2:  # grading goes on, or there is nothing to compare
                continue
            marker.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            job = request(settings=settings, slug=slug, trigger="cutoff")
            if job.status == "failed":
                marker.unlink(missing_ok=True)  # the next sweep asks again
                continue
            asked.append(slug)
    if asked:
        log.info("similarity reports asked for after the cutoff: %s", ", ".join(asked))
    return asked


# ---- running ---------------------------------------------------------------------------------------------


def run(*, settings: Settings, slug: str, job_id: str, archive: Path | None = None) -> str:
    """Build the report a job asked for and store it; the job's final status. A job that is no longer
    the assignment's latest, or finished already (a message delivered twice), is left alone."""
    job = read_job(settings, slug)
    if job is None or job.id != job_id or job.status in ("done", "failed"):
        return "skipped"
    now = utcnow()
    job.status, job.started_at, job.heartbeat_at, job.stage = "running", now, now, "starting"
    _save(settings, job)
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        moment = utcnow()
        if stage == job.stage and (moment.timestamp() - last[0]) < PROGRESS_EVERY_S and done < total:
            return
        last[0] = moment.timestamp()
        job.stage, job.done, job.total, job.heartbeat_at = stage, done, total, moment
        _save(settings, job)

    try:
        with session_factory(settings)() as session:
            assignment = catalog.current(session=session, settings=settings).get(slug)
            if assignment is None:
                raise LookupError(f"there is no assignment {slug!r}")
            report = similarity.build(
                session=session,
                settings=settings,
                assignment=assignment,
                archive=archive or archive_for(settings, slug),
                trigger=job.trigger,
                progress=progress,
            )
        save_report(settings, report)
        job.status = "done"
    except Exception as exc:
        log.exception("the similarity report of %s failed", slug)
        job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
    job.finished_at = job.heartbeat_at = utcnow()
    _save(settings, job)
    return job.status


# ---- the embedded default: one thread runs the jobs, one at a time ---------------------------------------

_queue: Queue[tuple[Settings, str, str]] | None = None
_lock = threading.Lock()


def _embedded_queue() -> Queue[tuple[Settings, str, str]]:
    global _queue
    with _lock:
        if _queue is None:
            _queue = Queue()
            threading.Thread(
                target=_run_queued, args=(_queue,), daemon=True, name="grader-similarity"
            ).start()
        return _queue


def _run_queued(queue: Queue[tuple[Settings, str, str]]) -> None:
    while True:
        settings, slug, job_id = queue.get()
        try:
            run(settings=settings, slug=slug, job_id=job_id)
        except Exception:  # run() records its own failures; this is a bug, and the thread must live on
            log.exception("similarity job %s of %s", job_id, slug)

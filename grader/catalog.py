"""The assignments the service serves: the folders under settings.assignments_dir.

`sync` validates every folder and records them in the `assignments` table; each process keeps the
loaded folders and reloads them when a later sync (from `grader assignments sync`) is recorded,
which it reads at most once a second.
Smoke runs (`grader smoke`: the reference solution through the service) are recorded here too.
"""

import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grader.assignments import Assignment, load_all
from grader.config import Settings
from grader.db import utcnow
from grader.models import AssignmentRecord, SmokeRun

# Per assignments folder: the sync stamp the assignments were loaded at, and the assignments.
_loaded: dict[Path, tuple[object, dict[str, Assignment]]] = {}
# Per assignments folder: until when (time.monotonic) the stamp need not be read again. Every request
# reads the assignments; in a deadline burst that was one statement in eight (bench/README.md 14).
_fresh_until: dict[Path, float] = {}
STAMP_RECHECK_S = 1.0


def sync(*, session: Session, settings: Settings) -> dict[str, Assignment]:
    """Load and validate every folder (InvalidAssignment on the first bad one) and record them."""
    assignments = load_all(settings.assignments_dir)
    now = utcnow()
    records = {record.slug: record for record in session.scalars(select(AssignmentRecord))}
    for slug, assignment in assignments.items():
        record = records.pop(slug, None) or AssignmentRecord(slug=slug)
        record.title = assignment.title
        record.due = assignment.due
        record.cutoff = assignment.late.cutoff
        record.weight = assignment.config.weight
        record.gpu = assignment.sandbox.gpu
        record.config = assignment.config.model_dump(mode="json")
        record.active = True
        record.synced_at = now
        session.add(record)
    for record in records.values():  # the folder is gone; its submissions stay
        record.active = False
        record.synced_at = now
    session.commit()
    _loaded[settings.assignments_dir] = (now, assignments)
    return assignments


def current(*, session: Session, settings: Settings) -> dict[str, Assignment]:
    """The assignments by slug, reloaded from disk when a sync happened since they were loaded (a sync
    in this process at once, one in another within a second)."""
    folder, now = settings.assignments_dir, time.monotonic()
    cached = _loaded.get(folder)
    if cached is not None and _fresh_until.get(folder, 0.0) > now:
        return cached[1]
    stamp = session.scalar(select(func.max(AssignmentRecord.synced_at)))
    if cached is None or (stamp is not None and cached[0] != stamp):
        cached = (stamp, load_all(folder))
        _loaded[folder] = cached
    _fresh_until[folder] = now + STAMP_RECHECK_S
    return cached[1]


def record_smoke(*, session: Session, slug: str, passed: bool, detail: str) -> SmokeRun:
    """Store the outcome of one smoke run of an assignment, and commit."""
    run = SmokeRun(assignment=slug, passed=passed, detail=detail[:4000])
    session.add(run)
    session.commit()
    return run


def last_smoke(*, session: Session, slug: str) -> SmokeRun | None:
    """The assignment's latest smoke run, if any."""
    return session.scalar(
        select(SmokeRun).where(SmokeRun.assignment == slug).order_by(SmokeRun.at.desc()).limit(1)
    )

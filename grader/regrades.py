"""Regrade all, previewed: grade every finished submission of an assignment again into gradings that are
not current, show what would change (up, down, by how much, per test, students named), then apply.

While a preview runs, each submission keeps its current grading (score, result, what the gradebook
counts). Uploads that arrive meanwhile are graded as usual, with the tests as they are now, and are not
in the preview. A submission regraded on its own during the preview (or whose preview grading was
overtaken by a newer current grading) keeps that newer grading: applying skips it and says so.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from grader import dispatch, grading
from grader.config import Settings
from grader.db import utcnow
from grader.models import Grading, RegradeRun, Submission, User


class RegradeConflict(Exception):
    """The preview cannot be started, applied or discarded in its state; nothing changed."""


def open_run(session: Session, *, slug: str) -> RegradeRun | None:
    """The assignment's open preview, if any."""
    return session.scalar(
        select(RegradeRun).where(RegradeRun.assignment == slug, RegradeRun.state == "open").limit(1)
    )


def start_preview(*, session: Session, settings: Settings, slug: str, by: User) -> RegradeRun:
    """Queue every finished submission of the assignment for a preview grading; commits, then sends them."""
    if open_run(session, slug=slug) is not None:
        raise RegradeConflict("a regrade preview of this assignment is open: apply or discard it first")
    run = RegradeRun(assignment=slug, created_by=by.id, created_at=utcnow(), state="open", total=0)
    session.add(run)
    session.flush()
    chosen = list(
        session.scalars(
            select(Submission.id).where(
                Submission.assignment == slug, Submission.status.in_(("graded", "error"))
            )
        )
    )
    reset = grading.queue_again(session=session, submission_ids=chosen, regrade_run_id=run.id)
    run.total = len(reset)
    session.commit()
    dispatch.enqueue(session=session, settings=settings, submissions=reset)
    return run


def pending(session: Session, *, run: RegradeRun) -> int:
    """The run's submissions not graded yet."""
    return session.scalar(select(func.count()).where(Submission.regrade_run_id == run.id)) or 0


@dataclass(frozen=True)
class TestShift:
    __test__ = False

    name: str
    now_pass: list[str] = field(default_factory=list)  # logins that fail it now and pass it after
    now_fail: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScoreChange:
    login: str
    name: str
    submission_id: str
    before: float | None  # None: no score (an error)
    after: float | None
    before_status: str | None
    after_status: str
    stale: bool  # a newer current grading came in since the preview began: applying skips it

    @property
    def delta(self) -> float:
        return (self.after or 0) - (self.before or 0)


@dataclass
class Preview:
    run: RegradeRun
    pending: int
    graded: int
    changes: list[ScoreChange]  # only the submissions whose score changes
    unchanged: int
    tests: list[TestShift]

    @property
    def up(self) -> list[ScoreChange]:
        return [c for c in self.changes if c.delta > 0]

    @property
    def down(self) -> list[ScoreChange]:
        return [c for c in self.changes if c.delta < 0]

    @property
    def ready(self) -> bool:
        return self.run.state == "open" and self.pending == 0


def _outcomes(result: dict | None) -> dict[str, bool]:
    return {t["name"]: t["outcome"] == "passed" for t in (result or {}).get("tests", [])}


def _stale(current: Grading | None, run: RegradeRun) -> bool:
    return (
        current is not None and current.current_since is not None and current.current_since > run.created_at
    )


def preview(session: Session, *, run: RegradeRun) -> Preview:
    """What applying the run would change, against the current gradings."""
    rows = session.execute(
        select(Grading, Submission, User)
        .join(Submission, Submission.id == Grading.submission_id)
        .join(User, User.id == Submission.user_id)
        .where(Grading.regrade_run_id == run.id)
        .order_by(User.login, Submission.submitted_at)
    ).all()
    currents = {
        g.submission_id: g
        for g in session.scalars(
            select(Grading).where(
                Grading.submission_id.in_([sub.id for _, sub, _ in rows]), Grading.current.is_(True)
            )
        )
    }
    changes, unchanged = [], 0
    gained: dict[str, list[str]] = defaultdict(list)
    lost: dict[str, list[str]] = defaultdict(list)
    for new, sub, user in rows:
        old = currents.get(sub.id)
        before = old.score if old else None
        if (new.score, new.status) != (before, old.status if old else None):
            changes.append(
                ScoreChange(
                    login=user.login,
                    name=user.name,
                    submission_id=sub.id,
                    before=before,
                    after=new.score,
                    before_status=old.status if old else None,
                    after_status=new.status,
                    stale=_stale(old, run),
                )
            )
        else:
            unchanged += 1
        was, now = _outcomes(old.result if old else None), _outcomes(new.result)
        for name in was.keys() | now.keys():
            if now.get(name) and not was.get(name):
                gained[name].append(user.login)
            elif was.get(name) and not now.get(name):
                lost[name].append(user.login)
    tests = [
        TestShift(name, gained.get(name, []), lost.get(name, []))
        for name in sorted(gained.keys() | lost.keys())
    ]
    return Preview(run, pending(session, run=run), len(rows), changes, unchanged, tests)


@dataclass(frozen=True)
class Applied:
    applied: int
    skipped: int  # overtaken by a newer current grading


def apply(*, session: Session, run: RegradeRun, by: User, now: datetime | None = None) -> Applied:
    """Make the run's gradings current (not those overtaken since), and commit. RegradeConflict while
    some are still being graded, or when the run is closed."""
    if run.state != "open":
        raise RegradeConflict(f"this regrade preview was {run.state} already")
    if pending(session, run=run):
        raise RegradeConflict("some submissions of this preview are still being graded")
    now = now or utcnow()
    applied = skipped = 0
    for new in session.scalars(
        select(Grading).where(Grading.regrade_run_id == run.id, Grading.current.is_(False))
    ):
        old = session.scalar(
            select(Grading).where(Grading.submission_id == new.submission_id, Grading.current.is_(True))
        )
        sub = session.get(Submission, new.submission_id)
        if _stale(old, run) or sub is None or sub.status in ("queued", "running"):
            skipped += 1  # a newer grading is current, or one is on its way
            continue
        if old is not None:
            old.current = False
        new.current, new.current_since = True, now
        new.replaced_score, new.replaced_status = (old.score, old.status) if old else (None, None)
        session.execute(
            update(Submission)
            .where(Submission.id == sub.id)
            .values(
                status=new.status,
                graded_status=new.status,
                score=new.score,
                max_score=new.max_score,
                result=new.result,
                error_kind=new.error_kind,
                flagged=bool((new.result or {}).get("flags")),
            )
        )
        applied += 1
    run.state, run.closed_at, run.closed_by = "applied", now, by.id
    session.commit()
    return Applied(applied, skipped)


def discard(*, session: Session, run: RegradeRun, by: User) -> int:
    """Close the run without applying it: its gradings stay in the history, never current; submissions
    still queued for it are taken out (they keep their current grading). Commits; how many were queued."""
    if run.state != "open":
        raise RegradeConflict(f"this regrade preview was {run.state} already")
    left = session.execute(
        update(Submission)
        .where(Submission.regrade_run_id == run.id, Submission.status == "queued")
        .values(status=Submission.graded_status, regrade_run_id=None, enqueued_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    run.state, run.closed_at, run.closed_by = "discarded", utcnow(), by.id
    session.commit()
    return left


def runs(session: Session, *, slug: str, limit: int = 20) -> list[RegradeRun]:
    """The assignment's previews, newest first."""
    return list(
        session.scalars(
            select(RegradeRun)
            .where(RegradeRun.assignment == slug)
            .order_by(RegradeRun.id.desc())
            .limit(limit)
        )
    )


def history(session: Session, *, submission_id: str) -> list[Grading]:
    """Every grading of one submission, newest first."""
    return list(
        session.scalars(
            select(Grading).where(Grading.submission_id == submission_id).order_by(Grading.id.desc())
        )
    )


def last_regrade(session: Session, *, submission_id: str) -> Grading | None:
    """The current grading when it replaced an earlier one (the student is told "regraded on ...")."""
    current = session.scalar(
        select(Grading).where(Grading.submission_id == submission_id, Grading.current.is_(True))
    )
    return current if current is not None and current.replaced_status is not None else None

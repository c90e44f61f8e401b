"""The life of a submission as plain functions on PostgreSQL, no Docker: accepted (unpacked once), claimed
under a lease, graded, retried after a sandbox failure, taken back when its lease expires, sent again by
the sweeper. The sandbox is replaced by a function; the rows are committed (grading opens its own
sessions), and the tables are emptied after each test.
"""

import tarfile
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, update

from grader import auth, catalog, dispatch, engine, grading, sandbox, storage, submissions, sweeper
from grader.assignments import load_assignment
from grader.config import Settings
from grader.db import session_factory
from grader.models import AssignmentRecord, Grading, Submission, Worker
from grader.results import GradeResult, TestResult
from tests.fixtures.services import zip_of

PASSES = zip_of({"submission.py": "def add(a, b):\n    return a + b\n", "data/notes.txt": "hello"})
FULL_MARKS = GradeResult(
    status="graded",
    score=1,
    max_score=1,
    tests=[TestResult(name="test_add", points=1, max_points=1, outcome="passed")],
)


@pytest.fixture
def settings(tmp_path, course, committed_pg) -> Settings:
    # No broker: sending puts the id on the in-process queue, which no thread consumes here.
    return Settings(
        database_url=committed_pg,
        broker_url="",
        data_dir=tmp_path / "data",
        assignments_dir=course,
        max_attempts=3,
        retry_backoff_s=10,
    )


@pytest.fixture
def session(settings):
    with session_factory(settings)() as session:
        yield session


@pytest.fixture
def graded_by(monkeypatch):
    """Replace the sandbox: it returns full marks and records the files it was given."""
    seen: list[dict[str, bytes]] = []

    def grade(assignment, unpacked, **_):
        seen.append(unpacked.files)
        return FULL_MARKS

    monkeypatch.setattr(sandbox, "grade", grade)
    return seen


def upload(session, settings, data: bytes = PASSES) -> Submission:
    student = auth.get_or_create_user(session=session, login="s1", role="student")
    session.commit()
    return submissions.accept(
        session=session,
        settings=settings,
        assignment=load_assignment(settings.assignments_dir / "add-one"),
        student=student,
        filename="hw.zip",
        data=data,
    ).submission


def form_path(settings, sub: Submission):
    """Where the upload's unpacked form for add-one, as it is now, is kept."""
    return storage.unpacked_path(settings, sub.sha256, load_assignment(settings.assignments_dir / "add-one"))


def row(session, submission_id: str) -> Submission:
    return session.get(Submission, submission_id, populate_existing=True)


# ---- accepted, then graded from what the upload check unpacked ------------------------------------------


def test_an_upload_is_unpacked_once_and_graded_from_that(session, settings, graded_by, monkeypatch):
    sub = upload(session, settings)
    assert form_path(settings, sub).is_file()

    def unpack_again(*_, **__):
        raise AssertionError("the worker unpacked the upload again")

    monkeypatch.setattr(storage, "unpack", unpack_again)
    done = grading.attempt(settings=settings, submission_id=sub.id, worker="w1")
    assert done == grading.Attempt("graded")
    assert graded_by == [{"submission.py": b"def add(a, b):\n    return a + b\n", "data/notes.txt": b"hello"}]
    sub = row(session, sub.id)
    assert (sub.status, sub.score, sub.attempts, sub.lease_until) == ("graded", 1, 1, None)


@pytest.mark.parametrize("form", ["missing", "torn", "cut_between_files"])
def test_an_upload_without_a_readable_unpacked_form_is_unpacked_at_grading(
    session, settings, graded_by, form
):
    """Uploads stored by an older version have no unpacked form; a crash may leave one unreadable."""
    sub = upload(session, settings)
    path = form_path(settings, sub)
    if form == "missing":
        path.unlink()
    elif form == "torn":
        path.write_bytes(path.read_bytes()[:100])
    else:
        with tarfile.open(path) as tar:
            second = tar.getmembers()[1].offset
        path.write_bytes(path.read_bytes()[:second])
    assert grading.attempt(settings=settings, submission_id=sub.id, worker="w1").status == "graded"
    assert graded_by[0]["data/notes.txt"] == b"hello"


def test_an_upload_is_unpacked_again_for_tests_changed_since(session, settings, graded_by, monkeypatch):
    """How a zip unpacks depends on the tests (a package they import is not unwrapped)."""
    sub = upload(session, settings)
    unpacked_again = []
    unpack = storage.unpack
    monkeypatch.setattr(storage, "unpack", lambda *a, **k: unpacked_again.append(1) or unpack(*a, **k))
    test_file = settings.assignments_dir / "add-one" / "tests" / "test_x.py"
    test_file.write_text(test_file.read_text() + "\n# fixed\n")
    assert grading.attempt(settings=settings, submission_id=sub.id, worker="w1").status == "graded"
    assert unpacked_again == [1] and "submission.py" in graded_by[0]


def test_a_lost_upload_is_an_infrastructure_error(session, settings, graded_by):
    sub = upload(session, settings)
    storage.upload_path(settings, sub.sha256).unlink()
    form_path(settings, sub).unlink()
    assert grading.attempt(settings=settings, submission_id=sub.id, worker="w1").status == "error"
    sub = row(session, sub.id)
    assert (sub.error_kind, sub.result["error"]["code"]) == ("infrastructure", "upload_missing")
    assert graded_by == []


# ---- claimed under a lease ------------------------------------------------------------------------------


def test_a_submission_is_claimed_once_and_only_its_holder_saves_the_result(session, settings):
    sub = upload(session, settings)
    claimed = grading.claim(session=session, submission_id=sub.id, worker="w1", settings=settings)
    assert (claimed.status, claimed.worker, claimed.attempts) == ("running", "w1", 1)
    assert claimed.lease_until > datetime.now(UTC) + timedelta(seconds=settings.lease_s - 5)
    assert grading.claim(session=session, submission_id=sub.id, worker="w2", settings=settings) is None
    assert grading.renew(session=session, submission_id=sub.id, worker="w2", settings=settings) is False
    assert grading.finish(session=session, submission_id=sub.id, worker="w2", result=FULL_MARKS) is False
    assert grading.finish(session=session, submission_id=sub.id, worker="w1", result=FULL_MARKS) is True
    assert row(session, sub.id).status == "graded"
    # A redelivered task for a graded submission does nothing.
    assert grading.attempt(settings=settings, submission_id=sub.id, worker="w2") == grading.Attempt("skipped")


def test_an_expired_lease_is_taken_back_by_the_sweep_and_the_old_holder_cannot_save(
    session, settings, monkeypatch
):
    removed: list[set[str]] = []
    monkeypatch.setattr(
        engine, "remove_orphans", lambda *, settings, submission_ids: removed.append(submission_ids)
    )
    sub = upload(session, settings)
    grading.claim(session=session, submission_id=sub.id, worker="dead", settings=settings)
    assert sweeper.sweep(settings=settings)["expired"] == 0  # the lease still runs
    session.execute(
        update(Submission).values(
            lease_until=datetime.now(UTC) - timedelta(seconds=1),
            submitted_at=datetime.now(UTC) - timedelta(minutes=1),
        )
    )
    session.commit()
    assert sweeper.sweep(settings=settings) == {"expired": 1, "stale": 1, "sent": 1}
    assert sub.id in removed[-1]  # the dead worker's containers go before anyone grades it again
    sub = row(session, sub.id)
    assert (sub.status, sub.worker, sub.lease_until) == ("queued", None, None)
    assert sub.enqueued_at is not None  # sent again in the same sweep
    assert grading.claim(session=session, submission_id=sub.id, worker="w2", settings=settings) is not None
    assert grading.finish(session=session, submission_id=sub.id, worker="dead", result=FULL_MARKS) is False
    assert row(session, sub.id).attempts == 2


def test_a_running_submission_whose_lease_expired_can_be_claimed_directly(session, settings):
    sub = upload(session, settings)
    grading.claim(session=session, submission_id=sub.id, worker="dead", settings=settings)
    session.execute(update(Submission).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
    session.commit()
    assert grading.claim(session=session, submission_id=sub.id, worker="w2", settings=settings).worker == "w2"


# ---- retried after a sandbox failure --------------------------------------------------------------------


def test_a_sandbox_failure_is_retried_with_backoff_then_stored_as_ours(session, settings, monkeypatch):
    def unavailable(*_, **__):
        raise sandbox.SandboxUnavailable("engine", "cannot reach the Docker engine")

    monkeypatch.setattr(sandbox, "grade", unavailable)
    sub = upload(session, settings)
    for attempt, delay in ((1, 10), (2, 20)):
        before = datetime.now(UTC)
        done = grading.attempt(settings=settings, submission_id=sub.id, worker="w1")
        assert (done.status, done.retry_in, done.failure.code) == ("retry", delay, "engine")
        sub = row(session, sub.id)
        assert (sub.status, sub.attempts, sub.worker, sub.lease_until) == ("queued", attempt, None, None)
        # Not sent again by the sweeper before the retry is due.
        assert sub.enqueued_at >= before + timedelta(seconds=delay)
    done = grading.attempt(settings=settings, submission_id=sub.id, worker="w1")
    assert (done.status, done.retry_in) == ("error", None)
    sub = row(session, sub.id)
    assert (sub.status, sub.error_kind, sub.attempts) == ("error", "infrastructure", 3)
    assert sub.result["error"]["message"] == "gave up after 3 attempts: cannot reach the Docker engine"


# ---- sent, and sent again ---------------------------------------------------------------------------------


def test_an_upload_no_grader_took_is_sent_by_the_sweeper(session, settings, monkeypatch):
    monkeypatch.setattr(engine, "remove_orphans", lambda **_: 0)
    monkeypatch.setattr(dispatch, "send", lambda **_: False)  # the broker is down
    sub = upload(session, settings)
    assert row(session, sub.id).enqueued_at is None  # marked unsent: the sweeper's to send
    sent: list[str] = []
    monkeypatch.setattr(
        dispatch, "send", lambda *, settings, submission_id, queue: sent.append(submission_id) or True
    )
    assert sweeper.sweep(settings=settings)["sent"] == 0  # committed a moment ago: it may be on its way
    session.execute(update(Submission).values(submitted_at=datetime.now(UTC) - timedelta(minutes=1)))
    session.commit()
    assert sweeper.sweep(settings=settings) == {"expired": 0, "stale": 1, "sent": 1}
    assert sent == [sub.id] and row(session, sub.id).enqueued_at is not None
    assert sweeper.sweep(settings=settings)["sent"] == 0  # sent a moment ago


@contextmanager
def counting_commits(session):
    """Yields a list that holds one entry per commit of `session` while the block runs."""
    commits: list[int] = []

    def listener(_) -> None:
        commits.append(1)

    event.listen(session, "after_commit", listener)
    try:
        yield commits
    finally:
        event.remove(session, "after_commit", listener)


def test_an_upload_and_a_regrade_are_one_commit_each_then_sent(session, settings, graded_by, monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(
        dispatch, "send", lambda *, settings, submission_id, queue: sent.append(submission_id) or True
    )
    student = auth.get_or_create_user(session=session, login="s1", role="student")
    session.commit()
    with counting_commits(session) as commits:
        sub = submissions.accept(
            session=session,
            settings=settings,
            assignment=load_assignment(settings.assignments_dir / "add-one"),
            student=student,
            filename="hw.zip",
            data=PASSES,
        ).submission
    assert (len(commits), sent, sub.enqueued_at is not None) == (1, [sub.id], True)
    grading.attempt(settings=settings, submission_id=sub.id, worker="w1")
    with counting_commits(session) as commits:
        assert submissions.regrade(session=session, settings=settings, submission_id=sub.id) == 1
    assert (len(commits), sent) == (1, [sub.id, sub.id])
    sub = row(session, sub.id)
    first_score = sub.score
    # The current grading is kept until the new one is in.
    assert (sub.status, sub.graded_status, sub.attempts) == ("queued", "graded", 0)
    assert first_score is not None
    assert grading.attempt(settings=settings, submission_id=sub.id, worker="w1").status == "graded"
    kept = session.scalars(select(Grading).where(Grading.submission_id == sub.id).order_by(Grading.id)).all()
    assert [g.current for g in kept] == [False, True]
    assert kept[1].replaced_score == first_score


# ---- who is grading -------------------------------------------------------------------------------------


def test_a_live_worker_means_the_same_to_the_api_and_the_pages(session, settings):
    now = datetime.now(UTC)
    dispatch.beat(session=session, name="gpu-worker", queues=["gpu"], gpus=1)
    session.add(Worker(name="gone", queues="cpu", seen_at=now - timedelta(seconds=settings.lease_s + 1)))
    session.commit()
    assert dispatch.serving(session=session, settings=settings, queue="gpu")
    assert not dispatch.serving(session=session, settings=settings, queue="cpu")
    assert submissions.queue_state(session, settings=settings).live_workers == 1


def test_a_sync_in_another_process_is_seen_within_a_second(session, settings, course, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(catalog.time, "monotonic", lambda: clock[0])
    catalog.sync(session=session, settings=settings)
    assert catalog.current(session=session, settings=settings)["add-one"].title == "Add two numbers"
    # Another process (`grader assignments sync`) records a newer sync of an edited folder.
    toml = course / "add-one" / "assignment.toml"
    toml.write_text(toml.read_text().replace("Add two numbers", "Add two numbers, v2"))
    session.execute(update(AssignmentRecord).values(synced_at=datetime.now(UTC) + timedelta(seconds=5)))
    session.commit()
    assert catalog.current(session=session, settings=settings)["add-one"].title == "Add two numbers"
    clock[0] += 1.01
    assert catalog.current(session=session, settings=settings)["add-one"].title == "Add two numbers, v2"


def test_whether_a_worker_runs_is_remembered_for_a_second(session, settings, monkeypatch):
    now = datetime.now(UTC)
    monkeypatch.setattr(dispatch, "utcnow", lambda: now)
    assert not dispatch.serving(session=session, settings=settings, queue="cpu")
    dispatch.beat(session=session, name="cpu-worker", queues=["cpu"])
    assert not dispatch.serving(session=session, settings=settings, queue="cpu")  # remembered
    now += timedelta(seconds=1.01)
    assert dispatch.serving(session=session, settings=settings, queue="cpu")
    session.execute(update(Worker).values(seen_at=now - timedelta(seconds=settings.lease_s + 1)))
    session.commit()
    assert dispatch.serving(session=session, settings=settings, queue="cpu")  # remembered
    now += timedelta(seconds=1.01)
    assert not dispatch.serving(session=session, settings=settings, queue="cpu")

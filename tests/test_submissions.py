"""Submissions, extensions and the upload rules as plain functions on PostgreSQL: no HTTP, no Docker.

The API's tests (tests/test_api.py) check the same rules through the routes; these check the functions
the routes and pages call, at the boundaries (the cutoff itself, the last allowed upload).
"""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from grader import accounts, auth, catalog, extensions, storage, submissions
from grader.assignments import load_assignment
from grader.config import Settings
from grader.models import Submission, User, Worker
from tests.fixtures.services import PASSES, zip_of

MICROSECOND = timedelta(microseconds=1)
DUE = datetime(2030, 1, 1, tzinfo=UTC)
CUTOFF = datetime(2030, 1, 2, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path, course, pg_url) -> Settings:
    # No broker: accepted uploads go to the in-process queue, which nothing consumes here.
    return Settings(database_url=pg_url, broker_url="", data_dir=tmp_path / "data", assignments_dir=course)


@pytest.fixture
def people(db_session) -> dict[str, User]:
    found = {
        login: auth.get_or_create_user(session=db_session, login=login, role=role)
        for login, role in (("s1", "student"), ("s2", "student"), ("prof", "instructor"))
    }
    db_session.commit()
    return found


def assignment(course, *, late: str = "", limits: str = ""):
    """add-one, due DUE and closed at CUTOFF when `late` says so, with these submission limits."""
    path = course / "add-one" / "assignment.toml"
    text = path.read_text().replace("due = 2099-01-01T00:00:00Z", f"due = {DUE.isoformat()}")
    path.write_text(
        text + (f"\n[late]\n{late}\n" if late else "") + (f"\n[submissions]\n{limits}\n" if limits else "")
    )
    return load_assignment(course / "add-one")


def accept(db_session, settings, hw, student, **extra) -> Submission:
    return submissions.accept(
        session=db_session,
        settings=settings,
        assignment=hw,
        student=student,
        filename="hw.zip",
        data=PASSES,
        **extra,
    ).submission


def stored(db_session, settings) -> tuple[int, int]:
    """(rows, upload files)."""
    uploads = settings.data_dir / "uploads"
    files = [f for f in uploads.rglob("*") if f.is_file()] if uploads.exists() else []
    return db_session.scalar(select(func.count()).select_from(Submission)), len(files)


# ---- accepting an upload -------------------------------------------------------------------------------


def test_accept_stores_the_file_commits_the_row_and_queues_it(db_session, settings, course, people):
    hw = assignment(course)
    sub = accept(db_session, settings, hw, people["s1"])
    assert (sub.status, sub.queue, sub.format, sub.filename) == ("queued", "cpu", "zip", "hw.zip")
    assert sub.enqueued_at is not None  # sent after the commit, and recorded
    assert storage.upload_path(settings, sub.sha256).read_bytes() == PASSES
    again = accept(db_session, settings, hw, people["s1"])
    assert again.sha256 == sub.sha256 and stored(db_session, settings) == (2, 1)  # one file for both


@pytest.mark.parametrize(
    ("filename", "data", "reason"),
    [
        ("hw.zip", b"not a zip at all", "bad_upload"),
        ("hw.zip", zip_of({"notes.txt": "no submission.py"}), "missing_file"),
        ("hw.pdf", b"%PDF-1.4", "bad_format"),
    ],
    ids=["not_a_zip", "zip_without_submission", "a_pdf"],
)
def test_a_refused_upload_stores_nothing(db_session, settings, course, people, filename, data, reason):
    with pytest.raises(submissions.Refused) as refused:
        submissions.accept(
            session=db_session,
            settings=settings,
            assignment=assignment(course),
            student=people["s1"],
            filename=filename,
            data=data,
        )
    assert refused.value.reason == reason and refused.value.message
    assert stored(db_session, settings) == (0, 0)


def test_an_upload_at_the_cutoff_is_accepted_and_one_later_is_not(db_session, course, people):
    hw = assignment(course, late=f"cutoff = {CUTOFF.isoformat()}")
    student = people["s1"]
    submissions.check_limits(session=db_session, assignment=hw, user_id=student.id, now=CUTOFF)
    with pytest.raises(submissions.Refused) as refused:
        submissions.check_limits(
            session=db_session, assignment=hw, user_id=student.id, now=CUTOFF + MICROSECOND
        )
    assert refused.value.reason == "closed" and CUTOFF.isoformat() in refused.value.message


def test_an_extension_moves_the_cutoff_for_that_student_only(db_session, course, people):
    hw = assignment(course, late=f"cutoff = {CUTOFF.isoformat()}")
    late = CUTOFF + timedelta(hours=1)
    extensions.grant(session=db_session, user=people["s1"], assignment=hw, due="2030-01-03T00:00")
    # No cutoff given: the assignment's moves by as much as the due date did (two days).
    assert extensions.deadline(session=db_session, assignment=hw, user_id=people["s1"].id).cutoff == (
        CUTOFF + timedelta(days=2)
    )
    submissions.check_limits(session=db_session, assignment=hw, user_id=people["s1"].id, now=late)
    with pytest.raises(submissions.Refused):
        submissions.check_limits(session=db_session, assignment=hw, user_id=people["s2"].id, now=late)


def test_an_upload_reads_the_student_s_extension_with_the_lock(db_session, settings, course, people):
    # One statement for both: they were two of the accept step's five (bench/README.md section 15).
    hw = assignment(course)
    extensions.grant(session=db_session, user=people["s1"], assignment=hw, due="2030-01-03T00:00")
    db_session.commit()
    statements = []
    event.listen(db_session.get_bind(), "before_cursor_execute", lambda *args: statements.append(args[2]))

    def deadline_of(student: User):
        kwargs = dict(session=db_session, settings=settings, assignment=hw, filename="hw.zip", data=PASSES)
        return submissions.accept(student=student, **kwargs).due

    due = deadline_of(people["s1"])
    reads = [statement for statement in statements if "extensions" in statement]
    assert len(reads) == 1 and "FOR UPDATE OF users" in reads[0]
    assert due == extensions.deadline(session=db_session, assignment=hw, user_id=people["s1"].id)
    assert due.due > DUE
    assert deadline_of(people["s2"]).due == DUE  # no extension: the assignment's own


def test_an_upload_s_reads_are_statements_built_once(db_session, settings, course, people):
    # Building them and their cache keys for every upload was a twentieth of the API's CPU in a
    # deadline burst (bench/README.md section 16).
    hw = assignment(course, limits="per_hour = 10")
    selects = []
    event.listen(db_session, "do_orm_execute", lambda state: selects.append(state.statement))
    accept(db_session, settings, hw, people["s1"])
    first = list(selects)
    selects.clear()
    accept(db_session, settings, hw, people["s2"])
    assert len(first) == 2  # the lock with the extension, the charged uploads
    assert [id(statement) for statement in selects] == [id(statement) for statement in first]


def test_before_the_release_a_student_is_told_of_no_such_assignment(db_session, course, people):
    hw = assignment(course)
    with pytest.raises(submissions.Refused) as refused:
        submissions.check_limits(
            session=db_session, assignment=hw, user_id=people["s1"].id, now=datetime(2019, 1, 1, tzinfo=UTC)
        )
    assert refused.value.reason == "not_released" and refused.value.message == "no assignment 'add-one'"


def test_the_last_allowed_upload_then_a_refusal_that_says_why(db_session, settings, course, people):
    hw = assignment(course, limits="max = 2")
    for _ in range(2):
        accept(db_session, settings, hw, people["s1"])
    with pytest.raises(submissions.Refused) as refused:
        accept(db_session, settings, hw, people["s1"])
    assert refused.value.reason == "max_submissions"
    assert refused.value.message == "you have used all 2 submissions for add-one"
    accept(db_session, settings, hw, people["s2"])  # the limit is per student
    assert stored(db_session, settings)[0] == 3


def test_a_refused_student_costs_no_unpacking(db_session, settings, course, people, monkeypatch):
    hw = assignment(course, limits="max = 1")
    accept(db_session, settings, hw, people["s1"])
    unpacked = []
    monkeypatch.setattr(submissions, "unpack", lambda *args, **kwargs: unpacked.append(args))
    with pytest.raises(submissions.Refused, match="used all 1"):
        accept(db_session, settings, hw, people["s1"])
    assert unpacked == []


def test_failures_on_our_side_are_not_charged(db_session, settings, course, people):
    hw = assignment(course, limits="max = 1")
    first = accept(db_session, settings, hw, people["s1"])
    first.error_kind = "infrastructure"
    db_session.commit()
    accept(db_session, settings, hw, people["s1"])


def test_the_hourly_limit_says_when_to_try_again(db_session, settings, course, people):
    hw = assignment(course, limits="per_hour = 1")
    first = accept(db_session, settings, hw, people["s1"])
    with pytest.raises(submissions.Refused) as refused:
        submissions.check_limits(
            session=db_session,
            assignment=hw,
            user_id=people["s1"].id,
            now=first.submitted_at + timedelta(minutes=20),
        )
    assert refused.value.reason == "rate_limited" and refused.value.retry_after == 40 * 60
    assert "try again in 2400 s" in refused.value.message
    submissions.check_limits(
        session=db_session,
        assignment=hw,
        user_id=people["s1"].id,
        now=first.submitted_at + timedelta(hours=1),
    )


def test_an_instructor_uploads_for_a_student_past_the_cutoff_and_limits(db_session, settings, course, people):
    hw = assignment(course, late=f"cutoff = {DUE.isoformat()}", limits="max = 1")
    accept(db_session, settings, hw, people["s1"], by_instructor=True)
    sub = accept(db_session, settings, hw, people["s1"], by_instructor=True)
    assert sub.user_id == people["s1"].id and stored(db_session, settings)[0] == 2


# ---- regrading -----------------------------------------------------------------------------------------


def graded(db_session, user: User, *, status: str = "graded") -> Submission:
    sub = Submission(
        user_id=user.id,
        assignment="add-one",
        sha256="0" * 64,
        filename="hw.zip",
        format="zip",
        status=status,
        score=1,
        max_score=2,
        attempts=1,
        worker="w1" if status == "running" else None,
    )
    db_session.add(sub)
    db_session.commit()
    return sub


def test_regrade_queues_finished_submissions_again_and_leaves_running_ones(db_session, settings, people):
    done, running = graded(db_session, people["s1"]), graded(db_session, people["s1"], status="running")
    other = graded(db_session, people["s2"])
    s1 = people["s1"].id
    assert submissions.regrade(session=db_session, settings=settings, slug="add-one", user_id=s1) == 1
    db_session.expire_all()
    # The current grading stays (what the gradebook counts) until the new one is in.
    assert (done.status, done.score, done.attempts, done.worker) == ("queued", 1.0, 0, None)
    assert done.graded_status == "graded"
    assert done.enqueued_at is not None
    assert running.status == "running" and other.status == "graded"
    assert submissions.regrade(session=db_session, settings=settings, submission_id=other.id) == 1
    regraded = submissions.regrade(session=db_session, settings=settings, slug="add-one")
    assert regraded == 2  # not the running one


# ---- extensions ------------------------------------------------------------------------------------------


def test_granting_an_extension_twice_changes_it_and_removing_it_restores_the_deadline(
    db_session, course, people
):
    hw = assignment(course)
    s1 = people["s1"]
    extensions.grant(session=db_session, user=s1, assignment=hw, due="2030-01-05T12:00", reason=" ill ")
    ext = extensions.grant(session=db_session, user=s1, assignment=hw, due="2030-01-06T12:00")
    assert [e.id for e, _ in extensions.stored(db_session, user_id=s1.id)] == [ext.id]
    assert extensions.stored(db_session, slugs=["add-one"])[0][1] == "s1"
    assert extensions.deadline(session=db_session, assignment=hw, user_id=s1.id).due == datetime(
        2030, 1, 6, 12, tzinfo=UTC
    )
    extensions.remove(session=db_session, user=s1, slug="add-one")
    assert extensions.find(db_session, user_id=s1.id, slug="add-one") is None
    assert extensions.deadline(session=db_session, assignment=hw, user_id=s1.id).due == DUE


@pytest.mark.parametrize(
    ("due", "cutoff", "message"),
    [("tomorrow", "", "is not a date"), ("2030-01-05T12:00", "2030-01-04T12:00", "cutoff is before")],
)
def test_a_bad_extension_changes_nothing(db_session, course, people, due, cutoff, message):
    with pytest.raises(extensions.BadExtension, match=message):
        extensions.grant(
            session=db_session, user=people["s1"], assignment=assignment(course), due=due, cutoff=cutoff
        )
    assert extensions.stored(db_session) == []


# ---- reads -----------------------------------------------------------------------------------------------


def test_a_student_reads_only_their_own_submissions(db_session, people):
    mine, theirs = graded(db_session, people["s1"]), graded(db_session, people["s2"])
    assert submissions.owned(db_session, submission_id=mine.id, user_id=people["s1"].id) is mine
    assert submissions.owned(db_session, submission_id=theirs.id, user_id=people["s1"].id) is None
    assert [s.id for s in submissions.of_student(db_session, user_id=people["s1"].id)] == [mine.id]
    assert [s.id for s, _ in submissions.listing(db_session, user_id=people["s1"].id)] == [mine.id]
    assert [u.login for _, u in submissions.listing(db_session, login="s2")] == ["s2"]
    assert submissions.with_owner(db_session, submission_id=theirs.id) == (theirs, people["s2"])


def test_counts_for_the_instructor_pages(db_session, settings, people):
    graded(db_session, people["s1"])
    broken = graded(db_session, people["s2"], status="error")
    broken.error_kind = "infrastructure"
    graded(db_session, people["s2"], status="running")
    db_session.commit()
    assert submissions.status_counts(db_session, slug="add-one") == {
        "queued": 0,
        "running": 1,
        "graded": 1,
        "error": 1,
        "submitted": 0,  # a project milestone's uploads waiting for manual grading
    }
    counts = submissions.assignment_counts(db_session, slug="add-one")
    assert (counts.students, counts.infrastructure_errors, counts.flagged) == (2, 1, 0)
    assert [(u.login, n) for u, n, _ in submissions.per_student(db_session)] == [("s1", 1), ("s2", 2)]
    db_session.add(Worker(name="old", queues="cpu", seen_at=datetime.now(UTC) - timedelta(minutes=5)))
    db_session.add(Worker(name="new", queues="cpu", seen_at=datetime.now(UTC)))
    db_session.commit()
    queue = submissions.queue_state(db_session, settings=settings)
    assert [w.name for w in queue.workers] == ["new", "old"] and queue.live_workers == 1


def test_accounts_find_any_spelling_and_smoke_runs_are_kept(db_session, people):
    assert accounts.find(db_session, login=" S1 ") is people["s1"]
    assert accounts.find(db_session, login="prof", role="student") is None
    assert catalog.last_smoke(session=db_session, slug="add-one") is None
    catalog.record_smoke(session=db_session, slug="add-one", passed=False, detail="x" * 5000)
    run = catalog.last_smoke(session=db_session, slug="add-one")
    assert run is not None and not run.passed and len(run.detail) == 4000

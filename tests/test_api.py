"""The HTTP API on real PostgreSQL: refusals store nothing, and students see only what they may."""

import csv
import io
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import anyio
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from grader import accounts, auth, db, dispatch, grading, main, remembered
from grader.config import Settings
from grader.db import utcnow
from grader.deps import current_settings, get_session
from grader.main import app
from grader.models import Extension, Submission, User, Worker
from grader.results import GradeError, GradeResult, TestResult
from grader.routes import forms, spread
from grader.worker import GRADE_TASK, publisher
from tests.fixtures.services import PASSES, zip_of


@pytest.fixture
def settings(tmp_path, course, pg_url) -> Settings:
    # No broker: accepted uploads go to the in-process queue, which nothing consumes in these tests.
    return Settings(database_url=pg_url, broker_url="", data_dir=tmp_path / "data", assignments_dir=course)


@pytest.fixture
def client(settings, db_session):
    app.dependency_overrides[current_settings] = lambda: settings
    app.dependency_overrides[get_session] = lambda: db_session
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()


@pytest.fixture
def people(db_session) -> dict[str, tuple[User, dict[str, str]]]:
    """Two students and an instructor, each with their Authorization header."""
    found = {}
    for login, role in (("s1", "student"), ("s2", "student"), ("prof", "instructor")):
        user = auth.get_or_create_user(session=db_session, login=login, role=role)
        found[login] = (user, {"Authorization": f"Bearer {auth.create_token(session=db_session, user=user)}"})
    db_session.commit()
    return found


def headers(people, login: str) -> dict[str, str]:
    return people[login][1]


def edit(course, slug: str, **extra: str) -> None:
    """Append TOML tables to an assignment's config, e.g. late='cutoff = ...'."""
    path = course / slug / "assignment.toml"
    path.write_text(path.read_text() + "".join(f"\n[{table}]\n{body}\n" for table, body in extra.items()))


def upload(client, who, *, assignment="add-one", data=PASSES, filename="hw.zip", **fields):
    return client.post(
        "/api/submissions",
        headers=who,
        data={"assignment": assignment, **fields},
        files={"file": (filename, data)},
    )


def nothing_stored(db_session, settings) -> bool:
    rows = db_session.scalar(select(func.count()).select_from(Submission))
    files = (
        list((settings.data_dir / "uploads").rglob("*")) if (settings.data_dir / "uploads").exists() else []
    )
    return rows == 0 and not [f for f in files if f.is_file()]


def test_accepts_an_upload_stores_the_file_and_queues_it(client, people, db_session, settings):
    response = upload(client, headers(people, "s1"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["student"] == "s1" and body["assignment"] == "add-one"
    row = db_session.get(Submission, body["id"])
    assert row.format == "zip" and row.queue == "cpu" and row.enqueued_at is not None
    assert (settings.data_dir / "uploads" / row.sha256[:2] / row.sha256).read_bytes() == PASSES
    assert row.submitted_at.tzinfo is not None


@pytest.mark.parametrize("token", [None, "Bearer grd_not-a-token", "Basic czE6eA=="])
def test_a_missing_or_bad_token_is_401(client, people, db_session, settings, token):
    response = upload(client, {"Authorization": token} if token else {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert nothing_stored(db_session, settings)


@pytest.mark.parametrize("token", [None, "Bearer grd_not-a-token"])
def test_a_missing_or_bad_token_is_refused_before_the_body_is_read(client, people, token, monkeypatch):
    read = []
    monkeypatch.setattr("grader.routes.submissions.receive_form", lambda *a, **k: read.append(1))
    assert upload(client, {"Authorization": token} if token else {}).status_code == 401 and read == []


def test_an_upload_is_accepted_off_the_event_loop(client, people, accept_threads):
    assert upload(client, headers(people, "s1")).status_code == 202
    assert accept_threads == ["worker thread"]


def test_an_upload_takes_two_thread_hops_and_no_more(settings, committed_pg, redis_broker, thread_hops):
    # The token check and the accept step; FastAPI's own hops for the settings and the session (one
    # each way) were a quarter of the event loop's time in a deadline burst (bench/README.md 12, 14).
    # The same token again within the second: the accept step only (15).
    async def these_settings() -> Settings:
        # With a broker the answer asks whether a worker runs, in the accept step's transaction.
        return settings.model_copy(update={"broker_url": redis_broker})

    with Session(db.get_engine(committed_pg)) as session:  # committed: the request's own session reads it
        token = auth.create_token(
            session=session, user=auth.get_or_create_user(session=session, login="s1", role="student")
        )
        session.commit()
    app.dependency_overrides[current_settings] = these_settings
    try:
        with TestClient(app) as real_sessions:
            thread_hops.clear()
            assert upload(real_sessions, {"Authorization": f"Bearer {token}"}).status_code == 202
            first, _ = list(thread_hops), thread_hops.clear()
            assert upload(real_sessions, {"Authorization": f"Bearer {token}"}).status_code == 202
    finally:
        app.dependency_overrides.clear()
    assert first == ["read_tokens", "accept_upload"]
    assert thread_hops == ["accept_upload"]


@pytest.mark.parametrize(
    "processes, other_in_hand, closed", [(1, None, False), (2, None, True), (2, 5, False)]
)
def test_an_accepted_upload_ends_its_connection_when_another_api_process_has_fewer_uploads(
    client, people, settings, processes, other_in_hand, closed
):
    # Kept alive, a burst's connections stay on the process they first reached (grader.routes.spread):
    # with another process taking fewer uploads, or none, this one sends the student to reconnect.
    settings = settings.model_copy(update={"api_processes": processes})
    if other_in_hand is not None:  # another process, busier than this one
        spread.post(spread.board(settings), "another-host-7", other_in_hand, time.time())
    app.dependency_overrides[current_settings] = lambda: settings
    response = upload(client, headers(people, "s1"))
    assert response.status_code == 202
    assert (response.headers.get("connection") == "close") is closed


def test_the_broker_is_prepared_before_the_first_upload(monkeypatch):
    # Importing the transport and building the publisher's pools cost the first upload 0.15 s.
    # A URL no other test uses (the tests' broker is 127.0.0.1): publisher() is one per URL.
    url = "redis://localhost:6379/15"
    monkeypatch.setattr(main, "get_settings", lambda: Settings(broker_url=url))
    assert publisher(url).amqp._producer_pool is None
    with TestClient(app):
        assert publisher(url).amqp._producer_pool is not None


def test_the_publisher_sends_its_messages_through_one_redis_client(redis_broker, monkeypatch):
    # kombu builds a redis-py client per message: a third of `send_task` under cProfile (15).
    send = publisher(redis_broker).send_task
    send(GRADE_TASK, args=["sub-0"], queue="cpu")  # the first builds what the publisher keeps
    built, build = [], redis.Redis.__init__
    monkeypatch.setattr(redis.Redis, "__init__", lambda *args, **kwargs: built.append(build(*args, **kwargs)))
    for index in range(1, 4):
        send(GRADE_TASK, args=[f"sub-{index}"], queue="cpu")
    monkeypatch.undo()
    assert redis.Redis.from_url(redis_broker).llen("cpu") == 4 and built == []


def test_a_sent_submission_s_message_shows_its_args_as_celery_would(redis_broker):
    # dispatch.send gives the repr that Celery's saferepr would have built, for logs and monitors.
    from celery.utils.saferepr import saferepr

    sid = str(uuid.uuid4())
    assert dispatch.send(settings=Settings(broker_url=redis_broker), submission_id=sid, queue="cpu")
    message = json.loads(redis.Redis.from_url(redis_broker).lpop("cpu"))
    assert message["headers"]["argsrepr"] == saferepr([sid])
    assert message["headers"]["kwargsrepr"] == saferepr({})


def test_uploads_are_accepted_a_few_at_a_time_first_come_first_served(monkeypatch):
    monkeypatch.setattr(forms, "get_settings", lambda: Settings(upload_concurrency=2))
    lock, running, most, started = threading.Lock(), [0], [0], []

    def accept(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            started.append(i)
        time.sleep(0.03)
        with lock:
            running[0] -= 1
        return i

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            for i in range(8):
                group.start_soon(forms.in_turn, accept, i)
                await anyio.sleep(0.002)  # they arrive in this order

    anyio.run(burst)
    assert most[0] == 2 and sorted(started) == list(range(8))
    # Two start at once, so neighbours may swap; a waiter never overtakes one that came earlier by two.
    assert all(abs(position - i) <= 1 for position, i in enumerate(started)), started


@pytest.fixture
def one_turn(monkeypatch):
    """One step at a time; the step named "busy" keeps its turn until `release` is set. The names of
    the steps, in the order they started."""
    monkeypatch.setattr(forms, "get_settings", lambda: Settings(upload_concurrency=1))
    started, release = [], threading.Event()

    def step(name: str) -> None:
        started.append(name)
        if name == "busy":
            release.wait(5)

    return step, started, release


def test_an_earlier_upload_s_next_step_goes_before_a_later_upload_s_first(one_turn):
    # Each waited for its token check in turn; the earlier one must not queue again behind the later.
    step, started, release = one_turn

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(partial(forms.in_turn, step, "busy", arrived=0.0))
            await anyio.sleep(0.05)
            group.start_soon(partial(forms.in_turn, step, "later's first", arrived=2.0))
            await anyio.sleep(0.01)
            group.start_soon(partial(forms.in_turn, step, "earlier's second", arrived=1.0))
            await anyio.sleep(0.01)
            release.set()

    anyio.run(burst)
    assert started == ["busy", "earlier's second", "later's first"]


def test_a_step_given_up_while_waiting_its_turn_leaves_its_place_to_the_next(one_turn):
    step, started, release = one_turn

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(forms.in_turn, step, "busy")
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.05):  # the client went away while waiting
                await forms.in_turn(step, "gone")
            group.start_soon(forms.in_turn, step, "next")
            await anyio.sleep(0.01)
            release.set()
        assert forms.in_hand() == 0

    anyio.run(burst)
    assert started == ["busy", "next"]


def _read_keys(reads: list, fails: bool = False):
    def read(group: str, keys) -> dict[str, str]:
        reads.append((group, sorted(keys)))
        if fails:
            raise RuntimeError("the database went away")
        return {key: key.upper() for key in keys if key != "k3"}  # k3: an unknown token

    return read


def test_tokens_asked_while_waiting_for_a_turn_are_read_together(one_turn):
    # A burst's opening wave: 50 tokens never used, each read alone before its upload could go.
    step, started, release = one_turn
    reads, answers = [], {}
    read = _read_keys(reads)

    async def ask(group: str, key: str) -> None:
        answers[group, key] = await forms.in_turn_together(read, group, key, arrived=time.monotonic())

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(forms.in_turn, step, "busy")
            await anyio.sleep(0.05)
            for i in range(5):
                group.start_soon(ask, "db", f"k{i}")
            group.start_soon(ask, "another db", "k0")
            await anyio.sleep(0.05)
            release.set()
            await anyio.sleep(0.05)
            group.start_soon(ask, "db", "k9")  # after that read: a batch of its own

    anyio.run(burst)
    assert reads == [("db", ["k0", "k1", "k2", "k3", "k4"]), ("another db", ["k0"]), ("db", ["k9"])]
    assert answers == {
        **{("db", f"k{i}"): f"K{i}" for i in (0, 1, 2, 4, 9)},
        ("db", "k3"): None,
        ("another db", "k0"): "K0",
    }


def test_a_read_together_goes_on_when_its_requests_go_and_its_error_reaches_each(one_turn):
    step, started, release = one_turn
    reads, failed = [], []

    async def ask(key: str, read) -> None:
        try:
            await forms.in_turn_together(read, "db", key, arrived=time.monotonic())
        except RuntimeError as exc:
            failed.append((key, str(exc)))

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(forms.in_turn, step, "busy")
            await anyio.sleep(0.05)
            read = _read_keys(reads)
            with anyio.move_on_after(0.05):  # both clients went away while waiting
                async with anyio.create_task_group() as gone:
                    gone.start_soon(partial(forms.in_turn_together, read, "db", "k1", arrived=1.0))
                    gone.start_soon(partial(forms.in_turn_together, read, "db", "k2", arrived=2.0))
            failing = _read_keys(reads, fails=True)
            group.start_soon(ask, "k5", failing)
            group.start_soon(ask, "k6", failing)
            await anyio.sleep(0.01)
            release.set()
        assert forms.in_hand() == 0

    anyio.run(burst)
    assert reads == [("db", ["k1", "k2"]), ("db", ["k5", "k6"])]
    assert sorted(failed) == [("k5", "the database went away"), ("k6", "the database went away")]


def test_a_revoked_token_is_401(client, people, db_session):
    user, who = people["s1"]
    for token in db_session.scalars(select(auth.ApiToken).where(auth.ApiToken.user_id == user.id)):
        token.revoked = True
    db_session.commit()
    assert client.get("/api/assignments", headers=who).status_code == 401


def test_a_remembered_token_takes_no_thread_hop_in_any_route(client, people, thread_hops):
    who = headers(people, "s1")
    assert client.get("/api/submissions", headers=who).status_code == 200
    first, _ = list(thread_hops), thread_hops.clear()
    assert client.get("/api/submissions", headers=who).status_code == 200
    assert len(thread_hops) == len(first) - 1  # no hop for the token's user


def test_a_token_revoked_here_stops_at_once_and_elsewhere_within_a_second(
    client, people, db_session, monkeypatch
):
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    (_, s1), (user2, s2) = people["s1"], people["s2"]
    assert client.get("/api/assignments", headers=s1).status_code == 200
    assert client.get("/api/assignments", headers=s2).status_code == 200
    # In this process (DELETE /api/token, `grader token revoke`, a reset secret): at once.
    assert client.delete("/api/token", headers=s1).status_code == 204
    assert client.get("/api/assignments", headers=s1).status_code == 401
    # By another process: this one took the token's check from memory for at most a second.
    assert client.get("/api/assignments", headers=s2).status_code == 200  # checked again, remembered
    db_session.execute(update(auth.ApiToken).where(auth.ApiToken.user_id == user2.id).values(revoked=True))
    db_session.commit()
    assert client.get("/api/assignments", headers=s2).status_code == 200
    clock[0] += 1.01
    assert client.get("/api/assignments", headers=s2).status_code == 401


def test_the_remembered_tokens_are_checked_again_in_one_statement(settings, committed_pg, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    with db.session_factory(settings)() as session:
        kept, revoked = (
            auth.create_token(
                session=session, user=auth.get_or_create_user(session=session, login=login, role="student")
            )
            for login in ("s1", "s2")
        )
        session.commit()
        assert auth.user_for_token(session=session, token=kept) and auth.user_for_token(
            session=session, token=revoked
        )
    auth.recheck_remembered(settings)  # writes their first use: a second statement, once a minute
    with db.session_factory(settings)() as session:
        # Another process revokes one of them.
        session.execute(
            update(auth.ApiToken)
            .where(auth.ApiToken.token_sha256 == auth.token_digest(revoked))
            .values(revoked=True)
        )
        session.commit()
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.get_engine(committed_pg), "before_cursor_execute", listener)
    clock[0] += 0.9
    auth.recheck_remembered(settings)
    event.remove(db.get_engine(committed_pg), "before_cursor_execute", listener)
    assert len(statements) == 1
    clock[0] += 0.9  # past the first check's second: only the check again keeps the token in memory
    with db.session_factory(settings)() as session:
        assert auth.checked_user(session=session, token=kept).login == "s1"
        assert auth.checked_user(session=session, token=revoked) is None
    clock[0] += remembered.IDLE_S
    auth.recheck_remembered(settings)
    assert len(auth.tokens) == 0  # unused for a minute: forgotten


def test_a_token_s_last_use_is_written_by_the_check_again_not_by_its_lookup(
    settings, committed_pg, monkeypatch
):
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(auth, "LAST_USED_RESOLUTION", timedelta(seconds=1))
    with db.session_factory(settings)() as session:
        token = auth.create_token(
            session=session, user=auth.get_or_create_user(session=session, login="s1", role="student")
        )
        session.commit()
        auth.user_for_token(session=session, token=token)

    def last_used() -> datetime:
        with db.session_factory(settings)() as session:
            return session.scalar(select(auth.ApiToken.last_used_at))

    # Not written by the lookup, in the upload's turn, but by the next check, with the others'.
    assert last_used() is None
    auth.recheck_remembered(settings)
    first = last_used()
    assert first is not None
    for _ in range(2):  # used, and checked again, within the resolution: not written
        clock[0] += 0.45
        with db.session_factory(settings)() as session:
            assert auth.checked_user(session=session, token=token) is not None
        auth.recheck_remembered(settings)
    assert last_used() == first
    clock[0] += 0.45
    with db.session_factory(settings)() as session:
        assert auth.checked_user(session=session, token=token) is not None
    auth.recheck_remembered(settings)
    assert last_used() > first


def test_the_api_checks_its_remembered_tokens_and_sign_ins_again_while_it_runs(settings, monkeypatch):
    checked, sessions = [], []
    monkeypatch.setattr(remembered, "RECHECK_S", 0.02)
    monkeypatch.setattr(auth, "recheck_remembered", checked.append)
    monkeypatch.setattr(accounts, "recheck_sessions", sessions.append)
    monkeypatch.setattr(main, "get_settings", lambda: settings)
    with TestClient(app):
        give_up = time.monotonic() + 10  # a loaded CI machine may be slow to run the first
        while len(checked) < 2 and time.monotonic() < give_up:
            time.sleep(0.01)
    assert len(checked) >= 2 and all(each is settings for each in checked)
    assert sessions and all(each is settings for each in sessions)


def test_a_remembered_token_costs_no_statement_and_never_outlives_its_expiry(
    client, people, db_session, monkeypatch
):
    clock, now = [1000.0], [datetime.now(UTC)]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(auth, "utcnow", lambda: now[0])

    def later(seconds: float) -> None:
        clock[0] += seconds
        now[0] += timedelta(seconds=seconds)

    user, who = people["s1"]
    statements = []
    event.listen(db_session.get_bind(), "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert client.get("/api/assignments", headers=who).status_code == 200
    first, _ = list(statements), statements.clear()
    assert client.get("/api/assignments", headers=who).status_code == 200
    assert any("api_tokens" in statement for statement in first)
    assert not any("api_tokens" in statement for statement in statements)
    # Checked again with half a second left to live: remembered for that half second, not for one.
    db_session.execute(
        update(auth.ApiToken)
        .where(auth.ApiToken.user_id == user.id)
        .values(expires_at=now[0] + timedelta(seconds=1.5))
    )
    db_session.commit()
    later(1.01)
    assert client.get("/api/assignments", headers=who).status_code == 200
    later(0.6)
    assert client.get("/api/assignments", headers=who).status_code == 401


def test_an_unknown_assignment_is_404(client, people, db_session, settings):
    response = upload(client, headers(people, "s1"), assignment="hw9-nope")
    assert response.status_code == 404 and "hw9-nope" in response.json()["detail"]
    assert nothing_stored(db_session, settings)


def test_a_format_the_assignment_does_not_accept_is_415(client, people, db_session, settings, course):
    path = course / "add-one" / "assignment.toml"
    path.write_text(path.read_text().replace('formats = ["ipynb", "zip"]', 'formats = ["ipynb"]'))
    response = upload(client, headers(people, "s1"))
    assert response.status_code == 415 and ".ipynb" in response.json()["detail"]
    response = upload(client, headers(people, "s1"), data=b"print(1)\n", filename="hw.py")
    assert response.status_code == 415
    assert nothing_stored(db_session, settings)


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("hw.ipynb", b'{"cells": [ not json'),
        ("hw.zip", b"PK\x03\x04 truncated"),
        ("hw.zip", b"not a zip at all"),
        ("hw.zip", zip_of({"notes.txt": "no submission.py"})),
    ],
    ids=["broken_notebook", "truncated_zip", "zip_named_but_not", "zip_without_submission"],
)
def test_an_unusable_upload_is_422_with_the_reason(client, people, db_session, settings, filename, data):
    response = upload(client, headers(people, "s1"), data=data, filename=filename)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert nothing_stored(db_session, settings)


def test_an_upload_over_the_limit_is_413(client, people, db_session, settings):
    settings.max_upload_bytes = 4096
    big = zip_of({"submission.py": "x = 1\n", "weights.bin": "".join(f"{i:08x}" for i in range(4000))})
    response = upload(client, headers(people, "s1"), data=big)
    assert response.status_code == 413
    assert nothing_stored(db_session, settings)


def test_an_oversized_streamed_upload_without_content_length_is_413(client, people, db_session, settings):
    settings.max_upload_bytes = 4096
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="assignment"\r\n\r\nadd-one\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="hw.zip"\r\n\r\n'
    ).encode()

    def body():  # a generator: sent chunked, so only the running count can stop it
        yield head
        for _ in range(200):
            yield b"x" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/api/submissions",
        headers={**headers(people, "s1"), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=body(),
    )
    assert response.status_code == 413
    assert nothing_stored(db_session, settings)


def test_after_the_cutoff_uploads_are_refused_with_the_time(client, people, db_session, settings, course):
    edit(course, "add-one", late="cutoff = 2021-01-01T00:00:00Z")
    path = course / "add-one" / "assignment.toml"
    path.write_text(path.read_text().replace("due = 2099-01-01T00:00:00Z", "due = 2020-06-01T00:00:00Z"))
    response = upload(client, headers(people, "s1"))
    assert response.status_code == 403
    assert "2021-01-01T00:00:00+00:00" in response.json()["detail"]
    assert nothing_stored(db_session, settings)


def test_an_extension_moves_the_cutoff_and_lateness(client, people, db_session, settings, course):
    edit(course, "add-one", late="cutoff = 2021-01-01T00:00:00Z\npenalty_percent = 10")
    path = course / "add-one" / "assignment.toml"
    path.write_text(path.read_text().replace("due = 2099-01-01T00:00:00Z", "due = 2020-06-01T00:00:00Z"))
    user = people["s1"][0]
    due = datetime.now(UTC) - timedelta(hours=2)
    db_session.add(Extension(user_id=user.id, assignment="add-one", due=due, cutoff=due + timedelta(days=1)))
    db_session.commit()
    response = upload(client, headers(people, "s1"))
    assert response.status_code == 202, response.text
    assert 7190 < response.json()["late_seconds"] < 7300
    assert response.json()["penalty_percent"] == 10  # two hours into the first late day


def test_over_the_submission_limit_is_429(client, people, db_session, settings, course):
    edit(course, "add-one", submissions="max = 2")
    for _ in range(2):
        assert upload(client, headers(people, "s1")).status_code == 202
    response = upload(client, headers(people, "s1"))
    assert response.status_code == 429 and "2 submissions" in response.json()["detail"]
    assert db_session.scalar(select(func.count()).select_from(Submission)) == 2
    assert upload(client, headers(people, "s2")).status_code == 202  # per student


def test_failures_on_our_side_are_not_charged(client, people, db_session, course):
    edit(course, "add-one", submissions="max = 1")
    first = upload(client, headers(people, "s1")).json()["id"]
    db_session.get(Submission, first).error_kind = "infrastructure"
    db_session.commit()
    assert upload(client, headers(people, "s1")).status_code == 202


def test_an_upload_that_could_not_be_graded_is_not_charged(client, people, db_session, settings, course):
    edit(course, "add-one", submissions="per_hour = 1")
    first = upload(client, headers(people, "s1")).json()["id"]
    assert upload(client, headers(people, "s1")).status_code == 429
    broken = GradeResult(
        status="graded",
        score=0,
        max_score=1,
        error={"kind": "student", "code": "syntax", "message": "syntax error in submission.py, line 1"},
    )
    sub = db_session.get(Submission, first)
    sub.status, sub.lease_until, sub.worker = "running", utcnow() + timedelta(minutes=5), "w"
    db_session.commit()
    assert grading.finish(session=db_session, submission_id=first, worker="w", result=broken)
    assert db_session.get(Submission, first).ungradable
    assert upload(client, headers(people, "s1")).status_code == 202
    # A submission that ran and failed its tests is charged as before.
    assert upload(client, headers(people, "s1")).status_code == 429


def test_over_the_hourly_limit_is_429_with_retry_after(client, people, db_session, settings, course):
    edit(course, "add-one", submissions="per_hour = 2")
    for _ in range(2):
        assert upload(client, headers(people, "s1")).status_code == 202
    response = upload(client, headers(people, "s1"))
    assert response.status_code == 429
    assert 3500 <= int(response.headers["retry-after"]) <= 3600
    assert db_session.scalar(select(func.count()).select_from(Submission)) == 2


def test_only_instructors_submit_for_someone_else(client, people, db_session, settings):
    response = upload(client, headers(people, "s1"), student="s2")
    assert response.status_code == 403
    assert nothing_stored(db_session, settings)
    assert upload(client, headers(people, "prof"), student="nobody").status_code == 404
    response = upload(client, headers(people, "prof"), student="s2")
    assert response.status_code == 202 and response.json()["student"] == "s2"


RESULT = GradeResult(
    status="graded",
    score=3,
    max_score=6,
    tests=[
        TestResult(name="test_shape", points=1, max_points=1, outcome="passed", visibility="public"),
        TestResult(
            name="test_public_grad",
            points=0,
            max_points=2,
            outcome="failed",
            message="grad off",
            visibility="public",
        ),
        TestResult(name="test_secret_mask", points=2, max_points=2, outcome="passed", message="SECRET-A"),
        TestResult(name="test_secret_edge", points=0, max_points=1, outcome="failed", message="SECRET-B"),
    ],
    error=GradeError(kind="student", code="timeout", message="timed out after 60 s"),
    output="hello from the student\n",
    flags=["wrote to the results file"],
)


@pytest.fixture
def graded(db_session, people, settings):
    """A graded submission of s1 with public and hidden tests."""
    submission = Submission(
        user_id=people["s1"][0].id,
        assignment="add-one",
        sha256="0" * 64,
        filename="hw.zip",
        format="zip",
        status="graded",
        score=RESULT.score,
        max_score=RESULT.max_score,
        result=RESULT.model_dump(mode="json"),
        flagged=True,
        started_at=datetime.now(UTC),
        finished_at=datetime.now(UTC),
        attempts=1,
    )
    db_session.add(submission)
    db_session.commit()
    return submission.id


def policy(course, hidden: str) -> None:
    edit(course, "add-one", feedback=f'hidden = "{hidden}"')


def test_hidden_score_shows_only_the_hidden_total(client, people, graded, course):
    policy(course, "score")
    body = client.get(f"/api/submissions/{graded}", headers=headers(people, "s1")).json()
    assert [t["name"] for t in body["tests"]] == ["test_shape", "test_public_grad"]
    assert body["tests"][1]["message"] == "grad off"  # public tests in full
    assert body["hidden"] == {"score": 2, "max_score": 3}
    assert body["score"] == 3 and body["max_score"] == 6
    assert body["output"] == "hello from the student\n"
    assert body["flags"] is None and body["flagged"] is None
    text = json.dumps(body)
    assert "secret" not in text.lower()


def test_hidden_names_shows_names_and_points_without_messages(client, people, graded, course):
    policy(course, "names")
    body = client.get(f"/api/submissions/{graded}", headers=headers(people, "s1")).json()
    secret = {t["name"]: t for t in body["tests"] if t["visibility"] == "hidden"}
    assert set(secret) == {"test_secret_mask", "test_secret_edge"}
    assert secret["test_secret_mask"]["points"] == 2 and secret["test_secret_edge"]["max_points"] == 1
    assert "SECRET-A" not in json.dumps(body) and "SECRET-B" not in json.dumps(body)


def test_hidden_full_shows_everything_but_flags(client, people, graded, course):
    policy(course, "full")
    body = client.get(f"/api/submissions/{graded}", headers=headers(people, "s1")).json()
    assert "SECRET-A" in json.dumps(body) and len(body["tests"]) == 4
    assert body["flags"] is None


def test_instructors_see_everything_and_the_flags(client, people, graded, course):
    policy(course, "score")
    body = client.get(f"/api/submissions/{graded}", headers=headers(people, "prof")).json()
    assert len(body["tests"]) == 4 and "SECRET-B" in json.dumps(body)
    assert body["flags"] == ["wrote to the results file"] and body["flagged"] is True


def test_another_students_submission_is_404(client, people, graded):
    assert client.get(f"/api/submissions/{graded}", headers=headers(people, "s2")).status_code == 404
    assert client.get("/api/submissions/not-an-id", headers=headers(people, "s1")).status_code == 404
    listed = client.get("/api/submissions", headers=headers(people, "s2")).json()
    assert listed == []


def test_infrastructure_messages_are_not_shown_to_students(client, people, graded, db_session):
    row = db_session.get(Submission, graded)
    row.status, row.error_kind = "error", "infrastructure"
    row.result = GradeResult(
        status="error",
        error=GradeError(kind="infrastructure", code="harness", message="output ends: test_secret_x"),
    ).model_dump(mode="json")
    db_session.commit()
    body = client.get(f"/api/submissions/{graded}", headers=headers(people, "s1")).json()
    assert body["error"]["kind"] == "infrastructure" and "test_secret_x" not in json.dumps(body)
    body = client.get(f"/api/submissions/{graded}", headers=headers(people, "prof")).json()
    assert "test_secret_x" in body["error"]["message"]


def test_a_gpu_submission_says_when_no_gpu_worker_runs(
    client, people, settings, db_session, redis_broker, monkeypatch
):
    monkeypatch.setattr(dispatch, "SERVED_RECHECK", timedelta(0))  # see the worker at once, not in 1 s
    settings.broker_url = redis_broker
    body = upload(client, headers(people, "s1"), assignment="add-gpu").json()
    assert body["status"] == "queued"
    assert body["queue_note"] == "waiting for a GPU worker; none is running"
    db_session.add(Worker(name="gpu-1@host", queues="gpu", gpus=1))
    db_session.commit()
    body = client.get(f"/api/submissions/{body['id']}", headers=headers(people, "s1")).json()
    assert body["queue_note"] is None


def test_assignments_are_listed(client, people):
    body = client.get("/api/assignments", headers=headers(people, "s1")).json()
    one = next(a for a in body if a["slug"] == "add-one")
    assert (
        one["formats"] == ["ipynb", "zip"]
        and one["max_submissions"] == 50
        and one["title"] == "Add two numbers"
    )
    assert one["due"].startswith("2099-01-01")


def test_the_gradebook_is_for_instructors(client, people, graded):
    assert client.get("/api/gradebook.csv", headers=headers(people, "s1")).status_code == 403
    response = client.get("/api/gradebook.csv", headers=headers(people, "prof"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = {row["Student ID"]: row for row in csv.DictReader(io.StringIO(response.text))}
    assert set(rows) == {"s1", "s2"}  # the whole roster, also those who never submitted
    # add-one is the only assignment with a due date before the others? every assignment has a column.
    assert rows["s1"]["add-one (%)"] == f"{100 * RESULT.score / RESULT.max_score:.2f}"
    assert rows["s2"]["add-one (%)"] == "0.00"
    with_extra = client.get("/api/gradebook.csv?extra=raw&extra=submission", headers=headers(people, "prof"))
    extra_rows = {row["Student ID"]: row for row in csv.DictReader(io.StringIO(with_extra.text))}
    assert graded in extra_rows["s1"].values()  # the counted submission's id, in its own column
    assert not any(value == graded for value in extra_rows["s2"].values())
    moodle = client.get("/api/gradebook/moodle.csv", headers=headers(people, "prof"))
    assert moodle.status_code == 200 and moodle.text.splitlines()[0].startswith("ID number,Email address")
    per_test = client.get("/api/assignments/add-one/tests.csv", headers=headers(people, "prof"))
    assert per_test.status_code == 200 and "s1" in per_test.text


def test_regrade_requeues_all_or_one_student(client, people, graded, db_session):
    assert client.post("/api/assignments/add-one/regrade", headers=headers(people, "s1")).status_code == 403
    assert client.post("/api/assignments/nope/regrade", headers=headers(people, "prof")).status_code == 404
    response = client.post("/api/assignments/add-one/regrade?student=s2", headers=headers(people, "prof"))
    assert response.json() == {"queued": 0}
    response = client.post("/api/assignments/add-one/regrade", headers=headers(people, "prof"))
    assert response.status_code == 202 and response.json() == {"queued": 1}
    row = db_session.get(Submission, graded, populate_existing=True)
    assert row.status == "queued" and row.attempts == 0


def test_a_smoke_run_is_recorded_for_instructors_only(client, people):
    run = {"passed": True, "detail": "full marks"}
    assert (
        client.post("/api/assignments/add-one/smoke", json=run, headers=headers(people, "s1")).status_code
        == 403
    )
    assert (
        client.post("/api/assignments/nope/smoke", json=run, headers=headers(people, "prof")).status_code
        == 404
    )
    response = client.post("/api/assignments/add-one/smoke", json=run, headers=headers(people, "prof"))
    assert response.status_code == 201
    assert response.json()["assignment"] == "add-one" and response.json()["passed"] is True


def test_an_unreachable_database_is_503_not_a_traceback(tmp_path, course):
    # Nothing listens on port 1: every connection is refused, as when PostgreSQL is down.
    down = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/grader",
        data_dir=tmp_path,
        assignments_dir=course,
    )
    app.dependency_overrides[current_settings] = lambda: down
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/api/assignments", headers={"Authorization": "Bearer grd_x"})
            upload_response = upload(client, {"Authorization": "Bearer grd_x"})
    finally:
        app.dependency_overrides.clear()
    for r in (response, upload_response):
        assert r.status_code == 503
        assert r.json() == {
            "detail": "the database is unavailable; nothing was changed, try again in a moment"
        }


def test_the_openapi_page_documents_the_upload_and_its_refusals():
    post = app.openapi()["paths"]["/api/submissions"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["assignment", "file"] and "student" in form["properties"]
    assert {"202", "401", "403", "404", "413", "415", "422", "429", "503"} <= set(post["responses"])

"""Issue 12: attacks on the service that worked. Nothing a student sends may become our error, beat a
limit, or earn points. Each test replays one attack against a database built by the migrations.

The parallel tests send requests from threads through the real app, with a session per request, on
both SQLite (the embedded default) and PostgreSQL.
"""

import csv
import io
import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from grader import accounts, auth
from grader.config import get_settings
from grader.db import session_factory
from grader.main import app
from grader.models import ApiToken, Submission, User
from tests.fixtures.services import PASSES

NOTEBOOK = json.dumps(
    {
        "cells": [
            {
                "cell_type": "code",
                "id": "c1",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": "def add(a, b):\n    return a + b\n",
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
).encode()


def edit(course, slug: str, **tables: str) -> None:
    """Append TOML tables to an assignment's config, e.g. submissions='per_hour = 5'."""
    path = course / slug / "assignment.toml"
    path.write_text(path.read_text() + "".join(f"\n[{table}]\n{body}\n" for table, body in tables.items()))


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request, tmp_path, course, monkeypatch):
    """The app's settings on a migrated SQLite file or PostgreSQL database, with real sessions."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "committed_pg")
    monkeypatch.setenv("GRADER_DATABASE_URL", url)
    monkeypatch.setenv("GRADER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRADER_ASSIGNMENTS_DIR", str(course))
    monkeypatch.delenv("GRADER_BROKER_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def new_user(settings, login: str, role: str = "student", *, secret: str | None = None) -> dict[str, str]:
    """A committed user with a bearer token; returns the Authorization header."""
    with session_factory(settings)() as session:
        user = auth.get_or_create_user(session=session, login=login, role=role)
        if secret is not None:
            user.secret_hash = accounts.hash_secret(secret)
        token = auth.create_token(session=session, user=user, lifetime=timedelta(days=1))
        session.commit()
    return {"Authorization": f"Bearer {token}"}


def post_upload(who, *, assignment="add-one", data=PASSES, filename="hw.zip"):
    # A client per call: no client state is shared between the threads of the parallel tests.
    return TestClient(app).post(
        "/api/submissions", headers=who, data={"assignment": assignment}, files={"file": (filename, data)}
    )


def count_submissions(settings) -> int:
    with session_factory(settings)() as session:
        return session.scalar(select(func.count()).select_from(Submission))


def in_parallel(calls: int, fn):
    """Run fn(i) for i in range(calls) in as many threads, released together."""
    start = threading.Barrier(calls)

    def run(i):
        start.wait()
        return fn(i)

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(run, range(calls)))


# ---- 2. unreleased assignments ----------------------------------------------------------------------


def test_an_unreleased_assignment_refuses_student_uploads_on_every_path(service, course):
    path = course / "add-one" / "assignment.toml"
    path.write_text(
        path.read_text().replace("released = 2020-01-01T00:00:00Z", "released = 2098-01-01T00:00:00Z")
    )
    student = new_user(service, "s1")
    api = post_upload(student)
    assert api.status_code == 404, api.text
    assert "add-one" in api.json()["detail"]
    # The web form: the same rule, even for a request made without loading the page.
    with session_factory(service)() as session:
        user = session.scalar(select(User).where(User.login == "s1"))
        cookie = accounts.open_session(session, user)
        session.commit()
    with session_factory(service)() as session:
        csrf_token = session.scalar(select(accounts.WebSession.csrf_token))
    page = TestClient(app, cookies={"grader_session": cookie}).post(
        "/assignments/add-one/submit",
        data={"csrf_token": csrf_token},
        files={"file": ("hw.zip", PASSES)},
        headers={"Accept": "application/json"},
    )
    assert page.status_code == 404
    assert count_submissions(service) == 0
    # Instructors test an assignment before it is released (grader smoke).
    prof = new_user(service, "prof", "instructor")
    assert post_upload(prof).status_code == 202


# ---- 3. the hourly limit under parallel uploads -----------------------------------------------------


def test_parallel_uploads_cannot_beat_the_hourly_limit(service, course):
    edit(course, "add-one", submissions="per_hour = 5")
    student = new_user(service, "s1")
    codes = in_parallel(20, lambda _: post_upload(student).status_code)
    assert sorted(codes) == [202] * 5 + [429] * 15, codes
    assert count_submissions(service) == 5


def test_parallel_uploads_cannot_beat_the_submission_maximum(service, course):
    edit(course, "add-one", submissions="max = 3")
    student = new_user(service, "s1")
    codes = in_parallel(12, lambda _: post_upload(student).status_code)
    assert sorted(codes) == [202] * 3 + [429] * 9, codes
    assert count_submissions(service) == 3


# ---- 4. the sign-in lockout under parallel guesses -------------------------------------------------------


@pytest.fixture
def checked_secrets(monkeypatch):
    """Counts the secrets actually checked against an account's hash (not the unknown-id dummy)."""
    seen = {"count": 0}
    lock = threading.Lock()
    real = accounts.verify_secret

    def counting(secret, stored):
        if stored != accounts._DUMMY_HASH:
            with lock:
                seen["count"] += 1
        return real(secret, stored)

    monkeypatch.setattr(accounts, "verify_secret", counting)
    return seen


def guess(settings, login: str, secret: str) -> str:
    """One sign-in attempt as the page makes it: sign_in, then commit."""
    with session_factory(settings)() as session:
        try:
            user = accounts.sign_in(session, login=login, secret=secret)
        except accounts.LockedOut:
            return "locked"
        session.commit()
        return "ok" if user else "wrong"


@pytest.mark.parametrize("guesses", [12, 60])
def test_parallel_guesses_check_at_most_ten_secrets_and_lock_the_id(service, checked_secrets, guesses):
    secret = accounts.new_secret()
    new_user(service, "s1", secret=secret)
    outcomes = in_parallel(guesses, lambda i: guess(service, "s1", f"wrong-{i}"))
    assert checked_secrets["count"] <= accounts.MAX_FAILED_SIGNINS, outcomes
    assert outcomes.count("wrong") == checked_secrets["count"]
    assert set(outcomes) <= {"wrong", "locked"}
    # Ten wrong secrets in a row were checked (or refused), so the id is locked, the right secret too.
    assert guess(service, "s1", secret) == "locked"
    with session_factory(service)() as session:
        user = session.scalar(select(User).where(User.login == "s1"))
        assert user.signin_locked_until > datetime.now(UTC) + timedelta(minutes=14)


def test_the_lockout_still_counts_in_a_row_and_ends(service):
    secret = accounts.new_secret()
    new_user(service, "s2", secret=secret)
    for _ in range(accounts.MAX_FAILED_SIGNINS - 1):
        assert guess(service, "s2", "wrong") == "wrong"
    assert guess(service, "s2", secret) == "ok"  # a right one resets the count
    for _ in range(accounts.MAX_FAILED_SIGNINS):
        assert guess(service, "s2", "wrong") == "wrong"
    assert guess(service, "s2", secret) == "locked"
    later = datetime.now(UTC) + accounts.SIGNIN_LOCKOUT + timedelta(seconds=1)
    with session_factory(service)() as session:
        assert accounts.sign_in(session, login="s2", secret=secret, now=later) is not None
        session.commit()
    with session_factory(service)() as session:
        user = session.scalar(select(User).where(User.login == "s2"))
        assert (user.failed_signins, user.signin_locked_until) == (0, None)
    assert guess(service, "nobody", "x") == "wrong"  # unknown ids hold no state


# ---- 5. long file names -----------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "data"), [(".ipynb", NOTEBOOK), (".zip", PASSES), (".IPYNB", NOTEBOOK)])
def test_a_long_file_name_keeps_its_extension(service, suffix, data):
    from grader.uploads import detect_format

    student = new_user(service, "s1")
    name = "é" * 300 + suffix
    response = post_upload(student, data=data, filename=name)
    assert response.status_code == 202, response.text
    with session_factory(service)() as session:
        row = session.get(Submission, response.json()["id"])
    assert len(row.filename) <= 256 and row.filename.endswith(suffix)
    # The worker reads the format back from the stored name: it must be the one accepted.
    assert detect_format(row.filename, data[:64]) == row.format


# ---- 6. formulas in CSV exports ----------------------------------------------------------------------

FORMULAS = [
    '=HYPERLINK("http://evil.example","x")',
    "+cmd|'/C calc'!A0",
    "@SUM(1+1)",
    "-2+3+cmd|' /C calc'!A0",
]


def test_csv_cells_that_spreadsheets_would_run_are_neutralised():
    from grader.csv_export import safe_cell

    for text in [*FORMULAS, "\t=1+1", "\r=1+1"]:
        assert safe_cell(text) == "'" + text
    # Numbers stay numbers, negative ones included; other text is untouched.
    for text in ["-5", "-12.50", "+3", "1e-3", "12.50", "", "Ada Lovelace", "a=b", "'=already"]:
        assert safe_cell(text) == text


def cells(lines) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(lines))))


def formula_cells(table: list[list[str]]) -> list[str]:
    from grader.csv_export import FORMULA_START, NUMBER

    return [c for row in table for c in row if c.startswith(FORMULA_START) and not NUMBER.fullmatch(c)]


def test_roster_names_cannot_inject_formulas_into_any_export(db_session, course):
    from grader import gradebook, gradebook_export
    from grader.assignments import load_all
    from grader.results import GradeResult, TestResult

    assignments = gradebook.in_order(load_all(course).values())
    for i, name in enumerate(FORMULAS):
        user = User(login=f"s{i}", name=name, email=f"{name}@x", role="student")
        db_session.add(user)
        db_session.flush()
        result = GradeResult(
            status="graded",
            score=1,
            max_score=2,
            tests=[
                TestResult(name="=test_x()", points=1, max_points=1, outcome="passed"),
                TestResult(name="test_y", points=0, max_points=1, outcome="failed"),
            ],
        )
        db_session.add(
            Submission(
                user_id=user.id,
                assignment="add-one",
                sha256="0" * 64,
                filename="hw.zip",
                format="zip",
                status="graded",
                score=1,
                max_score=2,
                result=result.model_dump(mode="json"),
            )
        )
    db_session.commit()
    course_config = assignments[0].course
    exports = {
        "gradebook": gradebook_export.export_csv(
            session=db_session, assignments=assignments, course=course_config, extra=["raw", "late"]
        ),
        "moodle": gradebook_export.export_moodle_csv(
            session=db_session, assignments=assignments, course=course_config
        ),
        "tests": gradebook_export.export_per_test_csv(
            session=db_session, assignment=next(a for a in assignments if a.slug == "add-one")
        ),
    }
    for which, lines in exports.items():
        table = cells(lines)
        assert formula_cells(table) == [], which
        names = [row[2 if which == "moodle" else 1] for row in table[1:]]
        assert {"'" + name for name in FORMULAS} <= set(names), which
    # Percent columns are still numbers.
    table = cells(
        gradebook_export.export_csv(session=db_session, assignments=assignments, course=course_config)
    )
    column = table[0].index("add-one (%)")
    assert {row[column] for row in table[1:]} == {"50.00"}


def test_the_new_secrets_mail_merge_file_is_neutralised_too():
    row = accounts.RosterRow(line=2, login="s1", name="=1+1", email="@x")
    table = cells([accounts.secrets_csv([(row, "k7fq-9xm2")])])
    assert table[1] == ["s1", "'=1+1", "'@x", "k7fq-9xm2"]


# ---- 8. tokens: revoke, expiry, one spelling of an id ----------------------------------------------------


def cli(*args: str):
    from typer.testing import CliRunner

    from grader.cli import app as cli_app

    return CliRunner().invoke(cli_app, list(args))


def test_a_token_can_be_revoked_from_the_cli_and_the_api(service):
    token = cli("token", "create", "--student", "s1").stdout.strip()
    other = cli("token", "create", "--student", "s1").stdout.strip()
    assert (
        TestClient(app).get("/api/assignments", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    result = cli("token", "revoke", token)
    assert result.exit_code == 0, result.output
    assert (
        TestClient(app).get("/api/assignments", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
    # Revoking one leaves the others; the API revokes the token it is called with.
    who = {"Authorization": f"Bearer {other}"}
    assert TestClient(app).get("/api/assignments", headers=who).status_code == 200
    assert TestClient(app).delete("/api/token", headers=who).status_code == 204
    assert TestClient(app).get("/api/assignments", headers=who).status_code == 401
    # All of an account's tokens at once.
    tokens = [cli("token", "create", "--student", "s2").stdout.strip() for _ in range(2)]
    result = cli("token", "revoke", "--login", "S2")
    assert result.exit_code == 0 and "2" in result.output
    for token in tokens:
        assert (
            TestClient(app).get("/api/assignments", headers={"Authorization": f"Bearer {token}"}).status_code
            == 401
        )
    assert cli("token", "revoke", "grd_no-such-token").exit_code == 1


def test_tokens_expire(service, monkeypatch):
    token = cli("token", "create", "--student", "s1", "--expires-in", "2h").stdout.strip()
    with session_factory(service)() as session:
        row = session.scalar(select(ApiToken))
        assert timedelta(minutes=119) < row.expires_at - datetime.now(UTC) <= timedelta(hours=2)
        session.execute(update(ApiToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
    assert (
        TestClient(app).get("/api/assignments", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
    # The default lifetime is a setting.
    monkeypatch.setenv("GRADER_TOKEN_LIFETIME_DAYS", "30")
    get_settings.cache_clear()
    cli("token", "create", "--student", "s3")
    with session_factory(get_settings())() as session:
        newest = session.scalar(select(ApiToken).order_by(ApiToken.id.desc()))
        assert timedelta(days=29, hours=23) < newest.expires_at - datetime.now(UTC) <= timedelta(days=30)
    assert cli("token", "create", "--student", "s1", "--expires-in", "soon").exit_code == 2


def test_resetting_a_secret_revokes_the_students_tokens(service):
    token = cli("token", "create", "--student", "s1").stdout.strip()
    with session_factory(service)() as session:
        session.scalar(select(User).where(User.login == "s1")).secret_hash = accounts.hash_secret("x")
        session.commit()
    assert cli("roster", "reset-secret", "s1").exit_code == 0
    assert (
        TestClient(app).get("/api/assignments", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )


def test_a_student_id_has_one_spelling_everywhere(service, tmp_path):
    token = cli("token", "create", "--student", " S123 ").stdout.strip()
    roster = tmp_path / "roster.csv"
    roster.write_text("Student ID,Name,Email\nS123,Ada Lovelace,ada@example.edu\n")
    assert cli("roster", "import", str(roster)).exit_code == 0
    with session_factory(service)() as session:
        assert session.scalars(select(User.login)).all() == ["s123"]
    who = {"Authorization": f"Bearer {token}"}
    assert post_upload(who).status_code == 202
    prof = new_user(service, "prof", "instructor")
    response = TestClient(app).post(
        "/api/submissions",
        headers=prof,
        data={"assignment": "add-one", "student": "S123"},
        files={"file": ("hw.zip", PASSES)},
    )
    assert response.status_code == 202 and response.json()["student"] == "s123"
    listed = TestClient(app).get("/api/submissions?student=S123", headers=prof).json()
    assert len(listed) == 2
    regrade = TestClient(app).post("/api/assignments/add-one/regrade?student=S123", headers=prof)
    assert regrade.json() == {"queued": 2}


def test_the_migration_gives_old_tokens_an_expiry_and_respells_logins(tmp_path):
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from grader import db

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.migrate(url, "0003")
    created = datetime.now(UTC) - timedelta(days=200)
    with db.get_engine(url).begin() as connection:
        for login in ("S123", "s9", " X7 ", "x7"):
            connection.execute(
                text(
                    "INSERT INTO users (login, name, email, role, failed_signins, created_at) "
                    "VALUES (:login, '', '', 'student', 0, :at)"
                ),
                {"login": login, "at": created.replace(tzinfo=None)},
            )
        connection.execute(
            text(
                "INSERT INTO api_tokens (token_sha256, user_id, created_at, revoked) VALUES ('ab', 1, :at, 0)"
            ),
            {"at": created.replace(tzinfo=None)},
        )
    db.migrate(url)
    with Session(db.get_engine(url)) as session:
        assert sorted(session.scalars(select(User.login))) == [" X7 ", "s123", "s9", "x7"]  # a clash stays
        token = session.scalar(select(ApiToken))
        assert abs(token.expires_at - (created + timedelta(days=180))) < timedelta(seconds=1)
    db.get_engine(url).dispose()


# ---- 9. a broker that lost its queue ---------------------------------------------------------------------


def redis(*args: str) -> str:
    return subprocess.run(["redis-cli", "-n", "15", *args], check=True, capture_output=True, text=True).stdout


def test_queued_submissions_the_broker_lost_are_sent_again_at_the_next_sweep(
    sqlite_url, tmp_path, redis_broker
):
    from grader import dispatch, sweeper
    from grader.config import Settings

    settings = Settings(database_url=sqlite_url, broker_url=redis_broker, data_dir=tmp_path / "data")
    with session_factory(settings)() as session:
        user = User(login="s1", role="student")
        session.add(user)
        session.flush()
        subs = [
            Submission(
                user_id=user.id,
                assignment="add-one",
                sha256="0" * 64,
                filename="hw.zip",
                format="zip",
                submitted_at=datetime.now(UTC) - timedelta(minutes=1),
            )
            for _ in range(3)
        ]
        session.add_all(subs)
        session.commit()
        assert (
            dispatch.enqueue(session=session, settings=settings, submissions=[(s.id, "cpu") for s in subs])
            == 3
        )

    def sent_long_ago() -> None:
        # Older than the grace a fresh send gets, far younger than requeue_after_s.
        with session_factory(settings)() as session:
            session.execute(update(Submission).values(enqueued_at=datetime.now(UTC) - timedelta(seconds=30)))
            session.commit()

    sent_long_ago()
    # Everything is in the broker: nothing is sent twice.
    assert sweeper.sweep(settings=settings)["sent"] == 0
    assert redis("llen", "cpu").strip() == "3"
    # One task was delivered to a worker, which has not acknowledged it yet: still held.
    message = redis("rpop", "cpu").strip()
    redis("hset", "unacked", "tag-1", json.dumps([json.loads(message), "", "cpu"]))
    assert sweeper.sweep(settings=settings)["sent"] == 0
    # The broker restarts empty: each lost task is sent again at the next sweep, once.
    redis("flushdb")
    assert sweeper.sweep(settings=settings)["sent"] == 3
    assert redis("llen", "cpu").strip() == "3"
    sent_long_ago()
    assert sweeper.sweep(settings=settings)["sent"] == 0
    assert redis("llen", "cpu").strip() == "3"

"""The gradebook's database adapter: the hand-worked roster stored through the models, exported back."""

import csv
import io

import pytest
from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session

from grader.gradebook_export import export_csv, export_moodle_csv, export_per_test_csv
from grader.models import Excusal, Extension, Submission, User
from tests.test_gradebook import ASSIGNMENTS, COURSE, EXCUSALS, EXPECTED, EXTENSIONS, HW1, ROSTER, SUBMISSIONS


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request):
    """The shared databases built by the migrations: SQLite (embedded) and PostgreSQL, rolled back."""
    if request.param == "postgresql":
        yield request.getfixturevalue("db_session")
        return
    engine = create_engine(request.getfixturevalue("sqlite_url"))
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.fixture
def stored(session):
    """The roster of tests/test_gradebook.py in the database, plus an instructor who must not appear."""
    users = {s.student_id: User(login=s.student_id, name=s.name, email=s.email) for s in ROSTER}
    users["ta"] = User(login="ta", name="Teaching Assistant", email="ta@example.edu", role="instructor")
    session.add_all(users.values())
    session.flush()
    ids = {}
    for row in SUBMISSIONS:
        result = {"status": row.status, "tests": [{"name": "test_a", "outcome": "passed"}]}
        submission = Submission(
            user_id=users[row.student_id].id,
            assignment=row.assignment,
            submitted_at=row.submitted_at,
            sha256="0" * 64,
            filename="submission.ipynb",
            format="ipynb",
            status=row.status,
            score=row.score,
            max_score=row.max_score,
            pinned=row.pinned,
            result=result,
        )
        session.add(submission)
        session.flush()
        ids[row.id] = submission.id
    for ext in EXTENSIONS:
        session.add(Extension(user_id=users[ext.student_id].id, assignment=ext.assignment, due=ext.due))
    for exc in EXCUSALS:
        session.add(Excusal(user_id=users[exc.student_id].id, assignment=exc.assignment))
    session.commit()
    return ids


def read(lines) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(lines))))


def count_queries(session) -> list[str]:
    statements: list[str] = []

    # Only SELECTs: the rolled-back test session also emits SAVEPOINT statements.
    def seen(conn, cursor, statement, *rest):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(session.get_bind(), "before_cursor_execute", seen)
    return statements


def test_database_export_matches_the_hand_computation(session, stored):
    statements = count_queries(session)
    lines = export_csv(session=session, assignments=ASSIGNMENTS, course=COURSE, extra=["submission"])
    rows = read(lines)
    # Students only (the instructor is left out), in login order, also those without a submission.
    assert [r["Student ID"] for r in rows] == sorted(s.student_id for s in ROSTER)
    for row in rows:
        got = (row["hw1 (%)"], row["hw2 (%)"], row["hw3 (%)"], row["Assignments (45)"])
        assert got == EXPECTED[row["Student ID"]], row["Student ID"]
    # Roster, extensions, excusals, the teams' uploads, submissions: no query per student.
    assert len(statements) == 5


def test_database_export_matches_the_database(session, stored):
    lines = export_csv(session=session, assignments=ASSIGNMENTS, course=COURSE, extra=["submission"])
    rows = {r["Student ID"]: r for r in read(lines)}
    users = {u.login: u for u in session.scalars(select(User).where(User.role == "student"))}
    assert set(rows) == set(users)
    for login, user in users.items():
        assert (rows[login]["Name"], rows[login]["Email"]) == (user.name, user.email)
    # Every submission id in the file is a stored submission of that student and assignment.
    for login, row in rows.items():
        for a in ASSIGNMENTS:
            sid = row[f"{a.slug} submission"]
            if sid:
                stored_sub = session.get(Submission, sid)
                assert (stored_sub.user_id, stored_sub.assignment) == (users[login].id, a.slug)
    assert rows["s2"]["hw1 submission"] == stored[11] and rows["s4"]["hw3 submission"] == stored[32]


def test_database_moodle_and_per_test_exports(session, stored):
    moodle = read(export_moodle_csv(session=session, assignments=ASSIGNMENTS, course=COURSE))
    assert list(moodle[0])[:3] == ["ID number", "Email address", "Full name"]
    assert {r["ID number"]: r["Assignments (45)"] for r in moodle} == {k: v[3] for k, v in EXPECTED.items()}
    tests = read(export_per_test_csv(session=session, assignment=HW1))
    by_id = {r["Student ID"]: r for r in tests}
    assert by_id["s2"]["Submission"] == stored[11] and by_id["s2"]["test_a"] == "1"
    assert by_id["s6"]["Status"] == "missing" and by_id["s7"]["Status"] == "excused"

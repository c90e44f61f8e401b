"""Extensions and excusals from the API and the CLI: one at a time, and a CSV of accommodations that is
stored whole or not at all (on the embedded SQLite database, as built by the migrations)."""

import csv
import io
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from grader import accommodations, auth, catalog, db
from grader.cli import app as cli
from grader.config import Settings, get_settings
from grader.deps import current_settings, get_session
from grader.main import app
from grader.models import Excusal, Extension

DUE = datetime.fromisoformat("2099-01-01T00:00:00+00:00")  # add-one's due date (tests/fixtures/service)


@pytest.fixture
def settings(tmp_path, course, sqlite_url, monkeypatch) -> Settings:
    monkeypatch.setenv("GRADER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("GRADER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRADER_ASSIGNMENTS_DIR", str(course))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def session(settings):
    with db.session_factory(settings)() as session:
        catalog.sync(session=session, settings=settings)
        yield session


@pytest.fixture
def who(session) -> dict[str, dict[str, str]]:
    found = {}
    for login, role in (("s1", "student"), ("s2", "student"), ("prof", "instructor")):
        user = auth.get_or_create_user(session=session, login=login, role=role)
        found[login] = {"Authorization": f"Bearer {auth.create_token(session=session, user=user)}"}
    session.commit()
    return found


@pytest.fixture
def client(settings, session):
    app.dependency_overrides[current_settings] = lambda: settings
    app.dependency_overrides[get_session] = lambda: session
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()


def stored(session) -> tuple[int, int]:
    session.expire_all()
    return (
        session.scalar(select(func.count()).select_from(Extension)),
        session.scalar(select(func.count()).select_from(Excusal)),
    )


def test_an_extension_through_the_api(client, who, session):
    done = client.put(
        "/api/extensions/add-one/S1", json={"due": "+2d", "reason": "medical"}, headers=who["prof"]
    )
    assert done.status_code == 200, done.text
    assert datetime.fromisoformat(done.json()["due"]) == DUE + timedelta(days=2)
    listed = client.get("/api/extensions", headers=who["prof"]).json()
    assert [(e["student"], e["assignment"], e["reason"]) for e in listed] == [("s1", "add-one", "medical")]
    assert client.delete("/api/extensions/add-one/s1", headers=who["prof"]).status_code == 204
    assert client.delete("/api/extensions/add-one/s1", headers=who["prof"]).status_code == 404
    assert stored(session) == (0, 0)


def test_a_bad_extension_is_refused_with_the_reason(client, who, session):
    early = client.put("/api/extensions/add-one/s1", json={"due": "2098-12-01T00:00"}, headers=who["prof"])
    assert early.status_code == 422 and "not after the assignment's" in early.json()["detail"]
    cutoff = client.put(
        "/api/extensions/add-one/s1", json={"due": "+3d", "cutoff": "+1d"}, headers=who["prof"]
    )
    assert cutoff.status_code == 422 and "cutoff is before" in cutoff.json()["detail"]
    assert client.put("/api/extensions/nope/s1", json={"due": "+1d"}, headers=who["prof"]).status_code == 404
    assert (
        client.put("/api/extensions/add-one/s9", json={"due": "+1d"}, headers=who["prof"]).status_code == 404
    )
    assert client.put("/api/extensions/add-one/s1", json={"due": "+1d"}, headers=who["s1"]).status_code == 403
    assert stored(session) == (0, 0)


def test_an_excusal_through_the_api_shows_in_the_gradebook(client, who, session):
    done = client.put("/api/excusals/add-one/s2", json={"reason": "documented absence"}, headers=who["prof"])
    assert done.status_code == 200 and done.json()["reason"] == "documented absence"
    rows = list(csv.DictReader(io.StringIO(client.get("/api/gradebook.csv", headers=who["prof"]).text)))
    assert {r["Student ID"]: r["add-one (%)"] for r in rows} == {"s1": "0.00", "s2": "EX"}
    assert client.get("/api/excusals", headers=who["prof"]).json()[0]["student"] == "s2"
    assert client.delete("/api/excusals/add-one/s2", headers=who["prof"]).status_code == 204
    assert stored(session) == (0, 0)


GOOD = """student_id,assignment,kind,due,cutoff,reason
S1,add-one,extension,+3d,,medical report
s2,add-one,excusal,,,documented absence
s2,add-slow,extension,2099-01-05T23:59,2099-01-09T23:59,
"""

BAD = """student_id,assignment,kind,due,cutoff,reason
s1,add-one,extension,+3d,,fine
s9,add-one,extension,+1d,,
s1,hw99,excusal,,,
s2,add-one,holiday,,,
s2,add-slow,extension,tomorrow,,
s2,add-one,extension,+2d,+1d,
s1,add-one,extension,+4d,,
s2,add-gpu,excusal,+1d,,
"""


def test_a_csv_of_accommodations_is_stored_whole(client, who, session):
    done = client.post(
        "/api/accommodations", content=GOOD, headers={**who["prof"], "Content-Type": "text/csv"}
    )
    assert done.status_code == 200, done.text
    assert done.json() == {"extensions": 2, "excusals": 1, "dry_run": False}
    assert stored(session) == (2, 1)
    slow = session.scalar(select(Extension).where(Extension.assignment == "add-slow"))
    # Read in the course's time zone (UTC for the test course).
    assert slow.due == datetime.fromisoformat("2099-01-05T23:59:00+00:00")


def test_one_bad_row_refuses_the_whole_file_with_every_problem(client, who, session):
    done = client.post(
        "/api/accommodations", content=BAD, headers={**who["prof"], "Content-Type": "text/csv"}
    )
    assert done.status_code == 422
    problems = done.json()["detail"]
    assert problems == [
        "line 3: no student 's9' on the roster",
        "line 4: no assignment 'hw99'",
        "line 5: kind 'holiday' must be one of extension, excusal",
        "line 6: 'tomorrow' is not a date and time (2027-03-05T23:59, or +2d / +36h)",
        "line 7: the cutoff is before the new due date",
        "line 8: repeats line 2 (s1, add-one, extension)",
        "line 9: an excusal takes no due date or cutoff",
    ]
    assert stored(session) == (0, 0)  # the good first row was not stored either


def test_a_dry_run_checks_and_stores_nothing(client, who, session):
    done = client.post(
        "/api/accommodations?dry_run=true", content=GOOD, headers={**who["prof"], "Content-Type": "text/csv"}
    )
    assert done.json() == {"extensions": 2, "excusals": 1, "dry_run": True} and stored(session) == (0, 0)


def test_a_file_with_wrong_columns_is_refused():
    with pytest.raises(accommodations.BadAccommodations) as refused:
        accommodations.parse("student,slug\n", assignments={}, students=set())
    assert refused.value.problems[0] == "line 1: missing column(s) student_id, assignment, kind"


def test_the_cli_one_at_a_time_and_from_a_csv(settings, who, session, tmp_path):
    runner = CliRunner()
    done = runner.invoke(cli, ["extension", "grant", "s1", "add-one", "--due", "+36h", "--reason", "flu"])
    assert done.exit_code == 0, done.output
    assert stored(session) == (1, 0)
    assert session.scalar(select(Extension)).due == DUE + timedelta(hours=36)
    assert runner.invoke(cli, ["excusal", "add", "s2", "add-one"]).exit_code == 0
    assert stored(session) == (1, 1)
    bad = runner.invoke(cli, ["extension", "grant", "s1", "add-one", "--due", "soon"])
    assert bad.exit_code == 2 and "is not a date and time" in bad.output
    assert runner.invoke(cli, ["extension", "remove", "s1", "add-one"]).exit_code == 0
    assert runner.invoke(cli, ["excusal", "remove", "s2", "add-one"]).exit_code == 0
    assert stored(session) == (0, 0)

    (tmp_path / "bad.csv").write_text(BAD)
    refused = runner.invoke(cli, ["accommodations", "import", str(tmp_path / "bad.csv")])
    assert refused.exit_code == 1 and "refused, nothing stored (7 problem(s))" in refused.output
    assert "line 3: no student 's9' on the roster" in refused.output
    assert stored(session) == (0, 0)
    (tmp_path / "good.csv").write_text(GOOD)
    done = runner.invoke(cli, ["accommodations", "import", str(tmp_path / "good.csv")])
    assert done.exit_code == 0 and "stored 2 extension(s) and 1 excusal(s)" in done.output
    assert stored(session) == (2, 1)

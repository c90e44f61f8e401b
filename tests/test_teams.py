"""The project's teams: the team CSV, one upload for the team that every member sees, PDF uploads with
their size limit, and the team's grade in every member's gradebook row."""

import csv
import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from grader import auth, catalog, db, teams
from grader.assignments import TeamSizes
from grader.cli import app as cli
from grader.config import Settings, get_settings
from grader.deps import current_settings, get_session
from grader.main import app
from grader.models import Submission, Team

PDF = b"%PDF-1.4\n% a tiny report\n"
MILESTONE = """title = "Project: proposal"
kind = "project"
released = 2020-01-01T00:00:00Z
due = 2099-01-01T00:00:00Z
weight = 2
formats = ["pdf"]
max_upload_mb = 0.001

[[questions]]
id = "plan"
title = "The plan"
points = 8
rubric = [{ label = "A plan", points = 8 }]
"""


@pytest.fixture
def settings(tmp_path, course, sqlite_url, monkeypatch) -> Settings:
    (course / "proposal").mkdir()
    (course / "proposal" / "assignment.toml").write_text(MILESTONE)
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
    for login, role in [(f"s{i}", "student") for i in range(1, 7)] + [("prof", "instructor")]:
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


ROSTER = {f"s{i}" for i in range(1, 7)}


def test_the_team_csv_is_checked_as_a_whole():
    text = """team,student_id
vision,s1
vision,S2
solo,s3
big,s4
big,s5
big,s6
big,s7
vision,s1
other,s4
"""
    with pytest.raises(teams.BadTeams) as refused:
        teams.parse(text, students=ROSTER, sizes=TeamSizes(min_size=2, max_size=3))
    assert refused.value.problems == [
        "line 8: no student 's7' on the roster",
        "line 9: s1 is listed again",
        "line 10: s4 is listed in two teams: 'big' (line 5) and 'other'",
        "team 'solo' has 1 student(s); teams are 2-3",
    ]
    good = teams.parse("team,student_id\nvision,s1\nvision,s2\n", students=ROSTER, sizes=TeamSizes())
    assert good == {"vision": ["s1", "s2"]}


def test_import_replaces_the_teams_but_keeps_those_that_uploaded(client, who, session, tmp_path):
    runner = CliRunner()
    (tmp_path / "teams.csv").write_text("team,student_id\nvision,s1\nvision,s2\ngen,s3\ngen,s4\ngen,s5\n")
    done = runner.invoke(cli, ["teams", "import", str(tmp_path / "teams.csv")])
    assert done.exit_code == 0 and "2 team(s) of 5 student(s)" in done.output, done.output
    assert teams.listing(session) == [("gen", ["s3", "s4", "s5"]), ("vision", ["s1", "s2"])]
    upload = client.post(
        "/api/submissions", headers=who["s3"], data={"assignment": "proposal"}, files={"file": ("p.pdf", PDF)}
    )
    assert upload.status_code == 202, upload.text
    (tmp_path / "teams.csv").write_text("team,student_id\nvision,s1\nvision,s2\nvision,s3\n")
    refused = runner.invoke(cli, ["teams", "import", str(tmp_path / "teams.csv")])
    assert refused.exit_code == 1 and "team 'gen' has uploaded already: keep it in the file" in refused.output
    assert teams.listing(session)[0] == ("gen", ["s3", "s4", "s5"])  # nothing changed


def test_one_upload_counts_for_the_team_and_every_member_sees_it(client, who, session):
    teams.store(session, {"vision": ["s1", "s2"], "gen": ["s3", "s4"]})
    sent = client.post(
        "/api/submissions", headers=who["s1"], data={"assignment": "proposal"}, files={"file": ("p.pdf", PDF)}
    )
    assert sent.status_code == 202, sent.text
    body = sent.json()
    # No automatic check: stored for the rubric, never queued for the sandbox.
    assert body["status"] == "submitted" and body["format"] == "pdf"
    row = session.get(Submission, body["id"])
    assert (
        row.team_id == session.scalar(select(Team.id).where(Team.name == "vision"))
        and row.enqueued_at is None
    )
    mate = client.get("/api/submissions", headers=who["s2"]).json()
    assert [s["id"] for s in mate] == [body["id"]]
    assert client.get(f"/api/submissions/{body['id']}", headers=who["s2"]).status_code == 200
    # Another team, and a student in none, see nothing of it.
    assert client.get(f"/api/submissions/{body['id']}", headers=who["s3"]).status_code == 404
    assert client.get("/api/submissions", headers=who["s5"]).json() == []
    alone = client.post(
        "/api/submissions", headers=who["s5"], data={"assignment": "proposal"}, files={"file": ("p.pdf", PDF)}
    )
    assert alone.status_code == 403 and "in no team" in alone.json()["detail"]

    # The rubric workflow grades it through one member (6 of 8): the grade is the team's, the others
    # get nothing; students see it once the instructor releases the milestone's grades.
    graded = client.put(
        "/api/grading/proposal/students/s2/questions/plan",
        headers=who["prof"],
        json={"items": ["A plan"], "comment": "Tight.", "adjustment": -2, "adjustment_reason": "no baseline"},
    )
    assert graded.status_code == 200, graded.text
    assert client.get("/api/grading/proposal/mine", headers=who["s1"]).json()["released"] is False
    assert client.put(
        "/api/grading/proposal/release", headers=who["prof"], json={"released": True}
    ).is_success
    assert client.get("/api/grading/proposal/mine", headers=who["s1"]).json()["manual_points"] == 6
    table = list(csv.DictReader(io.StringIO(client.get("/api/gradebook.csv", headers=who["prof"]).text)))
    assert {r["Student ID"]: r["proposal (%)"] for r in table} == {
        "s1": "75.00",
        "s2": "75.00",
        "s3": "0.00",
        "s4": "0.00",
        "s5": "0.00",
        "s6": "0.00",
    }


def test_a_pdf_is_checked_for_what_it_is_and_its_size(client, who, session):
    teams.store(session, {"vision": ["s1", "s2"]})

    def send(name: str, data: bytes, slug: str = "proposal"):
        return client.post(
            "/api/submissions", headers=who["s1"], data={"assignment": slug}, files={"file": (name, data)}
        )

    assert send("p.pdf", b"not a pdf").status_code == 422
    too_big = send("p.pdf", PDF + b"x" * 2000)
    assert too_big.status_code == 413 and "at most 0.001 MiB" in too_big.json()["detail"]
    # A homework takes no PDF at all.
    assert send("p.pdf", PDF, slug="add-one").status_code == 415
    assert session.scalar(select(Submission)) is None


def test_a_regrade_leaves_a_milestone_graded_by_hand_alone(client, who, session):
    teams.store(session, {"vision": ["s1", "s2"]})
    sent = client.post(
        "/api/submissions", headers=who["s1"], data={"assignment": "proposal"}, files={"file": ("p.pdf", PDF)}
    )
    row = session.get(Submission, sent.json()["id"])
    row.status, row.score, row.max_score = "graded", 6, 8
    session.commit()
    done = client.post("/api/assignments/proposal/regrade", headers=who["prof"])
    assert done.status_code == 202 and done.json() == {"queued": 0}
    session.refresh(row)
    assert (row.status, row.score) == ("graded", 6)


def test_the_api_says_which_assignments_are_team_milestones(client, who):
    listed = {a["slug"]: a for a in client.get("/api/assignments", headers=who["s1"]).json()}
    assert (listed["proposal"]["kind"], listed["proposal"]["max_upload_mb"]) == ("project", 0.001)
    assert listed["add-one"]["kind"] == "homework" and listed["add-one"]["formats"] == ["ipynb", "zip"]

"""The web pages over HTTP (TestClient) against a database built by the migrations.

Grading is not run here: results are written into the rows the way the worker stores them, so each
page is checked for what it shows, and above all for what it must not show.
"""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from grader import accounts, auth, remembered
from grader.config import get_settings
from grader.db import holds_connection, migrate, session_factory
from grader.models import Submission, User, WebSession
from grader.results import GradeResult, TestResult
from grader.routes import forms

NOW = datetime.now(UTC)
NOTEBOOK = json.dumps(
    {
        "cells": [
            {
                "cell_type": "code",
                "id": "c1",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": "def relu(x):\n    return max(x, 0)\n",
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
).encode()


def write_course(root, *, per_hour: int = 5, hidden: str = "score") -> None:
    (root / "course.toml").write_text(
        'code = "CS 7643"\ntitle = "Deep Learning"\nterm = "Fall 2026"\ntimezone = "America/New_York"\n'
        '[late]\npenalty_percent = 10\nunit = "day"\nmax_penalty_percent = 50\n'
    )
    hw = root / "hw1-mlp"
    (hw / "tests").mkdir(parents=True)
    (hw / "solution").mkdir()
    (hw / "tests" / "test_mlp.py").write_text("def test_relu():\n    assert True\n")
    (hw / "solution" / "submission.py").write_text("def relu(x):\n    return max(x, 0)\n")
    (hw / "assignment.toml").write_text(
        f'title = "HW1: an MLP"\nreleased = {(NOW - timedelta(days=3)).isoformat()}\n'
        f"due = {(NOW + timedelta(days=2)).isoformat()}\nweight = 10\n"
        f'[submissions]\nper_hour = {per_hour}\nmax = 10\n[feedback]\nhidden = "{hidden}"\n'
    )


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A course folder, an empty SQLite database at the migrations' head, and the app."""
    course = tmp_path / "assignments"
    course.mkdir()
    write_course(course)
    monkeypatch.setenv("GRADER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("GRADER_ASSIGNMENTS_DIR", str(course))
    monkeypatch.setenv("GRADER_DATABASE_URL", f"sqlite:///{tmp_path / 'grader.db'}")
    monkeypatch.setenv("GRADER_MAX_UPLOAD_BYTES", "4096")
    monkeypatch.delenv("GRADER_BROKER_URL", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings.effective_database_url)
    from grader.main import app

    yield app, session_factory(settings)
    get_settings.cache_clear()


@pytest.fixture
def db(site):
    with site[1]() as session:
        yield session


def add_user(db, login: str, role: str = "student", name: str = "") -> str:
    secret = accounts.new_secret()
    db.add(
        User(
            login=login,
            name=name or login.title(),
            email=f"{login}@example.edu",
            role=role,
            secret_hash=accounts.hash_secret(secret),
        )
    )
    db.commit()
    return secret


def signed_in(site, login: str, secret: str) -> TestClient:
    client = TestClient(site[0], base_url="http://127.0.0.1")
    page = client.get("/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/signin", data={"login": login, "secret": secret, "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return client


def csrf(client: TestClient, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def graded(db, login: str, *, output: str = "", hidden_message: str = "secret hidden detail") -> Submission:
    """A graded submission, stored as the worker stores it."""
    user = db.scalar(select(User).where(User.login == login))
    result = GradeResult(
        status="graded",
        score=3,
        max_score=5,
        output=output,
        tests=[
            TestResult(
                name="public_tests/test_shapes.py::test_shape",
                points=1,
                max_points=1,
                outcome="passed",
                visibility="public",
            ),
            TestResult(
                name="tests/test_mlp.py::test_hidden_backprop",
                points=0,
                max_points=2,
                outcome="failed",
                message=hidden_message,
                visibility="hidden",
            ),
            TestResult(name="tests/test_mlp.py::test_hidden_relu", points=2, max_points=2, outcome="passed"),
        ],
    )
    sub = Submission(
        user_id=user.id,
        assignment="hw1-mlp",
        submitted_at=NOW - timedelta(hours=2),
        sha256="0" * 64,
        filename="hw1.ipynb",
        format="ipynb",
        status="graded",
        score=3,
        max_score=5,
        result=result.model_dump(mode="json"),
    )
    db.add(sub)
    db.commit()
    return sub


# ---- accounts ---------------------------------------------------------------------------------------


def test_secret_hashing_is_salted_and_checked_in_constant_time():
    first, second = accounts.hash_secret("abcd-efgh"), accounts.hash_secret("abcd-efgh")
    assert first != second  # per-user salt
    assert accounts.verify_secret("abcd-efgh", first)
    assert not accounts.verify_secret("abcd-efgH", first)
    assert not accounts.verify_secret("abcd-efgh", None)
    assert not accounts.verify_secret("abcd-efgh", "scrypt$broken")
    assert re.fullmatch(r"([a-z2-9]{4}-){3}[a-z2-9]{4}", accounts.new_secret())


MOODLE = (
    "First name,Surname,ID number,Email address\nAda,Lovelace,S1001,ada@example.edu\nAlan,Turing,s1002,\n"
)
CANVAS = (
    "Student,ID,SIS User ID,SIS Login ID,Section\n"
    "    Points Possible,,,,\n"
    '"Lovelace, Ada",88231,S1001,ada,CS 7643\n'
    '"Hopper, Grace",88232,S1003,grace,CS 7643\n'
)


def test_roster_headers_of_moodle_and_canvas():
    moodle = accounts.parse_roster(MOODLE)
    assert [(r.login, r.name, r.email) for r in moodle] == [
        ("s1001", "Ada Lovelace", "ada@example.edu"),
        ("s1002", "Alan Turing", ""),
    ]
    canvas = accounts.parse_roster(CANVAS)
    assert [(r.login, r.name) for r in canvas] == [("s1001", "Ada Lovelace"), ("s1003", "Grace Hopper")]
    with pytest.raises(accounts.RosterError, match="no student id column"):
        accounts.parse_roster("Name,Email\nAda,ada@example.edu\n")
    with pytest.raises(accounts.RosterError, match="also on line 2"):
        accounts.parse_roster("Student ID,Name\nS1,Ada\ns1,Ada again\n")


def test_reimporting_the_roster_keeps_secrets_and_submissions(db):
    report = accounts.import_roster(db, accounts.parse_roster(MOODLE))
    db.commit()
    assert len(report.created) == 2
    secret = dict((row.login, s) for row, s in report.created)["s1001"]
    graded(db, "s1001")
    again = accounts.import_roster(db, accounts.parse_roster(MOODLE.replace("Ada,", "Augusta Ada,")))
    db.commit()
    assert (len(again.created), len(again.updated), len(again.unchanged)) == (0, 1, 1)
    assert accounts.authenticate(db, login="S1001", secret=secret) is not None
    assert db.scalar(select(User).where(User.login == "s1001")).name == "Augusta Ada Lovelace"
    assert db.scalar(select(Submission.id).join(User).where(User.login == "s1001")) is not None
    mail = accounts.secrets_csv(report.created)
    assert mail.splitlines()[0] == "login,name,email,secret" and secret in mail


def test_roster_and_instructor_commands(site, tmp_path):
    from typer.testing import CliRunner

    from grader.cli import app

    roster = tmp_path / "roster.csv"
    roster.write_text(MOODLE)
    runner = CliRunner()
    out = tmp_path / "secrets.csv"
    result = runner.invoke(app, ["roster", "import", str(roster), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 3
    result = runner.invoke(app, ["roster", "import", str(roster)])
    assert result.exit_code == 0 and "0 new" in result.output
    result = runner.invoke(app, ["instructor", "create", "--login", "prof", "--name", "Prof X"])
    assert result.exit_code == 0
    secret = result.stdout.strip().splitlines()[-1]
    with site[1]() as session:
        assert accounts.authenticate(session, login="prof", secret=secret).role == "instructor"
    assert runner.invoke(app, ["instructor", "create", "--login", "prof", "--name", "Again"]).exit_code == 1


def test_resetting_a_secret_replaces_it_and_signs_out_the_old_one(site, db):
    from typer.testing import CliRunner

    from grader.cli import app

    old = add_user(db, "s1")
    browser = TestClient(site[0], base_url="http://127.0.0.1")
    signed_in = browser.post(
        "/signin",
        data={"login": "s1", "secret": old, "csrf_token": csrf(browser, "/signin")},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303 and browser.get("/assignments").status_code == 200
    result = CliRunner().invoke(app, ["roster", "reset-secret", "s1"])
    assert result.exit_code == 0, result.output
    new = result.stdout.strip().splitlines()[-1]
    db.expire_all()
    assert accounts.authenticate(db, login="s1", secret=new) is not None
    assert accounts.authenticate(db, login="s1", secret=old) is None
    assert browser.get("/assignments", follow_redirects=False).status_code == 303  # signed out
    missing = CliRunner().invoke(app, ["roster", "reset-secret", "nobody"])
    assert missing.exit_code == 1 and "no account" in missing.output


def test_ten_wrong_secrets_lock_the_id_for_a_while_even_for_the_right_secret(site, db):
    secret = add_user(db, "s1")
    client = TestClient(site[0], base_url="http://127.0.0.1")

    def attempt(guess):
        return client.post(
            "/signin", data={"login": "s1", "secret": guess, "csrf_token": csrf(client, "/signin")}
        )

    for _ in range(accounts.MAX_FAILED_SIGNINS):
        assert attempt("wrong").status_code == 401
    locked = attempt(secret)
    assert locked.status_code == 429 and "locked for 15 more minute(s)" in locked.text
    # The lock ends by itself; a correct secret then signs in and clears the count.
    later = datetime.now(UTC) + accounts.SIGNIN_LOCKOUT + timedelta(seconds=1)
    db.expire_all()
    assert accounts.sign_in(db, login="s1", secret=secret, now=later) is not None
    assert db.scalar(select(User).where(User.login == "s1")).failed_signins == 0


def test_a_wrong_secret_count_resets_after_a_right_one(db):
    secret = add_user(db, "s2")
    for _ in range(accounts.MAX_FAILED_SIGNINS - 1):
        assert accounts.sign_in(db, login="s2", secret="wrong") is None
    assert accounts.sign_in(db, login="s2", secret=secret) is not None
    assert accounts.sign_in(db, login="s2", secret="wrong") is None  # one wrong again: no lock
    assert accounts.sign_in(db, login="s2", secret=secret) is not None
    assert accounts.sign_in(db, login="nobody", secret="x") is None  # unknown ids hold no state


# ---- signing in and out -----------------------------------------------------------------------------


def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_the_session(site, db):
    secret = add_user(db, "s1")
    client = TestClient(site[0], base_url="http://127.0.0.1")
    assert (
        client.get("/assignments", follow_redirects=False).headers["location"] == "/signin?next=/assignments"
    )
    token = csrf(client, "/signin")
    # No CSRF token (a cross-site form) and a wrong secret are both refused.
    assert client.post("/signin", data={"login": "s1", "secret": secret}).status_code == 403
    wrong = client.post("/signin", data={"login": "s1", "secret": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "wrong secret" in wrong.text
    response = client.post(
        "/signin",
        data={"login": " S1 ", "secret": secret, "csrf_token": token, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/assignments"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Secure" not in cookie
    assert client.get("/assignments").status_code == 200
    stolen = client.cookies.get("grader_session")
    assert client.post("/signout", data={}, follow_redirects=False).status_code == 403  # no CSRF token
    out = client.post("/signout", data={"csrf_token": csrf(client, "/assignments")}, follow_redirects=False)
    assert out.status_code == 303
    assert db.scalar(select(WebSession)) is None
    replay = TestClient(site[0], base_url="http://127.0.0.1", cookies={"grader_session": stolen})
    assert replay.get("/assignments", follow_redirects=False).status_code == 303


def test_cookie_is_secure_over_https(site, db):
    secret = add_user(db, "s1")
    client = TestClient(site[0], base_url="https://127.0.0.1")
    token = csrf(client, "/signin")
    response = client.post(
        "/signin", data={"login": "s1", "secret": secret, "csrf_token": token}, follow_redirects=False
    )
    assert "Secure" in response.headers["set-cookie"]


# ---- students ---------------------------------------------------------------------------------------


def test_assignment_list_shows_due_date_in_course_zone_and_limits(site, db):
    client = signed_in(site, "s1", add_user(db, "s1"))
    page = client.get("/assignments").text
    assert "HW1: an MLP" in page and ("EDT" in page or "EST" in page)
    assert "left" in page and "10% off per day" in page
    detail = client.get("/assignments/hw1-mlp").text
    assert 'data-formats="ipynb,zip"' in detail and "at most 5 an hour" in detail


def test_upload_then_the_submission_page_polls(site, db):
    client = signed_in(site, "s1", add_user(db, "s1"))
    token = csrf(client, "/assignments/hw1-mlp")
    response = client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        files={"file": ("hw1.ipynb", NOTEBOOK, "application/json")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    url = response.headers["location"]
    page = client.get(url).text
    assert "queued" in page and f'data-url="{url}/status.json"' in page
    assert client.get(url + "/status.json").json() == {
        "id": url.rsplit("/", 1)[1],
        "status": "queued",
        "done": False,
        "note": "Waiting for a grading worker ...",
    }
    assert "hw1.ipynb" in client.get("/assignments/hw1-mlp").text


def submit_notebook(client: TestClient):
    """Upload NOTEBOOK to hw1-mlp through the form; the answer, its redirect not followed."""
    return client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": csrf(client, "/assignments/hw1-mlp")},
        files={"file": ("hw1.ipynb", NOTEBOOK, "application/json")},
        follow_redirects=False,
    )


def test_a_form_upload_is_accepted_off_the_event_loop(site, db, accept_threads):
    """The route is async to stream the form; its statements and commit must not run on the loop."""
    client = signed_in(site, "s1", add_user(db, "s1"))
    response = submit_notebook(client)
    assert response.status_code == 303 and accept_threads == ["worker thread"]


def test_a_form_upload_with_a_remembered_sign_in_takes_one_thread_hop(site, db, thread_hops):
    # As the API's: the hops cost the event loop more than the statements (bench/README.md 12, 16).
    client = signed_in(site, "s1", add_user(db, "s1"))
    token = csrf(client, "/assignments/hw1-mlp")  # the sign-in is now remembered
    thread_hops.clear()
    response = client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        files={"file": ("hw1.ipynb", NOTEBOOK, "application/json")},
        follow_redirects=False,
    )
    assert response.status_code == 303 and thread_hops == ["_accept_form"], thread_hops


def test_a_form_upload_holds_no_database_connection_while_it_waits_its_turn(site, db, monkeypatch):
    # In a deadline burst most uploads wait for their turn (forms.in_turn); each waiting with a
    # connection would empty the pool for those whose turn it is.
    held, in_turn = [], forms.in_turn

    async def watched(step, *args, **kwargs):
        held.extend(holds_connection(arg) for arg in args if isinstance(arg, Session))
        return await in_turn(step, *args, **kwargs)

    monkeypatch.setattr(forms, "in_turn", watched)
    client = signed_in(site, "s1", add_user(db, "s1"))
    assert submit_notebook(client).status_code == 303
    # The upload's turn; the sign-in, not remembered yet, was read in a session of its own.
    assert held == [False]


@pytest.mark.parametrize("processes, closed", [("1", False), ("2", True)])
def test_an_accepted_form_upload_ends_its_connection_when_several_api_processes_serve(
    site, db, monkeypatch, processes, closed
):
    monkeypatch.setenv("GRADER_API_PROCESSES", processes)  # as `grader api --workers` sets it
    get_settings.cache_clear()
    client = signed_in(site, "s1", add_user(db, "s1"))
    response = submit_notebook(client)
    assert response.status_code == 303
    assert (response.headers.get("connection") == "close") is closed


def test_upload_errors_are_clear(site, db):
    client = signed_in(site, "s1", add_user(db, "s1"))
    token = csrf(client, "/assignments/hw1-mlp")
    as_json = {"Accept": "application/json"}
    wrong = client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        headers=as_json,
        files={"file": ("hw1.pdf", b"%PDF-1.4", "application/pdf")},
    )
    assert wrong.status_code == 400 and "accepts .ipynb or .zip uploads, not .pdf" in wrong.json()["detail"]
    # Without JavaScript the same error comes back in the page.
    page = client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        files={"file": ("hw1.ipynb", b"not json", "application/json")},
    )
    assert page.status_code == 400 and "is not a notebook" in page.text and "<form" in page.text
    big = client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        headers=as_json,
        files={"file": ("hw1.ipynb", b"{" + b" " * 200_000, "application/json")},
    )
    assert big.status_code == 413 and "larger than the limit" in big.json()["detail"]
    forged = client.post(
        "/assignments/hw1-mlp/submit",
        headers=as_json,
        files={"file": ("hw1.ipynb", NOTEBOOK, "application/json")},
    )
    assert forged.status_code == 403
    assert db.scalar(select(Submission)) is None


def test_rate_limit_per_hour_uses_the_apis_rule(site, db, tmp_path):
    write_course_limit = tmp_path / "assignments" / "hw1-mlp" / "assignment.toml"
    write_course_limit.write_text(write_course_limit.read_text().replace("per_hour = 5", "per_hour = 1"))
    client = signed_in(site, "s1", add_user(db, "s1"))
    token = csrf(client, "/assignments/hw1-mlp")
    upload = {"file": ("hw1.ipynb", NOTEBOOK, "application/json")}
    first = client.post(
        "/assignments/hw1-mlp/submit", data={"csrf_token": token}, files=upload, follow_redirects=False
    )
    assert first.status_code == 303
    second = client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        files=upload,
        headers={"Accept": "application/json"},
    )
    assert second.status_code == 429 and "per hour" in second.json()["detail"]
    assert "per hour" in client.get("/assignments/hw1-mlp").text  # the form says so before trying


def test_after_the_cutoff_the_form_refuses_with_403_as_the_api_does(site, db, tmp_path):
    toml = tmp_path / "assignments" / "hw1-mlp" / "assignment.toml"
    due, past = (f"due = {(NOW + timedelta(days=d)).isoformat()}" for d in (2, -2))
    cutoff = f"\n[late]\ncutoff = {(NOW - timedelta(days=1)).isoformat()}\n"
    toml.write_text(toml.read_text().replace(due, past) + cutoff)
    client = signed_in(site, "s1", add_user(db, "s1"))
    token = csrf(client, "/assignments/hw1-mlp")
    upload = {"file": ("hw1.ipynb", NOTEBOOK, "application/json")}
    as_json = client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        files=upload,
        headers={"Accept": "application/json"},
    )
    assert as_json.status_code == 403 and "closed at" in as_json.json()["detail"]
    page = client.post("/assignments/hw1-mlp/submit", data={"csrf_token": token}, files=upload)
    assert page.status_code == 403 and "closed at" in page.text
    assert db.scalar(select(Submission)) is None


def test_result_hides_hidden_tests_and_escapes_output(site, db):
    client = signed_in(site, "s1", add_user(db, "s1"))
    sub = graded(db, "s1", output="<script>alert('pwned')</script>\nloss 0.1")
    page = client.get(f"/submissions/{sub.id}").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    assert "public_tests/test_shapes.py::test_shape" in page
    # feedback.hidden = "score": neither the hidden tests' names nor their messages, only the total.
    assert "test_hidden_backprop" not in page and "secret hidden detail" not in page
    assert "Hidden tests" in page and "2 / 4" in page
    assert "3 / 5" in page and "this one counts" in page
    assert "data-url=" not in page  # done: no more polling


def test_a_student_never_sees_another_students_submission(site, db):
    add_user(db, "s2")
    other = graded(db, "s2", output="s2's private output")
    client = signed_in(site, "s1", add_user(db, "s1"))
    for path in (f"/submissions/{other.id}", f"/submissions/{other.id}/status.json"):
        response = client.get(path)
        assert response.status_code == 404 and "private output" not in response.text
    assert other.id not in client.get("/assignments/hw1-mlp").text
    for path in (
        "/instructor",
        "/instructor/assignments/hw1-mlp",
        "/instructor/students/s2",
        "/instructor/gradebook",
        "/instructor/gradebook.csv",
    ):
        assert client.get(path, follow_redirects=False).status_code == 403, path
    token = csrf(client, "/assignments")
    regrade = client.post(f"/instructor/submissions/{other.id}/regrade", data={"csrf_token": token})
    assert regrade.status_code == 403


def test_hidden_tests_with_names_feedback_show_no_messages(site, db, tmp_path):
    toml = tmp_path / "assignments" / "hw1-mlp" / "assignment.toml"
    toml.write_text(toml.read_text().replace('hidden = "score"', 'hidden = "names"'))
    client = signed_in(site, "s1", add_user(db, "s1"))
    page = client.get(f"/submissions/{graded(db, 's1').id}").text
    assert "test_hidden_backprop" in page and "secret hidden detail" not in page


# ---- instructors --------------------------------------------------------------------------------------


def test_instructor_pages_extensions_regrade_and_gradebook(site, db):
    add_user(db, "s1", name="Ada Lovelace")
    sub = graded(db, "s1", output="<b>bold</b>")
    client = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    overview = client.get("/instructor").text
    assert "HW1: an MLP" in overview and "never run" in overview
    board = client.get("/instructor/assignments/hw1-mlp").text
    assert "test_hidden_backprop" in board and "0 / 1" in board  # the most failed test, hidden included
    assert 'class="histogram"' in board
    student = client.get("/instructor/students/s1").text
    assert "Ada Lovelace" in student and "hw1.ipynb" in student

    token = csrf(client, "/instructor/students/s1")
    response = client.post(
        "/instructor/students/s1/extensions/hw1-mlp",
        data={"csrf_token": token, "due": "2099-01-10T23:59", "reason": "illness"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "Sat 10 Jan 2099, 23:59 EST" in client.get("/instructor/students/s1").text
    bad = client.post(
        "/instructor/students/s1/extensions/hw1-mlp", data={"csrf_token": token, "due": "tomorrow"}
    )
    # Refused, and back on the page's own address (a reload does not post the form again).
    assert bad.status_code == 200 and "is not a date" in bad.text
    assert bad.url.path == "/instructor/students/s1" and bad.history[0].status_code == 303
    assert "is not a date" not in client.get("/instructor/students/s1").text  # shown once

    regrade = client.post(
        f"/instructor/submissions/{sub.id}/regrade",
        data={"csrf_token": token, "back": "/instructor/students/s1"},
        follow_redirects=False,
    )
    assert regrade.status_code == 303
    db.expire_all()
    assert db.get(Submission, sub.id).status == "queued"

    gradebook = client.get("/instructor/gradebook").text
    assert "Download CSV" in gradebook and "s1" in gradebook
    csv_response = client.get("/instructor/gradebook.csv")
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_response.headers["content-disposition"]
    assert "s1" in csv_response.text


def test_students_see_their_extension(site, db):
    secret = add_user(db, "s1")
    prof = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    token = csrf(prof, "/instructor/students/s1")
    prof.post(
        "/instructor/students/s1/extensions/hw1-mlp", data={"csrf_token": token, "due": "2099-01-10T23:59"}
    )
    page = signed_in(site, "s1", secret).get("/assignments").text
    assert "extension" in page and "10 Jan 2099" in page


# ---- issue 15: staff submission page, flash messages, error pages, feedback, roster, CSV ---------------

RICH_NOTEBOOK = json.dumps(
    {
        "cells": [
            {
                "cell_type": "markdown",
                "id": "m1",
                "metadata": {},
                "source": "# My MLP\n<script>alert(1)</script>",
            },
            {
                "cell_type": "code",
                "id": "c1",
                "metadata": {},
                "execution_count": 3,
                "source": "def relu(x):\n    return max(x, 0)\nprint('<b>hi</b>')",
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": ["<b>hi</b>\n"]},
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"text/html": "<img src=x onerror=alert(2)>", "text/plain": "<Figure>"},
                    },
                    {
                        "output_type": "error",
                        "ename": "ValueError",
                        "evalue": "x",
                        "traceback": ["\u001b[0;31mValueError\u001b[0m: x"],
                    },
                ],
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
).encode()


def stored_upload(site, sub: Submission, data: bytes) -> None:
    """Put the upload's bytes where the service keeps them, under the row's sha256."""
    import hashlib

    from grader.storage import upload_path

    sub.sha256 = hashlib.sha256(data).hexdigest()
    path = upload_path(get_settings(), sub.sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_success_banner_is_never_taken_from_the_address(site, db):
    client = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    add_user(db, "s1")
    page = client.get("/instructor/students/s1?ok=Your+account+is+locked:+call+555-0100")
    assert page.status_code == 200 and "call 555-0100" not in page.text
    # A real message travels in a cookie signed with the session's CSRF token, and shows once.
    token = csrf(client, "/instructor/students/s1")
    saved = client.post(
        "/instructor/students/s1/extensions/hw1-mlp", data={"csrf_token": token, "due": "2099-01-10T23:59"}
    )
    assert "Saved the extension on hw1-mlp." in saved.text and "?ok=" not in str(saved.url)
    assert "Saved the extension" not in client.get("/instructor/students/s1").text
    # A forged cookie (any text, a wrong signature) shows nothing.
    client.cookies.set("grader_flash", "b2s6UGhpc2hpbmc=.0000")
    assert "Phishing" not in client.get("/instructor/students/s1").text


def test_a_missing_page_is_an_html_page_with_the_menu_and_the_api_keeps_json(site, db):
    client = signed_in(site, "s1", add_user(db, "s1"))
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "Page not found" in missing.text and 'href="/assignments"' in missing.text  # the nav bar
    assert "Sign out" in missing.text
    unknown = client.get("/assignments/nope")
    assert unknown.status_code == 404 and 'aria-label="Main"' in unknown.text
    api = client.get("/api/nothing-here")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    anonymous = TestClient(site[0], base_url="http://127.0.0.1").get("/no/such/page")
    assert anonymous.status_code == 404 and "Page not found" in anonymous.text


def test_staff_submission_page_shows_the_notebook_tests_output_and_flags(site, db):
    add_user(db, "s1", name="Ada Lovelace")
    sub = graded(db, "s1", output="<script>evil()</script> epoch 1")
    result = GradeResult.model_validate(sub.result)
    result.flags = ["tampering: patched pytest"]
    sub.result, sub.flagged = result.model_dump(mode="json"), True
    stored_upload(site, sub, RICH_NOTEBOOK)
    db.commit()
    prof = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    page = prof.get(f"/instructor/submissions/{sub.id}")
    assert page.status_code == 200
    text = page.text
    # Every test with its message, hidden ones included; flags; the student's output, escaped.
    assert "tests/test_mlp.py::test_hidden_backprop" in text and "secret hidden detail" in text
    assert "tampering: patched pytest" in text and "flagged" in text
    assert "&lt;script&gt;evil()&lt;/script&gt; epoch 1" in text
    # The notebook, read-only: highlighted code, markdown, outputs; nothing of it is live markup.
    assert "<h1>My MLP</h1>" in text and "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'class="highlight"' in text and "relu" in text and "[3]" in text
    assert "&lt;b&gt;hi&lt;/b&gt;" in text and "<b>hi</b>" not in text
    assert "onerror" not in text and "&lt;Figure&gt;" in text  # HTML output shown by its text form
    assert "ValueError" in text and "\x1b" not in text and "[0;31m" not in text
    assert "3 / 5 (60.00%)" in text
    download = prof.get(f"/instructor/submissions/{sub.id}/upload")
    assert download.status_code == 200 and download.content == RICH_NOTEBOOK
    assert (
        "attachment" in download.headers["content-disposition"]
        and "s1-hw1-mlp-" in download.headers["content-disposition"]
    )
    # Linked from the student page; a student never reaches it; an instructor's /submissions/<id> goes there.
    assert f'href="/instructor/submissions/{sub.id}"' in prof.get("/instructor/students/s1").text
    moved = prof.get(f"/submissions/{sub.id}", follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"] == f"/instructor/submissions/{sub.id}"
    student = signed_in(site, "s1x", add_user(db, "s1x"))
    for path in (f"/instructor/submissions/{sub.id}", f"/instructor/submissions/{sub.id}/upload"):
        assert student.get(path, follow_redirects=False).status_code == 403
    assert prof.get("/instructor/submissions/nope").status_code == 404


def test_staff_submission_page_lists_a_zips_files_highlighted(site, db):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hw/submission.py", "def relu(x):\n    return x if x > 0 else 0  # <ok>\n")
        archive.writestr("hw/notes.md", "# Notes")
        archive.writestr("hw/weights.bin", bytes(range(256)))
    add_user(db, "s1")
    sub = graded(db, "s1")
    sub.format, sub.filename = "zip", "hw1.zip"
    stored_upload(site, sub, buffer.getvalue())
    db.commit()
    prof = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    text = prof.get(f"/instructor/submissions/{sub.id}").text
    assert "hw/submission.py" in text and "hw/notes.md" in text and "binary file" in text
    assert '<span class="k">def</span>' in text  # Pygments' Python lexer
    assert "&lt;ok&gt;" in text and "# <ok>" not in text


def test_roster_of_an_assignment_shows_every_student(site, db):
    add_user(db, "s1", name="Ada Lovelace")
    add_user(db, "s2", name="Zoë Ångström")
    sub = graded(db, "s1")
    prof = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    token = csrf(prof, "/instructor/students/s2")
    prof.post(
        "/instructor/students/s2/extensions/hw1-mlp", data={"csrf_token": token, "due": "2099-01-10T23:59"}
    )
    page = prof.get("/instructor/assignments/hw1-mlp/roster")
    assert page.status_code == 200
    text = page.text
    assert "Ada Lovelace" in text and "Zoë Ångström" in text
    assert f'href="/instructor/submissions/{sub.id}"' in text and "3 / 5 (60.00%)" in text
    assert "missing" in text and "to Sat 10 Jan 2099" in text  # s2: no submission, an extension
    assert "data-sortable" in text and 'data-filter-for="roster"' in text
    board = prof.get("/instructor/assignments/hw1-mlp").text
    assert 'href="/instructor/assignments/hw1-mlp/roster"' in board
    assert prof.get("/instructor/assignments/nope/roster").status_code == 404


def test_csv_files_for_a_signed_in_instructor_open_in_excel(site, db):
    add_user(db, "s1", name="Zoë Ångström")
    graded(db, "s1")
    prof = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    page = prof.get("/instructor/gradebook").text
    for path in (
        "/instructor/gradebook.csv",
        "/instructor/gradebook/moodle.csv",
        "/instructor/assignments/hw1-mlp/tests.csv",
    ):
        assert f'href="{path}"' in page, path
        response = prof.get(path)
        assert response.status_code == 200 and "attachment" in response.headers["content-disposition"], path
        assert response.content.startswith(b"\xef\xbb\xbf"), path  # UTF-8 byte order mark, for Excel
        assert "s1" in response.content.decode("utf-8-sig"), path
    assert "Zoë Ångström" in prof.get("/instructor/gradebook.csv").content.decode("utf-8-sig")
    student = signed_in(site, "s9", add_user(db, "s9"))
    assert student.get("/instructor/gradebook/moodle.csv", follow_redirects=False).status_code == 403


def test_student_feedback_says_plainly_what_a_result_means(site, db):
    from grader.results import GradeError
    from grader.web.result_view import plain_statements

    client = signed_in(site, "s1", add_user(db, "s1"))
    sub = graded(db, "s1")
    result = GradeResult.model_validate(sub.result)
    result.tests[0].message = "AssertionError in cell 2, line 3: shape (3,) != (3, 1)"
    result.tests[0].outcome, result.tests[0].points = "failed", 0
    sub.result = result.model_dump(mode="json")
    db.commit()
    page = client.get(f"/submissions/{sub.id}").text
    # Public tests with their messages; hidden ones as the assignment's setting (score: a total only).
    assert "public_tests/test_shapes.py::test_shape" in page and "shape (3,) != (3, 1)" in page
    assert "test_hidden_backprop" not in page and "Hidden tests" in page

    starter = GradeResult(
        status="graded",
        score=0,
        max_score=4,
        tests=[
            TestResult(
                name=f"tests/t.py::test_{i}",
                points=0,
                max_points=2,
                outcome="failed",
                message="NotImplementedError in cell 3, line 2: ",
            )
            for i in range(2)
        ],
    )
    assert "Nothing is implemented yet" in plain_statements(starter)[0]
    broken = GradeResult(
        status="graded",
        score=0,
        max_score=4,
        error=GradeError(kind="student", code="import", message="NameError in cell 2, line 1: np"),
    )
    assert "failed to import" in plain_statements(broken)[0]
    sub.result = starter.model_dump(mode="json")
    db.commit()
    assert "Nothing is implemented yet" in client.get(f"/submissions/{sub.id}").text


def test_an_extension_moves_the_cutoff_students_see(site, db, tmp_path):
    toml = tmp_path / "assignments" / "hw1-mlp" / "assignment.toml"
    cutoff = (NOW + timedelta(days=4)).isoformat()
    toml.write_text(toml.read_text() + f"\n[late]\ncutoff = {cutoff}\n")
    secret = add_user(db, "s1")
    prof = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    token = csrf(prof, "/instructor/students/s1")
    prof.post(
        "/instructor/students/s1/extensions/hw1-mlp",
        data={"csrf_token": token, "due": "2099-12-01T23:59", "cutoff": "2099-12-05T23:59"},
    )
    assert "uploads accepted until Sat 05 Dec 2099, 23:59 EST" in prof.get("/instructor/students/s1").text
    student = signed_in(site, "s1", secret)
    listing = student.get("/assignments").text
    assert "no uploads after Sat 05 Dec 2099" in listing
    page = student.get("/assignments/hw1-mlp").text
    assert "Sat 05 Dec 2099, 23:59 EST" in page and "no uploads after Sat 05 Dec 2099" in page


def test_students_download_the_starter_and_their_own_uploads(site, db, tmp_path):
    starter = tmp_path / "assignments" / "hw1-mlp" / "starter"
    starter.mkdir()
    (starter / "hw1.ipynb").write_bytes(NOTEBOOK)
    client = signed_in(site, "s1", add_user(db, "s1"))
    assert 'href="/assignments/hw1-mlp/starter"' in client.get("/assignments/hw1-mlp").text
    got = client.get("/assignments/hw1-mlp/starter")
    assert (
        got.status_code == 200
        and got.content == NOTEBOOK
        and "attachment" in got.headers["content-disposition"]
    )
    token = csrf(client, "/assignments/hw1-mlp")
    client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        files={"file": ("mine.ipynb", NOTEBOOK, "application/json")},
    )
    sub = db.scalar(select(Submission))
    mine = client.get(f"/submissions/{sub.id}/download")
    assert (
        mine.status_code == 200
        and mine.content == NOTEBOOK
        and "mine.ipynb" in mine.headers["content-disposition"]
    )
    add_user(db, "s2")
    other = graded(db, "s2")
    assert client.get(f"/submissions/{other.id}/download").status_code == 404


def test_refusals_speak_in_local_time_not_utc_or_seconds(site, db, tmp_path):
    toml = tmp_path / "assignments" / "hw1-mlp" / "assignment.toml"
    toml.write_text(toml.read_text().replace("per_hour = 5", "per_hour = 1"))
    client = signed_in(site, "s1", add_user(db, "s1"))
    token = csrf(client, "/assignments/hw1-mlp")
    not_a_notebook = client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        files={"file": ("hw1.ipynb", b'{"name": "not a notebook"}', "application/json")},
        headers={"Accept": "application/json"},
    )
    detail = not_a_notebook.json()["detail"]
    assert "without notebook cells" in detail and "version" not in detail
    upload = {"file": ("hw1.ipynb", NOTEBOOK, "application/json")}
    client.post("/assignments/hw1-mlp/submit", data={"csrf_token": token}, files=upload)
    refused = client.post("/assignments/hw1-mlp/submit", data={"csrf_token": token}, files=upload)
    assert refused.status_code == 429 and "try again at " in refused.text and " s." not in refused.text


def test_lateness_reads_as_time_and_says_what_it_counts_as():
    from grader.assignments import LatePolicy
    from grader.policies import Deadline
    from grader.web.common import lateness_text, score_text

    due = datetime(2026, 9, 18, 3, 59, tzinfo=UTC)
    deadline = Deadline(
        due=due,
        cutoff=None,
        policy=LatePolicy(penalty_percent=10, unit="day", max_penalty_percent=50, grace_minutes=15),
    )
    assert lateness_text(deadline, due - timedelta(minutes=1)) == "on time"
    assert lateness_text(deadline, due + timedelta(minutes=5)) == "5 min late (within the grace period)"
    assert (
        lateness_text(deadline, due + timedelta(hours=10, minutes=12))
        == "10 h 12 min late (counts as 1 day, −10%)"
    )
    assert (
        lateness_text(deadline, due + timedelta(days=2, hours=1))
        == "2 days 1 h late (counts as 3 days, −30%)"
    )
    assert score_text(15.3, 17) == "15.3 / 17 (90.00%)" and score_text(2 / 3, 1) == "0.67 / 1 (66.67%)"


def test_the_smoke_check_runs_from_the_dashboard_and_records_its_verdict(site, db, tmp_path):
    from grader.models import SmokeRun

    hw = tmp_path / "assignments" / "hw1-mlp"
    (hw / "starter").mkdir()
    (hw / "starter" / "submission.py").write_text("def relu(x):\n    raise NotImplementedError\n")
    prof = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    overview = prof.get("/instructor").text
    assert "never run" in overview and 'aria-label="Run the smoke check of HW1: an MLP"' in overview
    started = prof.post(
        "/instructor/assignments/hw1-mlp/smoke", data={"csrf_token": csrf(prof, "/instructor")}
    )
    assert started.status_code == 200 and "Queued the reference solution and the starter" in started.text
    uploads = {sub.filename: sub for sub in db.scalars(select(Submission))}
    assert set(uploads) == {"solution.zip", "starter.zip"}
    assert "checking" in prof.get("/instructor").text and db.scalar(select(SmokeRun)) is None

    def finish(sub: Submission, score: float) -> None:
        test = TestResult(name="tests/test_mlp.py::test_relu", points=score, max_points=1, outcome="passed")
        result = GradeResult(status="graded", score=score, max_score=1, tests=[test])
        sub.status, sub.score, sub.max_score = "graded", score, 1
        sub.result = result.model_dump(mode="json")

    finish(uploads["solution.zip"], 1)
    finish(uploads["starter.zip"], 1)  # the starter passing everything: the tests test nothing
    db.commit()
    page = prof.get("/instructor").text
    run = db.scalar(select(SmokeRun))
    assert run is not None and not run.passed and "starter gets full marks" in run.detail
    assert "fails" in page and "starter gets full marks" in page
    prof.get("/instructor")
    assert len(db.scalars(select(SmokeRun)).all()) == 1  # recorded once


def test_notebook_markdown_cannot_run_script_or_fetch_addresses():
    from grader.web.source_view import notebook_cells, source_view

    cell = {
        "cell_type": "markdown",
        "metadata": {},
        "source": "[click](javascript:alert(1)) ![pixel](http://evil.example/p.png) <img src=x>",
    }
    html = str(notebook_cells(json.dumps({"cells": [cell], "nbformat": 4}).encode())[0].html)
    assert 'href="javascript' not in html and "<img" not in html and "&lt;img src=x&gt;" in html
    assert 'href="http://evil.example/p.png"' in html  # a link to follow or not, never fetched by itself
    assert source_view(b'{"no": "cells"}', "ipynb").kind == "unreadable"
    assert source_view(b"PK not a zip", "zip").problem.startswith("not a readable zip")


def test_open_assignments_come_before_closed_ones(site, db, tmp_path):
    hw0 = tmp_path / "assignments" / "hw0-closed"
    (hw0 / "tests").mkdir(parents=True)
    (hw0 / "solution").mkdir()
    (hw0 / "tests" / "test_x.py").write_text("def test_x():\n    assert True\n")
    (hw0 / "solution" / "submission.py").write_text("x = 1\n")
    (hw0 / "assignment.toml").write_text(
        f'title = "HW0: closed"\nreleased = {(NOW - timedelta(days=9)).isoformat()}\n'
        f"due = {(NOW - timedelta(days=5)).isoformat()}\nweight = 5\n"
        f"[late]\ncutoff = {(NOW - timedelta(days=4)).isoformat()}\n"
    )
    client = signed_in(site, "s1", add_user(db, "s1"))
    page = client.get("/assignments").text
    assert page.index("HW1: an MLP") < page.index("HW0: closed")  # due later, but open


def test_the_effective_late_policy_and_late_days_are_shown(site, db, tmp_path):
    course = tmp_path / "assignments"
    # The course gives 2 late days; the assignment's [late] sets only its cutoff and keeps the penalty.
    text = (course / "course.toml").read_text().replace("[late]", "[late_days]\nbudget = 2\n[late]")
    (course / "course.toml").write_text(text)
    toml = course / "hw1-mlp" / "assignment.toml"
    toml.write_text(toml.read_text() + f"[late]\ncutoff = {(NOW + timedelta(days=9)).isoformat()}\n")
    prof = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    page = prof.get("/instructor/assignments/hw1-mlp").text
    assert "Late policy in effect" in page
    assert re.search(r"<code>penalty_percent</code></td><td>10</td><td>course</td>", page), page
    assert re.search(r"<code>cutoff</code></td><td>[^<]+</td><td>assignment</td>", page)
    student = signed_in(site, "s1", add_user(db, "s1"))
    assert "2 of 2 late days left" in student.get("/assignments").text
    assert "2 of 2 late days left" in student.get("/assignments/hw1-mlp").text


def test_a_page_checks_who_is_signed_in_without_a_thread_hop_per_check(site, db, thread_hops):
    # FastAPI runs a plain function dependency in a worker thread; the role checks are async.
    student = signed_in(site, "s1", add_user(db, "s1"))
    prof = signed_in(site, "prof", add_user(db, "prof", role="instructor"))
    thread_hops.clear()
    assert student.get("/assignments").status_code == 200
    assert prof.get("/instructor").status_code == 200
    assert thread_hops and not {"_signed_in", "_student", "_instructor", "_staff"} & set(thread_hops), (
        thread_hops
    )


def test_a_remembered_sign_in_is_taken_without_a_statement_or_a_thread_hop(site, db, thread_hops):
    # Every page and every upload through the form checks the cookie (grader.remembered).
    student = signed_in(site, "s1", add_user(db, "s1"))
    assert student.get("/assignments").status_code == 200  # checked, and remembered
    statements = []
    event.listen(db.get_bind(), "before_cursor_execute", lambda *args: statements.append(args[2]))
    thread_hops.clear()
    assert student.get("/assignments").status_code == 200
    assert statements and not any("web_sessions" in statement for statement in statements)
    assert not {"_web_session", "load_session"} & set(thread_hops), thread_hops


def test_a_sign_in_or_token_read_from_the_database_waits_its_turn(site, db, turns_taken):
    # Outside the turns, 50 first page loads at once took connections past the pool's size, which were
    # opened and closed again (bench/README.md section 16).
    student = signed_in(site, "s1", add_user(db, "s1"))
    token = auth.create_token(session=db, user=db.scalar(select(User).where(User.login == "s1")))
    db.commit()
    accounts.signed_in.forget()
    turns_taken.clear()
    assert student.get("/assignments").status_code == 200
    assert student.get("/api/assignments", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert [step for step, _ in turns_taken] == ["read_sign_ins", "read_tokens"]


def test_a_form_upload_whose_sign_in_is_read_takes_both_turns_in_its_place(site, db, turns_taken):
    # Its upload's turn, in the order the request came, not behind everyone who came while its sign-in
    # was read: in a burst, students moved between API processes wait twice there (bench/README.md 16).
    client = signed_in(site, "s1", add_user(db, "s1"))
    token = csrf(client, "/assignments/hw1-mlp")
    accounts.signed_in.forget()  # as in another API process, where this student has not been yet
    turns_taken.clear()
    response = client.post(
        "/assignments/hw1-mlp/submit",
        data={"csrf_token": token},
        files={"file": ("hw1.ipynb", NOTEBOOK, "application/json")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert [step for step, _ in turns_taken] == ["read_sign_ins", "_accept_form"]
    assert turns_taken[0][1] == turns_taken[1][1]


def test_a_sign_in_ended_by_another_process_ends_here_within_a_second(site, db, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(remembered.time, "monotonic", lambda: clock[0])
    student = signed_in(site, "s1", add_user(db, "s1"))
    assert student.get("/assignments", follow_redirects=False).status_code == 200
    db.execute(delete(WebSession))  # as `grader roster reset-secret` in a shell, or a sign-out elsewhere
    db.commit()
    assert student.get("/assignments", follow_redirects=False).status_code == 200  # remembered
    clock[0] += 1.01
    assert student.get("/assignments", follow_redirects=False).status_code == 303  # to sign in


def test_a_name_changed_by_a_roster_import_shows_at_once_on_a_signed_in_student_s_pages(site, db):
    student = signed_in(site, "s1", add_user(db, "s1", name="Ada Byron"))
    assert "Ada Byron" in student.get("/assignments").text  # the sign-in is now remembered
    report = accounts.import_roster(
        db, [accounts.RosterRow(line=2, login="s1", name="Ada Lovelace", email="")]
    )
    db.commit()
    assert len(report.updated) == 1
    assert "Ada Lovelace" in student.get("/assignments").text


def test_the_remembered_sign_ins_are_checked_again_in_one_statement(site, db, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(remembered.time, "monotonic", lambda: clock[0])
    kept, ended = signed_in(site, "s1", add_user(db, "s1")), signed_in(site, "s2", add_user(db, "s2"))
    assert kept.get("/assignments").status_code == ended.get("/assignments").status_code == 200
    db.execute(
        delete(WebSession).where(WebSession.user_id == db.scalar(select(User.id).where(User.login == "s2")))
    )
    db.commit()
    statements = []
    event.listen(db.get_bind(), "before_cursor_execute", lambda *args: statements.append(args[2]))
    clock[0] += 0.9
    accounts.recheck_sessions(get_settings())
    assert len(statements) == 1
    clock[0] += 0.9  # past the first check's second: only the check again keeps s1's in memory
    statements.clear()
    assert kept.get("/assignments", follow_redirects=False).status_code == 200
    assert not any("web_sessions" in statement for statement in statements)
    assert ended.get("/assignments", follow_redirects=False).status_code == 303
    clock[0] += remembered.IDLE_S
    accounts.recheck_sessions(get_settings())
    assert len(accounts.signed_in) == 0  # unused for a minute: forgotten

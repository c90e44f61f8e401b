"""The grading pages over HTTP (TestClient, SQLite built by the migrations): a TA grades from the
rubric form and reaches no instructor page, the release switch is the instructor's, and the student's
assignment page shows the rubric comments only once released."""

import hashlib
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from grader import grading
from grader.config import get_settings
from grader.db import migrate, session_factory
from grader.models import ManualGrade, Submission, User
from tests.fixtures.grading import NOW, grade_queued, result, submit_graded, write_course
from tests.fixtures.services import zip_of
from tests.test_web import add_user, csrf, signed_in

NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "## My answer to Q1"},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "source": "print('<b>loss</b>')",
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "<b>loss</b>\n"},
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
                },
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"text/html": "<script>alert(1)</script>"},
                },
            ],
        },
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
def course_site(tmp_path, monkeypatch):
    """The grading course (hw5, with questions), an empty SQLite database at the migrations' head, the app."""
    course = tmp_path / "assignments"
    write_course(course, due=NOW + timedelta(days=2))
    monkeypatch.setenv("GRADER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("GRADER_ASSIGNMENTS_DIR", str(course))
    monkeypatch.setenv("GRADER_DATABASE_URL", f"sqlite:///{tmp_path / 'grader.db'}")
    monkeypatch.delenv("GRADER_BROKER_URL", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings.effective_database_url)
    from grader.main import app

    yield app, session_factory(settings)
    get_settings.cache_clear()


@pytest.fixture
def db(course_site):
    with course_site[1]() as session:
        yield session


def stored_notebook(db, login: str) -> Submission:
    """A graded submission of hw5 whose stored upload is NOTEBOOK."""
    sub = submit_graded(db, db.scalar(select(User).where(User.login == login)), result())
    data = json.dumps(NOTEBOOK).encode()
    digest = hashlib.sha256(data).hexdigest()
    path = get_settings().data_dir / "uploads" / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    sub.sha256 = digest
    db.commit()
    return sub


def test_a_ta_grades_by_question_and_the_student_sees_comments_after_the_release(course_site, db):
    secrets = {login: add_user(db, login) for login in ("s1", "s2")}
    ta = signed_in(course_site, "ta1", add_user(db, "ta1", role="ta"))
    prof = signed_in(course_site, "prof", add_user(db, "prof", role="instructor"))
    for login in secrets:
        stored_notebook(db, login)

    assert ta.get("/", follow_redirects=False).headers["location"] == "/staff/grading"
    index = ta.get("/staff/grading").text
    assert "0 / 2" in index and "Grade q1 by question" in index
    assert ta.get("/instructor").status_code == 403 and ta.get("/instructor/gradebook.csv").status_code == 403

    first = ta.get("/staff/grading/hw5/q/q1")
    assert first.url.path == "/staff/grading/hw5/q/q1/s1"
    page = first.text
    assert "My answer to Q1" in page and "data:image/png;base64,iVBORw0KGgo=" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Look at the schedule." in page  # the comment bank
    token = csrf(ta, "/staff/grading/hw5/q/q1/s1")
    saved = ta.post(
        "/staff/grading/hw5/q/q1/s1",
        data={
            "csrf_token": token,
            "items": ["names the learning rate"],
            "comment": "RUBRIC-NOTE for s1",
            "then": "next",
        },
    )
    assert saved.url.path == "/staff/grading/hw5/q/q1/s2"  # the next ungraded
    assert "1 / 2" in saved.text
    bad = ta.post("/staff/grading/hw5/q/q1/s2", data={"csrf_token": token, "items": ["nope"]})
    assert bad.status_code == 400 and "not in the rubric" in bad.text
    grade = db.scalar(select(ManualGrade).where(ManualGrade.question == "q1"))
    assert (grade.points, grade.comment) == (2, "RUBRIC-NOTE for s1")
    # The instructor's pages count it as the gradebook does: (2 auto + 2 manual) / (5 + 10).
    assert "26.67%" in prof.get("/instructor/students/s1").text
    assert "13.33%" in prof.get("/instructor/students/s2").text  # 2 / 15: q1 and q2 not graded yet

    student = signed_in(course_site, "s1", secrets["s1"])
    before = student.get("/assignments/hw5").text
    assert "Not released yet" in before and "RUBRIC-NOTE" not in before
    assert student.get("/staff/grading").status_code == 403
    refused = ta.post("/staff/grading/hw5/release", data={"csrf_token": token, "released": "1"})
    assert refused.status_code == 403
    prof.post(
        "/staff/grading/hw5/release", data={"csrf_token": csrf(prof, "/staff/grading/hw5"), "released": "1"}
    )
    after = student.get("/assignments/hw5").text
    assert "RUBRIC-NOTE for s1" in after and re.search(r"2 / 10", after)
    other = signed_in(course_site, "s2", secrets["s2"]).get("/assignments/hw5").text
    assert "RUBRIC-NOTE" not in other and "not graded" in other


def test_regrade_preview_pages_are_the_instructor_s(course_site, db):
    add_user(db, "s1")
    stored_notebook(db, "s1")
    ta = signed_in(course_site, "ta1", add_user(db, "ta1", role="ta"))
    prof = signed_in(course_site, "prof", add_user(db, "prof", role="instructor"))
    token = csrf(prof, "/staff/grading/hw5")
    assert (
        ta.post(
            "/staff/grading/hw5/regrade-preview", data={"csrf_token": csrf(ta, "/staff/grading")}
        ).status_code
        == 403
    )
    started = prof.post("/staff/grading/hw5/regrade-preview", data={"csrf_token": token})
    assert re.search(r"/staff/grading/regrades/\d+$", started.url.path)
    assert "still being graded" in started.text and "1 of 1" not in started.text
    assert ta.get(started.url.path).status_code == 403
    discarded = prof.post(started.url.path + "/discard", data={"csrf_token": token})
    assert "every score stays as it was" in discarded.text


def test_the_student_page_says_when_and_from_what_a_submission_was_regraded(course_site, db):
    secret = add_user(db, "s1")
    sub = stored_notebook(db, "s1")  # 2 / 5
    grading.queue_again(session=db, submission_ids=[sub.id])
    student = signed_in(course_site, "s1", secret)
    waiting = student.get(f"/submissions/{sub.id}").text
    assert "2 / 5" in waiting and "Regraded on" not in waiting  # the current score stays meanwhile
    everything = {t.name: True for t in result().tests}
    grade_queued(db, sub.id, result(score_of=everything))
    page = student.get(f"/submissions/{sub.id}").text
    assert re.search(r"Regraded on [^<]+UTC:\s+2\s+→ 5\.", page), page


def test_a_regrade_request_from_the_student_page_and_its_answer(course_site, db):
    secret = add_user(db, "s1")
    stored_notebook(db, "s1")
    ta = signed_in(course_site, "ta1", add_user(db, "ta1", role="ta"))
    prof = signed_in(course_site, "prof", add_user(db, "prof", role="instructor"))
    token = csrf(ta, "/staff/grading/hw5/q/q1/s1")
    ta.post("/staff/grading/hw5/q/q1/s1", data={"csrf_token": token, "items": [], "comment": "missing"})
    prof.post(
        "/staff/grading/hw5/release", data={"csrf_token": csrf(prof, "/staff/grading"), "released": "1"}
    )
    student = signed_in(course_site, "s1", secret)
    mine = csrf(student, "/assignments/hw5")
    asked = student.post(
        "/assignments/hw5/regrade-requests",
        data={"csrf_token": mine, "question": "q1", "message": "It is in cell 1: REVIEW-PLEASE."},
    )
    assert "Your regrade request is sent" in asked.text and "Waiting for an answer" in asked.text
    assert "REVIEW-PLEASE" in ta.get("/staff/grading/hw5").text
    request_id = re.search(r"/staff/grading/requests/(\d+)/answer", ta.get("/staff/grading/hw5").text).group(
        1
    )
    ta.post(
        f"/staff/grading/requests/{request_id}/answer",
        data={"csrf_token": token, "answer": "Right, cell 1 has it: ANSWERED.", "adjustment": "2"},
    )
    page = student.get("/assignments/hw5").text
    assert "ANSWERED" in page and "Adjusted +2" in page
    history = ta.get("/staff/grading/hw5/q/q1/s1").text
    assert "regrade request" in history and "0 → 2" in history


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
PDF = b"%PDF-1.4\n% REPORT\n"
INLINE_HEADERS = {
    "content-disposition": "inline",
    "x-content-type-options": "nosniff",
    "cache-control": "private",
    "content-security-policy": "sandbox",
}


def store_upload(db, sub: Submission, data: bytes, fmt: str, filename: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    path = get_settings().data_dir / "uploads" / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    sub.sha256, sub.format, sub.filename = digest, fmt, filename
    db.commit()


def assert_inline(response, media_type: str, content: bytes) -> None:
    assert response.status_code == 200 and response.headers["content-type"] == media_type
    assert response.content == content
    for name, value in INLINE_HEADERS.items():
        assert response.headers[name] == value, name


def test_a_zip_s_pdfs_and_images_are_shown_inline_to_staff_only(course_site, db):
    secret = add_user(db, "s1")
    sub = stored_notebook(db, "s1")
    data = zip_of(
        {
            "report.pdf": PDF,
            "plots/loss curve.png": PNG,  # zip_of writes bytes as they are
            "model.py": "class Net: pass\n",
            "page.html": "<script>alert(1)</script>",
            "work/hw5.ipynb": json.dumps(NOTEBOOK),
        }
    )
    store_upload(db, sub, data, "zip", "hw5.zip")
    ta = signed_in(course_site, "ta1", add_user(db, "ta1", role="ta"))
    prof = signed_in(course_site, "prof", add_user(db, "prof", role="instructor"))
    files = f"/staff/grading/files/{sub.id}"
    for page in (
        ta.get("/staff/grading/hw5/q/q1/s1").text,
        prof.get(f"/instructor/submissions/{sub.id}").text,
    ):
        assert f'<iframe class="pdf" src="{files}/report.pdf"' in page
        assert f'<img class="nb-image" src="{files}/plots/loss%20curve.png"' in page
        assert '<span class="k">class</span>' in page  # model.py, highlighted
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
        # The zip's one notebook comes first, its markdown rendered.
        assert page.index("work/hw5.ipynb") < page.index("model.py") and "<h2>My answer to Q1</h2>" in page
    assert_inline(ta.get(f"{files}/report.pdf"), "application/pdf", PDF)
    assert_inline(prof.get(f"{files}/plots/loss curve.png"), "image/png", PNG)
    for refused in ("model.py", "page.html", "work/hw5.ipynb", "missing.pdf", "../report.pdf"):
        assert ta.get(f"{files}/{refused}").status_code == 404, refused
    assert ta.get("/staff/grading/files/no-such-id/report.pdf").status_code == 404
    student = signed_in(course_site, "s1", secret)
    assert student.get(f"{files}/report.pdf").status_code == 403


def test_inline_member_serves_only_inline_types_within_the_limit(monkeypatch):
    from grader.web import source_view

    data = zip_of(
        {"a/report.pdf": PDF, "a\\figure.JPG": b"\xff\xd8\xff", "index.html": "<p>", "icon.svg": "<svg/>"}
    )
    assert source_view.inline_member(data, "zip", "a/report.pdf") == (PDF, "application/pdf")
    assert source_view.inline_member(data, "zip", "a/figure.JPG") == (b"\xff\xd8\xff", "image/jpeg")
    for path in ("index.html", "icon.svg", "a/missing.png"):
        assert source_view.inline_member(data, "zip", path) is None, path
    assert source_view.inline_member(PDF, "pdf", "report.pdf") == (PDF, "application/pdf")
    assert source_view.inline_member(b"<html>", "pdf", "report.pdf") is None  # not a PDF after all
    assert source_view.inline_member(data, "ipynb", "a/report.pdf") is None
    assert source_view.inline_member(b"PK broken", "zip", "a/report.pdf") is None
    monkeypatch.setattr(source_view, "MAX_INLINE_BYTES", len(PDF) - 1)
    assert source_view.inline_member(data, "zip", "a/report.pdf") is None
    shown = source_view.source_view(data, "zip").files
    assert [(f.path, f.inline) for f in shown if f.inline] == [
        ("a/figure.JPG", "image/jpeg"),
        ("a/report.pdf", "application/pdf"),
    ]


PROPOSAL = """title = "Project: proposal"
kind = "project"
released = 2020-01-01T00:00:00Z
due = 2099-01-01T00:00:00Z
weight = 2
formats = ["pdf"]

[[questions]]
id = "plan"
title = "The plan"
points = 8
rubric = [{ label = "A plan", points = 8 }]
"""


def test_a_project_s_pdf_upload_is_shown_in_an_iframe_on_both_staff_pages(course_site, db):
    proposal = get_settings().assignments_dir / "proposal"
    proposal.mkdir()
    (proposal / "assignment.toml").write_text(PROPOSAL)
    secret = add_user(db, "s1")
    student = db.scalar(select(User).where(User.login == "s1"))
    sub = Submission(
        user_id=student.id,
        assignment="proposal",
        submitted_at=NOW - timedelta(hours=1),
        sha256="0" * 64,
        filename="proposal.pdf",
        format="pdf",
        status="submitted",  # a milestone without tests: nothing is run
    )
    db.add(sub)
    db.commit()
    store_upload(db, sub, PDF, "pdf", "proposal.pdf")
    ta = signed_in(course_site, "ta1", add_user(db, "ta1", role="ta"))
    prof = signed_in(course_site, "prof", add_user(db, "prof", role="instructor"))
    files = f"/staff/grading/files/{sub.id}"
    grading_page = ta.get("/staff/grading/proposal/q/plan/s1")
    assert grading_page.status_code == 200
    for page in (grading_page.text, prof.get(f"/instructor/submissions/{sub.id}").text):
        assert f'<iframe class="pdf" src="{files}/report.pdf" title="report.pdf"></iframe>' in page
    assert_inline(ta.get(f"{files}/report.pdf"), "application/pdf", PDF)
    assert_inline(prof.get(f"{files}/report.pdf"), "application/pdf", PDF)
    assert ta.get(f"{files}/proposal.pdf").status_code == 404  # one address, whatever the student named it
    assert signed_in(course_site, "s1", secret).get(f"{files}/report.pdf").status_code == 403


def test_grader_instructor_create_ta_makes_a_ta_who_signs_in_to_the_grading_pages(course_site):
    from typer.testing import CliRunner

    from grader.cli import app

    result = CliRunner().invoke(app, ["instructor", "create", "--ta", "--login", "tim", "--name", "Tim"])
    assert result.exit_code == 0, result.output
    ta = signed_in(course_site, "tim", result.stdout.strip().splitlines()[-1])
    assert ta.get("/", follow_redirects=False).headers["location"] == "/staff/grading"
    assert ta.get("/instructor/students").status_code == 403  # no roster

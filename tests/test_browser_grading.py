"""The grading workflow in a real browser against `grader serve` (Debian's chromium driven by
Playwright): a TA grades one question for three students from the keyboard, the instructor releases the
grades, the student sees the rubric comments. Screenshots go to test-output/screenshots/grading-*.png.

The three submissions are stored graded before the service starts (as a worker stores them), so no
sandbox runs: this test needs no Docker, only /usr/bin/chromium (scripts/setup-browser.sh).
"""

import io
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fixtures.grading import NOW, write_course
from tests.test_browser import CHROMIUM, grader_cli, serving, shot

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": "## Q1\nThe loss plateaus because the learning rate is too high.",
        },
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "source": "for epoch in range(3):\n    print(f'epoch {epoch}: loss {1 / (epoch + 1):.3f}')",
            "outputs": [
                {
                    "output_type": "stream",
                    "name": "stdout",
                    "text": "epoch 0: loss 1.000\nepoch 1: loss 0.500\n",
                }
            ],
        },
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def store_graded_submissions(env: dict, logins: list[str]) -> None:
    """One graded notebook submission of hw5 per student, stored as the worker stores it."""
    code = f"""
import hashlib, json
from datetime import timedelta
from sqlalchemy import select
from grader.config import get_settings
from grader.db import session_factory, utcnow
from grader.models import Submission, User
from grader import grading
from tests.fixtures.grading import result
settings = get_settings()
data = json.dumps({NOTEBOOK!r}).encode()
digest = hashlib.sha256(data).hexdigest()
path = settings.data_dir / "uploads" / digest[:2] / digest
path.parent.mkdir(parents=True, exist_ok=True)
path.write_bytes(data)
with session_factory(settings)() as session:
    for login in {logins!r}:
        user = session.scalar(select(User).where(User.login == login))
        sub = Submission(user_id=user.id, assignment="hw5", submitted_at=utcnow() - timedelta(hours=1),
                         sha256=digest, filename="hw5.ipynb", format="ipynb", status="queued")
        session.add(sub)
        session.commit()
        grading.claim(session=session, submission_id=sub.id, worker="w", settings=settings)
        grading.finish(session=session, submission_id=sub.id, worker="w", result=result())
"""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def grading_service(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("no /usr/bin/chromium: run scripts/setup-browser.sh")
    course = tmp_path / "assignments"
    write_course(course, due=NOW + timedelta(days=2))
    env = {
        **os.environ,
        "GRADER_DATA_DIR": str(tmp_path / "var"),
        "GRADER_ASSIGNMENTS_DIR": str(course),
        "GRADER_DATABASE_URL": f"sqlite:///{tmp_path / 'grader.db'}",
        "GRADER_BROKER_URL": "",
    }
    grader_cli(env, "migrate")
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "First name,Surname,ID number,Email address\n"
        "Ada,Lovelace,s1001,ada@example.edu\nAlan,Turing,s1002,alan@example.edu\nGrace,Hopper,s1003,grace@example.edu\n"
    )
    secrets_file = tmp_path / "secrets.csv"
    grader_cli(env, "roster", "import", str(roster), "--out", str(secrets_file))
    student_secret = secrets_file.read_text().splitlines()[1].split(",")[-1]
    prof = grader_cli(env, "instructor", "create", "--login", "prof", "--name", "Prof Ng").strip()
    ta = grader_cli(env, "instructor", "create", "--ta", "--login", "ta1", "--name", "Tim the TA").strip()
    store_graded_submissions(env, ["s1001", "s1002", "s1003"])

    with serving(env, tmp_path) as base:
        yield {
            "base": base,
            "env": env,
            "student": ("s1001", student_secret),
            "prof": ("prof", prof),
            "ta": ("ta1", ta),
        }


def png(width: int, height: int) -> bytes:
    """A plain PNG: red, blue at the bottom."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\0" + (b"\x20\x40\xc0" if y > height // 2 else b"\xc0\x20\x20") * width for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def pdf(text: str) -> bytes:
    """A one-page PDF that says `text`."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def replace_upload(env: dict, login: str, data: bytes, fmt: str, filename: str) -> str:
    """Store `data` as the upload of `login`'s submission of hw5; its id."""
    code = f"""
import hashlib
from sqlalchemy import select
from grader.config import get_settings
from grader.db import session_factory
from grader.models import Submission, User
settings = get_settings()
data = {data!r}
digest = hashlib.sha256(data).hexdigest()
path = settings.data_dir / "uploads" / digest[:2] / digest
path.parent.mkdir(parents=True, exist_ok=True)
path.write_bytes(data)
with session_factory(settings)() as session:
    sub = session.scalar(select(Submission).join(User).where(User.login == {login!r}))
    sub.sha256, sub.format, sub.filename = digest, {fmt!r}, {filename!r}
    session.commit()
    print(sub.id)
"""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def browser():
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        from tests.test_browser import CHROMIUM_ARGS

        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def sign_in(page, base: str, login: str, secret: str) -> None:
    page.goto(f"{base}/signin")
    page.get_by_label("Student id or login").fill(login)
    page.get_by_label("Secret").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def test_a_ta_grades_by_keyboard_the_instructor_releases_the_student_sees_the_comments(
    grading_service, browser
):
    base = grading_service["base"]
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    sign_in(page, base, *grading_service["ta"])
    page.wait_for_url(f"{base}/staff/grading")
    assert page.locator(".progress[data-question=q1]").inner_text() == "0 / 3"
    shot(page, "grading-01-ta-overview")
    page.get_by_role("link", name="Grade q1 by question").click()
    page.wait_for_url(f"{base}/staff/grading/hw5/q/q1/s1001")
    assert "The loss plateaus because" in page.content()

    # s1001: both items and a comment, all from the keyboard; s1002: one item; s1003: j/k first, then one.
    page.keyboard.press("1")
    page.keyboard.press("2")
    assert page.locator("#live-score").inner_text() == "4"
    page.keyboard.press("c")
    page.keyboard.type("Clear and complete: the schedule is the culprit.")
    page.keyboard.press("Escape")
    shot(page, "grading-02-ta-grades-s1001")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/staff/grading/hw5/q/q1/s1002")
    assert "Graded 1 / 3" in page.locator("#progress").inner_text()
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/staff/grading/hw5/q/q1/s1003")
    page.keyboard.press("k")
    page.wait_for_url(f"{base}/staff/grading/hw5/q/q1/s1002")
    assert page.locator("#item-1").is_checked() and page.locator("#live-score").inner_text() == "2"
    page.keyboard.press("j")
    page.wait_for_url(f"{base}/staff/grading/hw5/q/q1/s1003")
    page.keyboard.press("2")
    shot(page, "grading-03-ta-grades-s1003")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/staff/grading/hw5")
    assert "Every submission is graded on q1" in page.content()
    assert "Release grades" not in page.content()  # the instructor's switch
    shot(page, "grading-04-ta-all-graded")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, base, *grading_service["prof"])
    page.wait_for_url(f"{base}/instructor")
    page.goto(f"{base}/staff/grading/hw5")
    page.get_by_role("button", name="Release grades").click()
    page.wait_for_url(f"{base}/staff/grading/hw5")
    assert "Grades are released" in page.locator("#release-state").inner_text()
    shot(page, "grading-05-instructor-released")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, base, *grading_service["student"])
    page.wait_for_url(f"{base}/assignments")
    page.goto(f"{base}/assignments/hw5")
    assert page.locator("#manual-points").inner_text() == "4 / 10"
    question = page.locator("#question-q1")
    assert "Clear and complete: the schedule is the culprit." in question.inner_text()
    assert "names the learning rate" in question.inner_text()
    shot(page, "grading-06-student-sees-comments")
    assert not errors, errors
    context.close()


def test_a_zip_s_pdf_and_image_show_inline_on_the_grading_page_and_the_staff_page(grading_service, browser):
    base = grading_service["base"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("report.pdf", pdf("The written answers of s1001"))
        zipped.writestr("figures/loss.png", png(240, 120))
        zipped.writestr("model.py", "class Net:\n    def forward(self, x):\n        return x  # <identity>\n")
    sub_id = replace_upload(grading_service["env"], "s1001", archive.getvalue(), "zip", "hw5.zip")
    context = browser.new_context(viewport={"width": 1300, "height": 1100})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # What the inline route answered, by file (Chromium's PDF viewer adds a response of its own, unheaded).
    served: dict[str, list[tuple[int, str | None, str | None]]] = {}

    def answered(response) -> None:
        if "/staff/grading/files/" in response.url:
            headers = response.headers
            served.setdefault(response.url.rsplit("/", 1)[-1], []).append(
                (response.status, headers.get("content-type"), headers.get("content-security-policy"))
            )

    page.on("response", answered)
    for who, address in (
        ("ta", "/staff/grading/hw5/q/q1/s1001"),
        ("prof", f"/instructor/submissions/{sub_id}"),
    ):
        served.clear()
        sign_in(page, base, *grading_service[who])
        page.wait_for_load_state()
        page.goto(base + address)
        image = page.locator("img[alt='figures/loss.png']")
        image.scroll_into_view_if_needed()
        page.wait_for_function("document.querySelector(\"img[alt='figures/loss.png']\").complete")
        assert image.evaluate("img => img.naturalWidth") == 240  # the sandbox header does not stop an image
        assert page.locator("iframe.pdf").get_attribute("src") == f"/staff/grading/files/{sub_id}/report.pdf"
        assert served["loss.png"] == [(200, "image/png", "sandbox")]
        # Chromium hands a PDF to its viewer with the CSP header taken off (it would block the viewer), so
        # only the media type shows here; test_grading_pages checks the header the route sends.
        assert (200, "application/pdf") in [answer[:2] for answer in served["report.pdf"]], served
        assert page.locator(".source-file .highlight .k").first.inner_text() == "class"  # model.py
        page.locator("iframe.pdf").scroll_into_view_if_needed()
        shot(page, f"grading-09-zip-inline-{who}")
        page.get_by_role("button", name="Sign out").click()
    assert not errors, errors
    context.close()


@pytest.mark.docker
def test_the_instructor_previews_a_regrade_then_applies_it(grading_service, browser, docker_client):
    """Regrade all in the real sandbox: hw5's tests now hold one test, so each stored 2 / 5 becomes 1 / 1."""
    base = grading_service["base"]
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    sign_in(page, base, *grading_service["prof"])
    page.wait_for_url(f"{base}/instructor")
    page.goto(f"{base}/staff/grading/hw5")
    page.get_by_role("button", name="Preview a regrade of all submissions").click()
    page.wait_for_url(f"{base}/staff/grading/regrades/*")
    apply = page.get_by_role("button", name="Apply: make these scores count")
    deadline = time.monotonic() + 240
    while apply.is_disabled():
        assert time.monotonic() < deadline, page.content()
        time.sleep(2)
        page.reload()
    assert page.locator("#down").inner_text() == "3" and page.locator("#up").inner_text() == "0"
    rows = [row.locator("td").all_inner_texts() for row in page.locator("#changes tbody tr").all()]
    assert [(cells[0].split()[0], *cells[1:4]) for cells in rows] == [
        ("s1001", "2", "1", "-1"),
        ("s1002", "2", "1", "-1"),
        ("s1003", "2", "1", "-1"),
    ]
    shot(page, "grading-07-regrade-preview")
    apply.click()
    page.wait_for_url(f"{base}/staff/grading/hw5")
    assert "Applied 3 new grading(s)" in page.content()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, base, *grading_service["student"])
    page.wait_for_url(f"{base}/assignments")
    page.goto(f"{base}/assignments/hw5")
    page.locator("table a").first.click()
    assert "→ 1" in page.locator("#regraded").inner_text()
    shot(page, "grading-08-student-regraded")
    context.close()

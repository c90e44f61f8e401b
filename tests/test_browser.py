"""The pages in a real browser against the real service: `grader serve` (API + embedded worker + Docker
sandbox) in a subprocess, Debian's chromium driven by Playwright. Screenshots go to
test-output/screenshots/ for a person to look at.

Needs: the Docker engine and sandbox image (marker `docker`), /usr/bin/chromium
(scripts/setup-browser.sh) and the `playwright` package (dev extras; never `playwright install`).
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.docker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
NOW = datetime.now(UTC)


def notebook(source: str) -> str:
    cell = {
        "cell_type": "code",
        "id": "c1",
        "metadata": {},
        "execution_count": None,
        "outputs": [],
        "source": source,
    }
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def write_course(root: Path) -> None:
    """A course with one tiny assignment: one public and two hidden tests that run in a blink."""
    (root / "course.toml").write_text(
        'code = "CS 7643"\ntitle = "Deep Learning"\nterm = "Fall 2026"\ntimezone = "America/New_York"\n'
        '[late]\npenalty_percent = 10\nunit = "day"\nmax_penalty_percent = 50\n'
    )
    hw = root / "hw0-warmup"
    for folder in ("tests", "public_tests", "solution"):
        (hw / folder).mkdir(parents=True)
    (hw / "assignment.toml").write_text(
        f'title = "HW0: warm-up"\nreleased = {(NOW - timedelta(days=1)).isoformat()}\n'
        f'due = {(NOW + timedelta(days=3, hours=5)).isoformat()}\nweight = 5\nformats = ["ipynb"]\n'
        '[submissions]\nmax = 10\nper_hour = 5\n[feedback]\nhidden = "score"\n[sandbox]\ntimeout_s = 60\n'
    )
    (hw / "public_tests" / "test_public.py").write_text(
        "import submission\n\ndef test_relu_positive():\n    assert submission.relu(2.0) == 2.0\n"
    )
    (hw / "tests" / "test_hidden.py").write_text(
        "import pytest\nimport submission\n\n"
        "@pytest.mark.points(2)\ndef test_relu_negative():\n    assert submission.relu(-1.0) == 0.0\n\n"
        "def test_double():\n    assert submission.double(3) == 6\n"
    )
    (hw / "solution" / "solution.ipynb").write_text(
        notebook("def relu(x):\n    return max(x, 0.0)\n\ndef double(x):\n    return 2 * x\n")
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`grader serve` on a free port under `env`, answering; its base URL. Stopped afterwards."""
    port = free_port()
    with open(tmp_path / "serve.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "grader.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(150):
                try:
                    if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None:
                    pytest.fail("grader serve exited:\n" + (tmp_path / "serve.log").read_text())
                time.sleep(0.2)
            else:
                pytest.fail("grader serve did not answer:\n" + (tmp_path / "serve.log").read_text())
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def grader_cli(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "grader.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def service(tmp_path, docker_client):
    """`grader serve` on a free port of 127.0.0.1 with a roster of one student and one instructor."""
    if not Path(CHROMIUM).exists():
        pytest.fail("no /usr/bin/chromium: run scripts/setup-browser.sh")
    course = tmp_path / "assignments"
    course.mkdir()
    write_course(course)
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
        "First name,Surname,ID number,Email address\nAda,Lovelace,s1001,ada@example.edu\n"
        "Zoë,Ångström,s1002,zoe@example.edu\nAlan,Turing,s1003,alan@example.edu\n"
    )
    secrets_file = tmp_path / "secrets.csv"
    grader_cli(env, "roster", "import", str(roster), "--out", str(secrets_file))
    secrets = {line.split(",")[0]: line.split(",")[-1] for line in secrets_file.read_text().splitlines()[1:]}
    student_secret = secrets["s1001"]
    instructor_secret = grader_cli(
        env, "instructor", "create", "--login", "prof", "--name", "Grace Hopper"
    ).strip()

    with serving(env, tmp_path) as base:
        yield {
            "base": base,
            "student": ("s1001", student_secret),
            "student2": ("s1002", secrets["s1002"]),
            "instructor": ("prof", instructor_secret),
            "tmp": tmp_path,
        }


@pytest.fixture
def browser():
    # playwright is a dev dependency: a missing one is a broken setup, not a reason to skip.
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def sign_in(page, base: str, login: str, secret: str) -> None:
    page.goto(f"{base}/signin")
    page.get_by_label("Student id or login").fill(login)
    page.get_by_label("Secret").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_student_submits_and_instructor_downloads_the_gradebook(service, browser):
    base, tmp = service["base"], service["tmp"]
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{base}/assignments")
    assert "/signin" in page.url
    shot(page, "01-signin")
    sign_in(page, base, *service["student"])
    page.wait_for_url(f"{base}/assignments")
    assert page.get_by_role("link", name="HW0: warm-up").is_visible()
    assert "3 days 5 hours left" in page.content() or "3 days 4 hours left" in page.content()
    shot(page, "02-student-assignments")

    page.get_by_role("link", name="HW0: warm-up").click()
    # A wrong format is refused in the page before anything is sent.
    wrong = tmp / "report.pdf"
    wrong.write_bytes(b"%PDF-1.4\n")
    page.set_input_files("#file", str(wrong))
    page.get_by_text("accepts .ipynb files").wait_for()
    assert page.get_by_role("button", name="Submit for grading").is_disabled()
    shot(page, "03-student-upload-wrong-format")

    upload = tmp / "hw0.ipynb"
    # Passes the public test and the 2-point hidden one, fails the hidden test_double; prints markup.
    upload.write_text(
        notebook(
            "print('<script>alert(1)</script> training...')\n"
            "def relu(x):\n    return max(x, 0.0)\n\ndef double(x):\n    return x\n"
        )
    )
    page.set_input_files("#file", str(upload))
    page.get_by_role("button", name="Submit for grading").click()
    page.wait_for_url(f"{base}/submissions/**")
    shot(page, "04-submission-queued")
    # The page polls and reloads itself when grading is done: no action from us.
    page.locator("#status-badge.graded, #status-badge.error").wait_for(timeout=180_000)
    body = page.content()
    assert "graded" in page.locator("#status-badge").inner_text(), body
    assert page.locator(".score").inner_text() == "3 / 4 (75.00%)"
    assert "test_relu_positive" in body
    assert "test_double" not in body and "test_relu_negative" not in body  # hidden: only the total
    assert page.locator("pre.output").inner_text().startswith("<script>alert(1)</script> training...")
    assert not errors, errors  # the printed <script> did not run, and the page's own scripts did not fail
    shot(page, "05-submission-graded")

    page.get_by_role("link", name="← HW0: warm-up").click()
    assert page.get_by_text("counts", exact=True).is_visible()
    shot(page, "06-student-history")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/signin")

    sign_in(page, base, *service["instructor"])
    page.wait_for_url(f"{base}/instructor")
    shot(page, "07-instructor-overview")
    page.get_by_role("link", name="HW0: warm-up").click()
    assert "test_double" in page.content()
    shot(page, "08-instructor-assignment")
    page.get_by_role("link", name="Students").click()
    page.get_by_role("link", name="s1001").click()
    shot(page, "09-instructor-student")
    page.get_by_role("link", name="Gradebook").click()
    shot(page, "10-instructor-gradebook")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    csv_text = Path(download_info.value.path()).read_text()
    assert csv_text.splitlines()[0].startswith("student") or "s1001" in csv_text
    assert "s1001" in csv_text
    # The same file the API serves to an instructor's token.
    context.close()


PHONE = {"width": 390, "height": 844}


def overflow(page) -> int:
    """How much wider than the screen the page is (a table's own scroller does not count)."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def test_staff_submission_page_roster_feedback_and_phone_width(service, browser):
    base, tmp = service["base"], service["tmp"]
    student = browser.new_context(viewport={"width": 1200, "height": 800}, accept_downloads=True)
    page = student.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, base, *service["student2"])
    page.wait_for_url(f"{base}/assignments")
    page.get_by_role("link", name="HW0: warm-up").click()
    # Fails the public test (with its message) and the hidden ones; prints something.
    upload = tmp / "wrong.ipynb"
    upload.write_text(notebook("print('epoch 1 loss 0.7')\ndef relu(x):\n    return 0.0\n"))
    page.set_input_files("#file", str(upload))
    page.get_by_role("button", name="Submit for grading").click()
    page.wait_for_url(f"{base}/submissions/**")
    page.evaluate("window.notReloaded = true")
    page.locator("#status-badge.graded, #status-badge.error").wait_for(timeout=180_000)
    # The result came in without a reload (when it was not already done as the page opened), and was said.
    assert page.evaluate("window.notReloaded === true")
    announced = page.locator("#announce").inner_text()
    assert announced == "" or announced.startswith("Grading finished: graded, 2 / 4"), announced
    submission_url = page.url
    row = page.get_by_role("row").filter(has_text="test_relu_positive")
    assert "failed" in row.inner_text() and "assert 0.0 == 2.0" in row.inner_text()  # public: its message
    assert "test_double" not in page.content()  # hidden: only the total
    shot(page, "11-student-feedback-public-test")

    staff = browser.new_context(viewport={"width": 1200, "height": 800}, accept_downloads=True)
    prof = staff.new_page()
    prof.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(prof, base, *service["instructor"])
    prof.wait_for_url(f"{base}/instructor")
    # An extension with its own cutoff: the instructor sees the cutoff it gives, the student too.
    prof.goto(f"{base}/instructor/students/s1002")
    prof.get_by_text("Grant an extension").click()
    prof.locator("#due-hw0-warmup").fill("2099-12-01T23:59")
    prof.locator("#cutoff-hw0-warmup").fill("2099-12-05T23:59")
    prof.get_by_role("button", name="Save the extension on HW0: warm-up").click()
    prof.get_by_text("Saved the extension on hw0-warmup.").wait_for()
    assert "?ok=" not in prof.url
    assert "uploads accepted until Sat 05 Dec 2099, 23:59 EST" in prof.content()
    shot(prof, "12-instructor-extension-cutoff")
    page.goto(f"{base}/assignments/hw0-warmup")
    assert page.locator("#cutoff").inner_text() == "Sat 05 Dec 2099, 23:59 EST"
    assert "no uploads after" not in page.content() or "no uploads after Sat 05 Dec 2099" in page.content()
    shot(page, "13-student-extension-cutoff")

    # The roster: every student, searchable and sortable; its score links to the staff page.
    prof.goto(f"{base}/instructor/assignments/hw0-warmup")
    prof.get_by_role("link", name="Roster: every student's standing").click()
    rows = prof.locator("#roster tbody tr")
    assert rows.count() == 3
    prof.get_by_label("Search by id, name, email or status").fill("ångström")
    assert prof.locator("#roster tbody tr:not([hidden])").count() == 1
    assert prof.locator("#roster-count").inner_text() == "1 of 3 shown"
    shot(prof, "14-instructor-roster-search")
    prof.get_by_label("Search by id, name, email or status").fill("")
    prof.get_by_role("button", name="Submissions").click()
    assert prof.locator("#roster thead th[aria-sort]").count() == 1
    prof.get_by_role("link", name="s1002's counted submission", exact=False).click()
    prof.wait_for_url(f"{base}/instructor/submissions/**")
    assert prof.locator(".nb-cell.code").count() == 1 and "relu" in prof.locator(".nb-cell").inner_text()
    tests = prof.locator("table").filter(has_text="test_double")
    assert "hidden" in tests.inner_text() and "test_relu_negative" in tests.inner_text()
    assert "epoch 1 loss 0.7" in prof.locator("pre.output").first.inner_text()
    shot(prof, "15-instructor-submission")
    with prof.expect_download() as download:
        prof.get_by_role("link", name="Download the original").click()
    assert Path(download.value.path()).read_text() == upload.read_text()
    # An instructor who follows a student's link lands on the staff page.
    prof.goto(submission_url)
    assert "/instructor/submissions/" in prof.url

    # A wrong address: a page with the menu, not JSON.
    response = prof.goto(f"{base}/instructor/no-such-page")
    assert response.status == 404 and prof.get_by_role("heading", name="Page not found").is_visible()
    assert prof.get_by_role("navigation", name="Main").get_by_role("link", name="Gradebook").is_visible()
    shot(prof, "16-not-found")

    # Every main page at a phone's width: nothing wider than the screen.
    staff_submission = submission_url.replace(f"{base}/submissions/", "/instructor/submissions/")
    phone_pages = {
        "student": (
            student,
            {
                "assignments": "/assignments",
                "assignment": "/assignments/hw0-warmup",
                "submission": submission_url.replace(base, ""),
            },
        ),
        "instructor": (
            staff,
            {
                "overview": "/instructor",
                "assignment": "/instructor/assignments/hw0-warmup",
                "roster": "/instructor/assignments/hw0-warmup/roster",
                "students": "/instructor/students",
                "student": "/instructor/students/s1002",
                "gradebook": "/instructor/gradebook",
                "submission": staff_submission,
            },
        ),
    }
    too_wide = {}
    for who, (context, pages) in phone_pages.items():
        storage = context.storage_state()
        narrow = browser.new_context(viewport=PHONE, storage_state=storage)
        screen = narrow.new_page()
        for name, path in pages.items():
            screen.goto(base + path)
            shot(screen, f"phone-{who}-{name}")
            if (extra := overflow(screen)) > 1:
                too_wide[path] = extra
        narrow.close()
    assert not too_wide, f"wider than a phone's screen (px): {too_wide}"
    assert not errors, errors
    student.close()
    staff.close()

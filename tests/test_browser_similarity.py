"""The similarity report in a real browser: `grader serve` (embedded default) in a subprocess, Debian's
chromium driven by Playwright. The instructor builds the report, opens the most similar pair, and
downloads the CSV. Screenshots go to test-output/screenshots/ for a person to look at.

No sandbox is needed: the submissions are stored as graded, the way the worker leaves them, before the
service starts. Needs /usr/bin/chromium (scripts/setup-browser.sh) and the `playwright` package.
"""

import os
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, grader_cli, serving, shot, sign_in
from tests.test_browser import browser as browser  # noqa: F401 (the fixture)
from tests.test_similarity import add_user, code, notebook, submit, write_course, zipped


@pytest.fixture
def service(tmp_path):
    """`grader serve` over a course whose hw1-mlp has four submissions: ada's, dan's copy of it, bob's and
    cyd's own work; and an instructor."""
    if not Path(CHROMIUM).exists():
        pytest.fail("no /usr/bin/chromium: run scripts/setup-browser.sh")
    course = tmp_path / "assignments"
    course.mkdir()
    write_course(course)  # no cutoff: the report is built on demand only
    env = {
        **os.environ,
        "GRADER_DATA_DIR": str(tmp_path / "var"),
        "GRADER_ASSIGNMENTS_DIR": str(course),
        "GRADER_DATABASE_URL": f"sqlite:///{tmp_path / 'grader.db'}",
        "GRADER_BROKER_URL": "",
    }
    grader_cli(env, "migrate")
    secret = seed(env)

    with serving(env, tmp_path) as base:
        yield {"base": base, "instructor": ("prof", secret), "tmp": tmp_path}


def seed(env: dict) -> str:
    """Students, their stored submissions and an instructor, in the service's database; the secret."""
    from grader.config import Settings
    from grader.db import session_factory

    settings = Settings(
        data_dir=env["GRADER_DATA_DIR"],
        assignments_dir=env["GRADER_ASSIGNMENTS_DIR"],
        database_url=env["GRADER_DATABASE_URL"],
    )
    with session_factory(settings)() as session:
        for login in ("ada", "bob", "cyd", "dan"):
            add_user(session, login)
        submit(session, settings, "ada", notebook(code("ada")), "hw1.ipynb", score=9)
        submit(session, settings, "bob", zipped({"submission.py": code("bob")}), "hw1.zip", score=8)
        submit(session, settings, "cyd", notebook(code("cyd")), "hw1.ipynb", score=7)
        submit(session, settings, "dan", notebook(code("dan")), "hw1.ipynb", score=9)
        return add_user(session, "prof", role="instructor")


def test_the_instructor_builds_the_report_and_opens_a_pair(service, browser):  # noqa: F811
    base = service["base"]
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, base, *service["instructor"])
    page.wait_for_url(f"{base}/instructor")
    page.get_by_role("link", name="HW1: an MLP").click()
    page.get_by_role("link", name="Similarity report").click()
    assert page.get_by_text("No report yet").is_visible()
    shot(page, "similarity-01-empty")

    page.get_by_role("button", name="Build the report").click()
    # The page follows the job's progress and reloads itself when the report is there.
    page.get_by_role("link", name="Download CSV").wait_for(timeout=120_000)
    rows = page.locator("tbody tr")
    first = rows.nth(0).inner_text()
    assert "Ada (ada)" in first and "Dan (dan)" in first and "likely copied" in first
    assert page.locator(".badge.copied").count() == 1  # only the copy
    shot(page, "similarity-02-report")

    page.get_by_role("link", name="Compare Ada (ada) and Dan (dan)").click()
    page.wait_for_url(f"{base}/instructor/assignments/hw1-mlp/similarity/pair?*")
    marks = page.locator("pre.code mark")
    assert marks.count() >= 2
    assert "grad_b = np.sum(dout, axis=0)" in marks.all_inner_texts()[0] + "".join(marks.all_inner_texts())
    assert page.locator("section").count() == 2
    shot(page, "similarity-03-pair")

    page.get_by_role("link", name="← Similarity report: HW1: an MLP").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    csv_text = Path(download_info.value.path()).read_text()
    assert csv_text.splitlines()[1].split(",")[1:5:2] == ["ada", "dan"]
    assert not errors, errors
    context.close()

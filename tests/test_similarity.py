"""The similarity report (grader.similarity, grader.similarity_jobs, grader/web/similarity.py).

Made-up submissions to hw1-mlp's real starter and solution, in tests/fixtures/similarity/: ada, bob
and cyd each wrote their own; dan copied ada's exactly; eve copied bob's, renamed the variables and
reordered the functions; sam and tom handed in the starter with one (different) line each.
"""

import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from grader import accounts, similarity, similarity_jobs, storage
from grader.cli import app as cli
from grader.config import get_settings
from grader.db import migrate, session_factory
from grader.models import Submission, User
from grader.uploads import unpack

CASES = Path(__file__).parent / "fixtures" / "similarity"
NOW = datetime.now(UTC)
COPIES = [{"ada", "dan"}, {"bob", "eve"}]
OWN_WORK = ["ada", "bob", "cyd"]


def code(name: str) -> str:
    return next(CASES.glob(f"{name}*.py")).read_text()


def notebook(source: str) -> bytes:
    cell = {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None, "outputs": []}
    return json.dumps(
        {"cells": [{**cell, "source": source}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    ).encode()


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def documents(*names: str) -> list[similarity.Document]:
    return [similarity.Document(key=n, label=n, kind="student", code=code(n)) for n in names]


def scores(pairs: list[similarity.Pair]) -> dict[frozenset, similarity.Pair]:
    return {frozenset((p.a, p.b)): p for p in pairs}


# ---- the comparison ---------------------------------------------------------------------------------------


def test_copies_rank_first_and_independent_work_stays_below_the_threshold():
    names = ["ada", "bob", "cyd", "dan", "eve", "sam", "tom"]
    pairs, compared = similarity.compare(documents(*names), [code("starter")], [code("solution")])
    assert compared == len(names) * (len(names) - 1) // 2
    assert [{p.a, p.b} for p in pairs[:2]] == COPIES
    found = scores(pairs)
    exact, disguised = found[frozenset(("ada", "dan"))], found[frozenset(("bob", "eve"))]
    assert exact.score == 1.0 and exact.flagged(similarity.THRESHOLD)
    # Renamed variables and reordered functions: names are tokens (V), winnowing ignores order.
    assert disguised.score >= similarity.THRESHOLD and disguised.flagged(similarity.THRESHOLD)
    assert disguised.lines >= 30
    copiers = {"dan": "ada", "eve": "bob"}
    for a, b in combinations(names, 2):
        if {a, b} in COPIES:
            continue
        pair = found.get(frozenset((copiers.get(a, a), copiers.get(b, b)))) or found.get(frozenset((a, b)))
        score = pair.score if pair else 0.0
        assert score < similarity.THRESHOLD / 2, (a, b, score)
        assert not (pair and pair.flagged(similarity.THRESHOLD))


def test_the_starter_alone_does_not_make_two_submissions_similar():
    pairs, _ = similarity.compare(documents("sam", "tom"), [code("starter")], [code("solution")])
    assert pairs == []
    # What the boilerplate removal prevents: without it, the starter they share is a near-total match.
    pairs, _ = similarity.compare(documents("sam", "tom"))
    assert pairs[0].score > 0.9 and pairs[0].flagged(similarity.THRESHOLD)


def test_a_copy_of_the_reference_solution_shows_as_its_share_of_the_solution():
    docs = documents("ada", "bob") + [
        similarity.Document(key="leak", label="leak", kind="student", code=code("solution"))
    ]
    pairs, _ = similarity.compare(docs, [code("starter")], [code("solution")])
    share = {doc.key: doc.solution_share for doc in docs}
    assert share["leak"] == 1.0
    assert share["ada"] < 0.3 and share["bob"] < 0.3, share
    assert all("leak" not in (p.a, p.b) for p in pairs)  # it has no code of its own to compare


def test_highlighted_regions_are_the_shared_code():
    pairs, _ = similarity.compare(documents("bob", "eve"), [code("starter")], [code("solution")])
    pair = pairs[0]
    bob = code("bob")
    shared = "".join(
        text
        for text, hit in similarity.segments(bob, pair.regions_a if pair.a == "bob" else pair.regions_b)
        if hit
    )
    assert "onehot = np.eye(logits.shape[1])[y]" in shared  # eve's `targets = ...`, renamed
    assert "def linear_forward" not in shared  # the starter's, taken out
    assert "".join(text for text, _ in similarity.segments(bob, pair.regions_a)) == bob


def test_two_processes_with_other_hash_seeds_give_the_same_report():
    script = (
        "import json; from tests.test_similarity import documents, code; from grader import similarity\n"
        "given = [code('starter')], [code('solution')]\n"
        "pairs, _ = similarity.compare(documents('bob', 'eve', 'cyd'), *given)\n"
        "print(json.dumps([p.model_dump() for p in pairs]))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=Path(__file__).parent.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] and json.loads(runs[0])[0]["score"] > 0.5


def test_lines_count_every_line_a_region_touches():
    starts = similarity._line_starts("a = 1\nb = 2\nc = 3\nd = 4\n")
    assert starts == [0, 6, 12, 18, 24]
    assert similarity._lines(starts, [(0, 3)]) == 1
    assert similarity._lines(starts, [(2, 9)]) == 2
    assert similarity._lines(starts, [(0, 3), (1, 4), (12, 24)]) == 3


def test_a_zip_is_its_py_files_and_a_notebook_its_code_cells():
    files = {
        "submission.py": b"x = 1\n",
        "helpers/util.py": b"y = 2\n",
        "README.md": b"# no",
        "data.npz": b"\0",
    }
    text = similarity.code_of(files)
    assert "x = 1" in text and "y = 2" in text and "# no" not in text and "\0" not in text
    assert similarity.code_of({"submission.py": b"z = 3\n"}) == "z = 3\n"


# ---- the service: counted submissions, archives, jobs, the cutoff, the pages ------------------------------


def write_course(root: Path, *, cutoff: datetime | None = None) -> None:
    (root / "course.toml").write_text(
        'code = "CS 7643"\ntitle = "Deep Learning"\nterm = "Fall 2026"\ntimezone = "America/New_York"\n'
    )
    hw = root / "hw1-mlp"
    for folder in ("tests", "starter", "solution"):
        (hw / folder).mkdir(parents=True)
    (hw / "tests" / "test_mlp.py").write_text("import submission\n\ndef test_relu():\n    assert True\n")
    (hw / "starter" / "hw1-mlp.ipynb").write_bytes(notebook(code("starter")))
    (hw / "solution" / "solution.ipynb").write_bytes(notebook(code("solution")))
    late = f"[late]\ncutoff = {cutoff.isoformat()}\n" if cutoff else ""
    (hw / "assignment.toml").write_text(
        f'title = "HW1: an MLP"\nreleased = {(NOW - timedelta(days=20)).isoformat()}\n'
        f"due = {(NOW - timedelta(days=10)).isoformat()}\nweight = 10\n{late}"
    )


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A course whose hw1-mlp closed a day ago, an empty SQLite database, the app, the settings."""
    course = tmp_path / "assignments"
    course.mkdir()
    write_course(course, cutoff=NOW - timedelta(days=1))
    monkeypatch.setenv("GRADER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("GRADER_ASSIGNMENTS_DIR", str(course))
    monkeypatch.setenv("GRADER_DATABASE_URL", f"sqlite:///{tmp_path / 'grader.db'}")
    monkeypatch.delenv("GRADER_BROKER_URL", raising=False)
    monkeypatch.delenv("GRADER_SIMILARITY_ARCHIVE_DIR", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings.effective_database_url)
    from grader.main import app

    yield app, session_factory(settings), settings
    get_settings.cache_clear()


def add_user(session, login: str, role: str = "student") -> str:
    secret = accounts.new_secret()
    session.add(User(login=login, name=login.title(), role=role, secret_hash=accounts.hash_secret(secret)))
    session.commit()
    return secret


def submit(
    session, settings, login: str, data: bytes, filename: str, *, score: float, status="graded", ago=5
):
    """A stored upload and its row, as the API and the worker leave them."""
    from grader import catalog

    assignment = catalog.current(session=session, settings=settings)["hw1-mlp"]
    unpacked = unpack(data, filename, assignment, max_bytes=10**7, max_files=100)
    digest = storage.store(settings, data, unpacked, assignment)
    user = session.scalar(select(User).where(User.login == login))
    sub = Submission(
        user_id=user.id,
        assignment="hw1-mlp",
        sha256=digest,
        filename=filename,
        format=filename.rsplit(".", 1)[1],
        status=status,
        score=score if status == "graded" else None,
        max_score=10,
        submitted_at=NOW - timedelta(days=ago),
    )
    session.add(sub)
    session.commit()
    return sub


@pytest.fixture
def course(site):
    """ada, bob and cyd's own work, dan's copy of ada as his best submission (a later, worse one is not
    counted), and bob's submission as a zip."""
    app, sessions, settings = site
    with sessions() as session:
        for login in ("ada", "bob", "cyd", "dan"):
            add_user(session, login)
        submit(session, settings, "ada", notebook(code("ada")), "hw1.ipynb", score=9)
        submit(session, settings, "bob", zipped({"submission.py": code("bob")}), "hw1.zip", score=8)
        submit(session, settings, "cyd", notebook(code("cyd")), "hw1.ipynb", score=7)
        submit(session, settings, "dan", notebook(code("dan")), "hw1.ipynb", score=9, ago=6)
        submit(session, settings, "dan", notebook(code("sam")), "hw1.ipynb", score=1, ago=4)
    return site


def test_the_report_compares_counted_submissions_and_earlier_terms(course, tmp_path):
    _app, sessions, settings = course
    archive = tmp_path / "archive"
    (archive / "fall2025").mkdir(parents=True)
    (archive / "fall2025" / "eve.zip").write_bytes(zipped({"eve/submission.py": code("eve")}))
    (archive / "fall2025" / "old.ipynb").write_bytes(notebook(code("cyd")))
    (archive / "fall2025" / "broken.zip").write_bytes(b"PK not a zip")
    from grader import catalog

    seen = []
    with sessions() as session:
        assignment = catalog.current(session=session, settings=settings)["hw1-mlp"]
        report = similarity.build(
            session=session,
            settings=settings,
            assignment=assignment,
            archive=archive,
            progress=lambda stage, done, total: seen.append(stage),
        )
    assert [d.key for d in report.documents] == [
        "ada",
        "bob",
        "cyd",
        "dan",
        "archive:fall2025/eve.zip",
        "archive:fall2025/old.ipynb",
    ]
    assert report.boilerplate == ["solution/solution.ipynb", "starter/hw1-mlp.ipynb"]
    assert len(report.skipped) == 1 and "broken.zip" in report.skipped[0]
    assert report.compared == 4 * 3 // 2 + 4 * 2  # archives are not compared with each other
    flagged = [{p.a, p.b} for p in report.flagged]
    assert flagged[:1] == [{"ada", "dan"}]  # dan's counted (best) submission is the copy
    assert {"bob", "archive:fall2025/eve.zip"} in flagged
    assert {"cyd", "archive:fall2025/old.ipynb"} in flagged
    assert len(flagged) == 3
    assert {"fingerprinting", "comparing"} <= set(seen)


def test_the_embedded_job_runs_in_a_thread_and_a_second_request_joins_it(course):
    _app, _sessions, settings = course
    job = similarity_jobs.request(settings=settings, slug="hw1-mlp", trigger="instructor")
    again = similarity_jobs.request(settings=settings, slug="hw1-mlp", trigger="instructor")
    assert again.id == job.id and job.status == "queued"
    done = wait_for_job(settings)
    assert done.status == "done" and done.id == job.id, done.error
    assert done.total > 0 and done.done == done.total
    report = similarity_jobs.load_report(settings, "hw1-mlp")
    assert {report.pairs[0].a, report.pairs[0].b} == {"ada", "dan"}
    # The message delivered twice (acks_late) does nothing the second time.
    assert similarity_jobs.run(settings=settings, slug="hw1-mlp", job_id=job.id) == "skipped"


def wait_for_job(settings, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = similarity_jobs.read_job(settings, "hw1-mlp")
        if job and job.status in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"the job did not finish: {similarity_jobs.read_job(settings, 'hw1-mlp')}")


def test_a_failed_run_is_recorded_with_its_reason(course, monkeypatch):
    _app, _sessions, settings = course

    def broken(**_):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(similarity, "build", broken)
    job = similarity_jobs.Job(
        id="j1", slug="hw1-mlp", status="queued", trigger="cli", requested_at=similarity_jobs.utcnow()
    )
    similarity_jobs._save(settings, job)
    assert similarity_jobs.run(settings=settings, slug="hw1-mlp", job_id="j1") == "failed"
    assert "disk on fire" in similarity_jobs.read_job(settings, "hw1-mlp").error
    assert similarity_jobs.load_report(settings, "hw1-mlp") is None


def test_the_report_is_asked_for_once_after_the_last_cutoff(course):
    _app, sessions, settings = course
    with sessions() as session:
        add_user(session, "late")
        pending = submit(
            session, settings, "late", notebook("x = 1\n"), "hw1.ipynb", score=0, status="queued"
        )
    assert similarity_jobs.after_cutoff(settings=settings) == []  # one still waits to be graded
    with sessions() as session:
        session.get(Submission, pending.id).status = "error"
        session.commit()
    assert similarity_jobs.after_cutoff(settings=settings) == ["hw1-mlp"]
    assert similarity_jobs.after_cutoff(settings=settings) == []  # once
    job = wait_for_job(settings)
    assert job.trigger == "cutoff" and job.status == "done"

    # Asked for, then lost (the process stopped with it queued): the sweeper asks again once it is stale.
    stale = job.model_copy(
        update={"id": "lost", "status": "queued", "requested_at": NOW - timedelta(hours=1)}
    )
    similarity_jobs._save(settings, stale)
    assert similarity_jobs.after_cutoff(settings=settings) == ["hw1-mlp"]
    assert wait_for_job(settings).id != "lost"


def test_an_extension_past_the_cutoff_delays_the_automatic_report(course):
    _app, sessions, settings = course
    from grader import catalog, extensions

    with sessions() as session:
        user = session.scalar(select(User).where(User.login == "cyd"))
        assignment = catalog.current(session=session, settings=settings)["hw1-mlp"]
        later = (NOW + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
        extensions.grant(session=session, user=user, assignment=assignment, due=later, cutoff=later)
        assert similarity.last_cutoff(session=session, assignment=assignment) > NOW
    assert similarity_jobs.after_cutoff(settings=settings) == []


def signed_in(app, login: str, secret: str) -> TestClient:
    client = TestClient(app, base_url="http://127.0.0.1")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/signin").text).group(1)
    response = client.post(
        "/signin", data={"login": login, "secret": secret, "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return client


def test_the_instructor_builds_reads_and_downloads_the_report(course):
    app, sessions, settings = course
    with sessions() as session:
        client = signed_in(app, "prof", add_user(session, "prof", role="instructor"))
    base = "/instructor/assignments/hw1-mlp/similarity"
    assert "No report yet" in client.get(base).text
    assert client.get(f"{base}/report.csv").status_code == 404
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(base).text).group(1)
    assert client.post(base, data={"csrf_token": "forged"}).status_code == 403
    response = client.post(base, data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    wait_for_job(settings)
    assert client.get(f"{base}/status.json").json()["status"] == "done"

    page = client.get(base).text
    assert "likely copied" in page and "Ada (ada)" in page
    first = page.split("<tbody>")[1].split("</tr>")[0]  # the copy is first
    assert "Ada (ada)" in first and "Dan (dan)" in first and "likely copied" in first
    closest = page.split("Closest to the reference solution")[1]
    assert all(name in closest for name in ("Ada (ada)", "Bob (bob)", "Cyd (cyd)", "Dan (dan)"))
    pair = client.get(f"{base}/pair", params={"a": "dan", "b": "ada"})
    assert pair.status_code == 200
    assert pair.text.index("Dan (dan)") < pair.text.index("Ada (ada)")  # in the order asked for
    assert "<mark>" in pair.text and "grad_b = np.sum(dout, axis=0)" in pair.text
    assert client.get(f"{base}/pair", params={"a": "ada", "b": "nobody"}).status_code == 404

    rows = client.get(f"{base}/report.csv").text.splitlines()
    assert rows[0].startswith("rank,a,a_name,b,b_name,score_percent")
    assert rows[1].split(",")[1:5:2] == ["ada", "dan"] and rows[1].split(",")[10] == "yes"
    html = client.get(f"{base}/report.html")
    assert "attachment" in html.headers["content-disposition"]
    assert "<script" not in html.text and "http" not in html.text.split("</style>")[0]
    assert "<mark>" in html.text


def test_students_never_see_a_report(course):
    app, sessions, settings = course
    with sessions() as session:
        secret = accounts.new_secret()
        session.get(User, 1).secret_hash = accounts.hash_secret(secret)
        session.commit()
        login = session.get(User, 1).login
    similarity_jobs.save_report(
        settings,
        similarity.Report(
            slug="hw1-mlp",
            created_at=NOW,
            trigger="cli",
            documents=[],
            boilerplate=[],
            skipped=[],
            compared=0,
            pairs=[],
        ),
    )
    client = signed_in(app, login, secret)
    base = "/instructor/assignments/hw1-mlp/similarity"
    for path in (
        base,
        f"{base}/report.csv",
        f"{base}/report.html",
        f"{base}/status.json",
        f"{base}/pair?a=ada&b=dan",
    ):
        assert client.get(path).status_code == 403, path
    assert "similarity" not in client.get("/assignments/hw1-mlp").text.lower()


def test_the_cli_prints_the_pairs_and_writes_the_files(course, tmp_path):
    _app, _sessions, settings = course
    out_csv, out_html = tmp_path / "pairs.csv", tmp_path / "report.html"
    result = CliRunner().invoke(
        cli, ["similarity", "hw1-mlp", "--csv", str(out_csv), "--html", str(out_html)]
    )
    assert result.exit_code == 0, result.output
    assert "likely copied" in result.output
    assert out_csv.read_text().splitlines()[1].split(",")[10] == "yes"
    assert "<mark>" in out_html.read_text()
    assert similarity_jobs.load_report(settings, "hw1-mlp").trigger == "cli"
    missing = CliRunner().invoke(cli, ["similarity", "hw9"])
    assert missing.exit_code == 2


def test_on_the_service_the_job_is_a_celery_task_on_the_cpu_queue(course, monkeypatch):
    _app, _sessions, settings = course
    service = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})  # nothing listens there
    job = similarity_jobs.request(settings=service, slug="hw1-mlp", trigger="instructor")
    assert job.status == "failed" and "unreachable" in job.error
    assert similarity_jobs.read_job(settings, "hw1-mlp").status == "failed"

    sent = []

    class Publisher:
        def send_task(self, name, args, queue):
            sent.append((name, args, queue))

    monkeypatch.setattr("grader.worker.publisher", lambda url: Publisher())
    job = similarity_jobs.request(settings=service, slug="hw1-mlp", trigger="instructor")
    assert sent == [("grader.similarity", ["hw1-mlp", job.id], "cpu")]
    from grader import tasks

    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    assert tasks.similarity.run("hw1-mlp", job.id) == "done"  # what the worker runs
    assert tasks.similarity.run("hw1-mlp", job.id) == "skipped"  # delivered twice: once
    assert similarity_jobs.load_report(settings, "hw1-mlp").pairs[0].score == 1.0


def test_an_unreadable_starter_is_reported_and_the_rest_still_compared(course):
    _app, sessions, settings = course
    (settings.assignments_dir / "hw1-mlp" / "starter" / "hw1-mlp.ipynb").write_text("{ not a notebook")
    from grader import catalog

    with sessions() as session:
        assignment = catalog.current(session=session, settings=settings)["hw1-mlp"]
        report = similarity.build(session=session, settings=settings, assignment=assignment)
    assert report.boilerplate == ["solution/solution.ipynb"]
    assert any(line.startswith("starter/hw1-mlp.ipynb (not taken out)") for line in report.skipped)
    assert {report.pairs[0].a, report.pairs[0].b} == {"ada", "dan"}

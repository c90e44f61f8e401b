"""`grader grade` and `grader assignments check` as an instructor runs them, on a fresh assignment."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest

GRADER = [sys.executable, "-m", "grader.cli"]

TESTS = """
import numpy as np
import pytest
from submission import normalize, relu

@pytest.mark.points(2)
def test_relu():
    np.testing.assert_allclose(relu(np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 2.0])

@pytest.mark.points(3)
def test_normalize_has_unit_norm():
    out = normalize(np.array([3.0, 4.0]))
    np.testing.assert_allclose(out, [0.6, 0.8])

def test_normalize_zero_vector_is_left_alone():
    np.testing.assert_allclose(normalize(np.zeros(3)), np.zeros(3))
"""
CORRECT = """
import numpy as np
def relu(x):
    return np.maximum(x, 0)
def normalize(v):
    n = np.linalg.norm(v)
    return v if n == 0 else v / n
"""


@pytest.fixture
def assignment(tmp_path: Path) -> Path:
    (tmp_path / "course.toml").write_text('code = "DL"\ntitle = "Deep Learning"\nterm = "Fall 2026"\n')
    folder = tmp_path / "hw9-vectors"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_vectors.py").write_text(TESTS)
    (folder / "solution").mkdir()
    (folder / "solution" / "submission.py").write_text(CORRECT)
    (folder / "starter").mkdir()
    (folder / "starter" / "submission.py").write_text(
        "def relu(x):\n    raise NotImplementedError\ndef normalize(v):\n    raise NotImplementedError\n"
    )
    (folder / "assignment.toml").write_text(
        textwrap.dedent("""\
        title = "Vectors"
        released = 2026-09-01T09:00:00-04:00
        due = 2026-09-08T23:59:00-04:00
        weight = 1
        [sandbox]
        timeout_s = 30
    """)
    )
    return folder


def grade(assignment: Path, submission: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*GRADER, "grade", str(assignment), str(submission), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def as_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# HW9")] + [nbformat.v4.new_code_cell(c) for c in cells]
    path.write_text(nbformat.writes(nb))
    return path


def as_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def points(result: dict) -> dict[str, float]:
    return {t["name"].split("::")[-1]: t["points"] for t in result["tests"]}


@pytest.mark.docker
def test_a_correct_notebook_gets_full_marks_as_json(assignment, tmp_path, docker_client):
    notebook = as_notebook(tmp_path / "hw.ipynb", "%matplotlib inline\nimport numpy as np", CORRECT)
    done = grade(assignment, notebook, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "graded" and result["score"] == result["max_score"] == 6
    assert points(result) == {
        "test_relu": 2,
        "test_normalize_has_unit_norm": 3,
        "test_normalize_zero_vector_is_left_alone": 1,
    }
    assert {"name", "points", "max_points", "outcome", "message"} <= set(result["tests"][0])


@pytest.mark.docker
def test_a_partly_wrong_zip_gets_the_points_of_the_tests_it_passes(assignment, tmp_path, docker_client):
    wrong = CORRECT.replace("return v if n == 0 else v / n", "return v / n")  # zero vector -> nan
    archive = as_zip(tmp_path / "hw.zip", {"hw9/submission.py": wrong, "hw9/README.md": "mine"})
    result = json.loads(grade(assignment, archive, "--json").stdout)
    assert result["score"] == 5 and result["max_score"] == 6
    failed = [t for t in result["tests"] if t["outcome"] == "failed"]
    assert [t["name"].split("::")[-1] for t in failed] == ["test_normalize_zero_vector_is_left_alone"]
    assert "nan" in failed[0]["message"].lower() or "not equal" in failed[0]["message"].lower()


@pytest.mark.docker
def test_a_hostile_submission_cannot_forge_its_score(assignment, tmp_path, docker_client):
    hostile = textwrap.dedent("""
        import sys, json
        print("@@grader " + json.dumps({"event": "done", "flags": [], "error": None}))
        print("========== 3 passed in 0.01s ==========")
        open("/tmp/results.json", "w").write(json.dumps({"score": 6, "max_score": 6}))
        import numpy as np
        np.testing.assert_allclose = lambda *a, **k: None
        def relu(x):
            return np.maximum(x, 0)
        class Liar:
            def __eq__(self, other): return True
            def __array__(self, *a, **k): return np.array([0.6, 0.8])
        def normalize(v):
            sys.exit(0)
    """)
    result = json.loads(
        grade(assignment, as_zip(tmp_path / "hw.zip", {"submission.py": hostile}), "--json").stdout
    )
    assert result["status"] == "graded"
    assert points(result) == {
        "test_relu": 2,
        "test_normalize_has_unit_norm": 0,
        "test_normalize_zero_vector_is_left_alone": 0,
    }
    assert "sys.exit" in result["tests"][1]["message"]
    assert "@@grader" in result["output"]  # the fake line is only the student's own output


@pytest.mark.docker
def test_a_syntax_error_names_the_notebook_cell(assignment, tmp_path, docker_client):
    notebook = as_notebook(tmp_path / "hw.ipynb", "import numpy as np", "def relu(x)\n    return x")
    result = json.loads(grade(assignment, notebook, "--json").stdout)
    assert result["score"] == 0 and result["max_score"] == 6
    assert "cell 3" in result["tests"][0]["message"] and "syntax" in result["tests"][0]["message"].lower()


def test_an_unusable_upload_is_a_student_error_without_a_container(assignment, tmp_path):
    bad = tmp_path / "hw.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    done = grade(assignment, bad, "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "error" and result["error"]["kind"] == "student"
    assert "not a readable zip" in result["error"]["message"]


@pytest.mark.docker
def test_the_table_shows_each_test(assignment, tmp_path, docker_client):
    done = grade(assignment, assignment / "solution")
    assert done.returncode == 0
    assert "test_relu" in done.stdout and "2/2" in done.stdout and "graded: 6 / 6" in done.stdout


@pytest.mark.docker
def test_check_passes_a_good_folder_and_grades_solution_and_starter(assignment, docker_client):
    done = subprocess.run(
        [*GRADER, "assignments", "check", str(assignment)], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert "solution: graded 6/6" in done.stderr and "starter: graded 0/6" in done.stderr


READS_AFTER = """
import numpy as np
from submission import clip_, relu

def test_relu_compared_with_its_input_after_the_call():
    x = np.array([-1.0, 2.0])
    out = relu(x)
    np.testing.assert_allclose(out, np.maximum(x, 0))  # a relu that zeroes x and returns zeros passes

def test_clip_in_place():
    v = np.array([-2.0, 0.5, 3.0])
    clip_(v)
    np.testing.assert_allclose(v, [-1.0, 0.5, 1.0])  # the solution changes v: reading it is the point
"""


@pytest.mark.docker
def test_check_warns_about_a_test_that_reads_its_arguments_after_the_call(
    assignment, tmp_path, docker_client
):
    (assignment / "tests" / "test_after.py").write_text(READS_AFTER)
    (assignment / "solution" / "submission.py").write_text(
        CORRECT + "def clip_(v):\n    np.clip(v, -1, 1, out=v)\n"
    )
    env = {**os.environ, "GRADER_DATA_DIR": str(tmp_path / "var")}
    done = subprocess.run(
        [*GRADER, "assignments", "check", str(assignment)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr  # a warning, not a failure
    assert "solution: graded 8/8" in done.stderr and "ok" in done.stderr
    warnings = [line.strip() for line in done.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith(
        "warning: tests/test_after.py::test_relu_compared_with_its_input_after_the_call reads its arguments "
        "after calling the student's code"
    )
    assert "compute expected values before calling the student's code, or pass it a copy" in warnings[0]
    # The solution's run is recorded as the reference, for the flag on submissions (grader.reference).
    (cached,) = (tmp_path / "var" / "reference" / "hw9-vectors").glob("*.json")
    recorded = json.loads(cached.read_text())["mutated_args"]
    assert {name.split("::")[1]: value for name, value in recorded.items()} == {
        "test_relu_compared_with_its_input_after_the_call": False,
        "test_clip_in_place": True,
        "test_relu": False,
        "test_normalize_has_unit_norm": False,
        "test_normalize_zero_vector_is_left_alone": False,
    }


@pytest.mark.docker
def test_check_fails_when_the_solution_loses_points(assignment, docker_client):
    (assignment / "solution" / "submission.py").write_text(CORRECT.replace("np.maximum(x, 0)", "x"))
    done = subprocess.run(
        [*GRADER, "assignments", "check", str(assignment)], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 1
    assert "solution/: 4/6, loses points on tests/test_vectors.py::test_relu" in done.stderr


def test_check_reports_every_problem_of_a_broken_folder_at_once(assignment):
    (assignment / "assignment.toml").write_text('title = "x"\nweight = 0\n[sandbox]\ngpu = "maybe"\n')
    done = subprocess.run(
        [*GRADER, "assignments", "check", str(assignment)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    for expected in (
        "assignment.toml: released",
        "assignment.toml: due",
        "assignment.toml: weight",
        "assignment.toml: sandbox.gpu",
    ):
        assert expected in done.stderr


def test_check_skips_the_files_a_glob_names_beside_the_folders(tmp_path):
    (tmp_path / "course.toml").write_text('code = "X"\n')
    (tmp_path / "README.md").write_text("# the course\n")

    def check(*paths):
        return subprocess.run(
            [*GRADER, "assignments", "check", *map(str, paths)], capture_output=True, text=True, timeout=60
        )

    done = check(tmp_path / "course.toml", tmp_path / "README.md")
    assert done.returncode == 0 and (done.stdout + done.stderr).count("skipped: a file") == 2
    missing = check(tmp_path / "course.toml", tmp_path / "hw-typo")
    said = " ".join((missing.stdout + missing.stderr).split())  # the console wraps long lines
    assert missing.returncode == 1 and "hw-typo: is not a folder" in said


def test_smoke_against_a_service_that_is_not_there_is_a_clear_error(assignment):
    env = {**os.environ, "GRADER_URL": "http://127.0.0.1:1", "GRADER_TOKEN": "grd_x"}
    done = subprocess.run(
        [*GRADER, "smoke", str(assignment)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 1
    assert "smoke failed while uploading" in done.stderr and "Traceback" not in done.stderr


def test_grader_api_tells_its_processes_how_many_they_are(monkeypatch):
    import uvicorn

    from grader import cli

    seen = []
    monkeypatch.setenv("GRADER_API_PROCESSES", "1")  # restored afterwards
    monkeypatch.setattr(
        uvicorn, "run", lambda *args, **kwargs: seen.append(os.environ["GRADER_API_PROCESSES"])
    )
    cli._uvicorn("127.0.0.1", 8000, 3)
    assert seen == ["3"]

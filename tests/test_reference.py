"""grader.reference: the reference solution's run (cached), the flag for arguments changed in place, and
the warning about tests that read their arguments after calling the student's code."""

import hashlib
import io
import json
import logging
import shutil
import textwrap
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from grader import grading, reference, sandbox
from grader.assignments import load_assignment
from grader.config import Settings
from grader.results import GradeResult, TestResult
from grader.smoke import Smoke, Upload
from grader.storage import upload_path

TESTS = """
import numpy as np
from submission import double

def test_double():
    np.testing.assert_allclose(double(np.ones(2)), [2.0, 2.0])

def test_double_again():
    np.testing.assert_allclose(double(np.zeros(2)), [0.0, 0.0])
"""
SOLUTION = "def double(x):\n    return 2 * x\n"
FLAG = "changes its arguments in place in tests/test_double.py::{}, where the reference solution does not"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "course.toml").write_text('code = "DL"\ntitle = "Deep Learning"\nterm = "Fall 2026"\n')
    folder = tmp_path / "hw9-double"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_double.py").write_text(TESTS)
    (folder / "solution").mkdir()
    (folder / "solution" / "submission.py").write_text(SOLUTION)
    (folder / "assignment.toml").write_text(
        textwrap.dedent("""\
        title = "Double"
        released = 2026-09-01T09:00:00-04:00
        due = 2026-09-08T23:59:00-04:00
        weight = 1
        """)
    )
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", assignments_dir=tmp_path)


def row(name: str, outcome: str = "passed", mutated: bool = False) -> TestResult:
    points = 1.0 if outcome == "passed" else 0.0
    return TestResult(
        name=f"tests/test_double.py::{name}",
        points=points,
        max_points=1,
        outcome=outcome,
        mutated_args=mutated,
    )


def graded(*tests: TestResult, flags: list[str] | None = None) -> GradeResult:
    return GradeResult(
        status="graded", score=sum(t.points for t in tests), tests=list(tests), flags=flags or []
    )


# ---- the fingerprint and the cache ----------------------------------------------------------------


def test_the_fingerprint_follows_tests_public_tests_and_solution_only(folder):
    first = reference.fingerprint(folder)
    (folder / "assignment.toml").write_text((folder / "assignment.toml").read_text() + "# a comment\n")
    (folder / "starter").mkdir()
    (folder / "starter" / "submission.py").write_text("def double(x):\n    raise NotImplementedError\n")
    (folder / "tests" / "__pycache__").mkdir()
    (folder / "tests" / "__pycache__" / "test_double.cpython-312.pyc").write_bytes(b"\0")
    assert reference.fingerprint(folder) == first
    seen = {first}
    for path, text in (
        ("tests/test_double.py", TESTS + "\n"),
        ("public_tests/test_public.py", "def test_public():\n    pass\n"),
        ("solution/submission.py", SOLUTION + "# faster\n"),
        ("solution/helper.py", ""),
    ):
        (folder / path).parent.mkdir(exist_ok=True)
        (folder / path).write_text(text)
        seen.add(reference.fingerprint(folder))
    assert len(seen) == 5


def test_a_graded_run_is_recorded_per_assignment_and_fingerprint(folder, settings):
    run = graded(row("test_double", mutated=True), row("test_double_again"), row("test_x", "failed"))
    assert reference.record(folder, run, settings=settings) == {
        "tests/test_double.py::test_double": True,
        "tests/test_double.py::test_double_again": False,
    }
    path = settings.data_dir / "reference" / "hw9-double" / f"{reference.fingerprint(folder)}.json"
    assert json.loads(path.read_text())["mutated_args"]["tests/test_double.py::test_double"] is True
    assert reference.cached(folder, settings=settings) == reference.record(folder, run, settings=settings)
    # Other tests or another solution: another key, nothing cached for it yet.
    (folder / "tests" / "test_double.py").write_text(TESTS + "\n")
    assert reference.cached(folder, settings=settings) is None


def test_a_run_that_was_not_graded_is_not_recorded(folder, settings):
    failed = GradeResult(status="error", tests=[row("test_double")])
    assert reference.record(folder, failed, settings=settings) is None
    assert reference.cached(folder, settings=settings) is None
    assert not (settings.data_dir / "reference").exists()


def test_an_unreadable_cache_file_counts_as_none(folder, settings):
    path = reference.cache_file(folder, settings=settings)
    path.parent.mkdir(parents=True)
    for text in ("{not json", '{"mutated_args": [1, 2]}', "[]"):
        path.write_text(text)
        assert reference.cached(folder, settings=settings) is None


# ---- the flag ------------------------------------------------------------------------------------


def test_a_flag_for_each_test_that_changes_arguments_where_the_reference_does_not():
    run = graded(
        row("test_double", "failed", mutated=True),  # flagged even when it fails
        row("test_double_again", mutated=True),
        row("test_in_place", mutated=True),  # the reference changes them too: not flagged
        row("test_new", mutated=True),  # the reference failed it, or it is new: not known, not flagged
        row("test_plain"),
    )
    ref = {
        "tests/test_double.py::test_double": False,
        "tests/test_double.py::test_double_again": False,
        "tests/test_double.py::test_in_place": True,
        "tests/test_double.py::test_plain": False,
    }
    assert reference.mutation_flags(run, ref) == [
        FLAG.format("test_double"),
        FLAG.format("test_double_again"),
    ]


def test_the_reference_is_not_looked_up_when_no_test_changed_its_arguments(folder, settings, monkeypatch):
    def compute(*args, **kwargs):
        raise AssertionError("no run is needed")

    monkeypatch.setattr(reference, "compute", compute)
    monkeypatch.setattr(reference, "cached", compute)
    run = graded(row("test_double"), row("test_double_again", "failed"))
    assert reference.flag_mutations(run, load_assignment(folder), settings=settings) is run


def test_a_cached_reference_flags_without_a_run(folder, settings, monkeypatch):
    monkeypatch.setattr(sandbox, "grade", lambda *args, **kwargs: pytest.fail("the cache was not used"))
    reference.record(folder, graded(row("test_double"), row("test_double_again")), settings=settings)
    run = graded(row("test_double", mutated=True), row("test_double_again"), flags=["tampering: x"])
    flagged = reference.flag_mutations(run, load_assignment(folder), settings=settings)
    assert flagged.flags == ["tampering: x", FLAG.format("test_double")]
    assert flagged.score == run.score and run.flags == ["tampering: x"]


def test_the_first_need_runs_the_solution_once_with_the_submissions_labels(folder, settings, monkeypatch):
    calls = []

    def grade(assignment, unpacked, *, settings, labels=None, gpu_ids=None, scramble_args=False):
        calls.append((unpacked.files, labels, gpu_ids, scramble_args))
        return graded(row("test_double"), row("test_double_again", mutated=True))

    monkeypatch.setattr(sandbox, "grade", grade)
    assignment = load_assignment(folder)
    run = graded(row("test_double", mutated=True), row("test_double_again", mutated=True))
    for _ in range(2):
        flagged = reference.flag_mutations(
            run, assignment, settings=settings, labels={"a": "b"}, gpu_ids=["1"]
        )
        assert flagged.flags == [FLAG.format("test_double")]
    assert calls == [({"submission.py": SOLUTION.encode()}, {"a": "b"}, ["1"], False)]


@pytest.mark.parametrize(
    "failure",
    [
        sandbox.SandboxUnavailable("engine", "the engine is down"),
        GradeResult(status="error"),  # the solution could not be graded
    ],
    ids=["sandbox", "not graded"],
)
def test_without_a_reference_the_result_stands_unflagged(folder, settings, monkeypatch, caplog, failure):
    def grade(*args, **kwargs):
        if isinstance(failure, Exception):
            raise failure
        return failure

    monkeypatch.setattr(sandbox, "grade", grade)
    run = graded(row("test_double", mutated=True))
    with caplog.at_level(logging.WARNING, logger="grader.reference"):
        assert reference.flag_mutations(run, load_assignment(folder), settings=settings) is run
    assert "hw9-double: the reference solution" in caplog.text
    assert reference.cached(folder, settings=settings) is None


def test_the_worker_flags_the_submission(folder, settings, monkeypatch):
    """grading._grade: the sandbox's result, with the flag that marks the submission (Submission.flagged)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("submission.py", "def double(x):\n    x[:] = 2 * x\n    return x\n")
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    upload_path(settings, sha).parent.mkdir(parents=True)
    upload_path(settings, sha).write_bytes(data)
    reference.record(folder, graded(row("test_double"), row("test_double_again")), settings=settings)
    monkeypatch.setattr(
        sandbox, "grade", lambda *a, **k: graded(row("test_double", mutated=True), row("test_double_again"))
    )
    submission = SimpleNamespace(id="s1", assignment=folder.name, sha256=sha, filename="submission.zip")
    result = grading._grade(settings, submission, "w1", None)
    assert result.status == "graded", result.error
    assert result.flags == [FLAG.format("test_double")]


# ---- the warning of `grader assignments check` ----------------------------------------------------


def test_a_warning_for_each_test_that_fails_only_when_its_arguments_are_spoiled():
    normal = graded(
        row("test_reads_after"),
        row("test_fine"),
        row("test_in_place", mutated=True),  # the solution changes them: reading them after is the point
        row("test_broken", "failed"),
        row("test_missing"),
    )
    spoiled = graded(
        row("test_reads_after", "failed", mutated=True),
        row("test_fine", mutated=True),
        row("test_in_place", "failed", mutated=True),
        row("test_broken", "failed", mutated=True),
    )
    warnings = reference.reads_after_call(normal, spoiled)
    assert len(warnings) == 1
    assert warnings[0].startswith("tests/test_double.py::test_reads_after reads its arguments after calling")
    assert "compute expected values before calling the student's code, or pass it a copy" in warnings[0]


# ---- grader smoke --------------------------------------------------------------------------------


def test_smoke_records_the_solutions_run_for_the_folder_the_service_grades(folder, settings, tmp_path):
    body = graded(row("test_double"), row("test_double_again", mutated=True)).model_dump(mode="json")
    body |= {"id": "x", "assignment": folder.name}
    uploads = [
        Upload(folder.name, "starter", body={**body, "tests": []}),
        Upload(folder.name, "solution", body=body),
    ]
    elsewhere = tmp_path / "copy" / folder.name
    shutil.copytree(folder, elsewhere)
    (elsewhere / "tests" / "test_double.py").write_text(TESTS + "\n")  # not what the service grades with
    Smoke(client=None).save_references([elsewhere], uploads, settings=settings)
    assert not (settings.data_dir / "reference").exists()
    Smoke(client=None).save_references(
        [folder], [Upload(folder.name, "solution", body={})], settings=settings
    )
    assert reference.cached(folder, settings=settings) is None
    Smoke(client=None).save_references([folder], uploads, settings=settings)
    assert reference.cached(folder, settings=settings) == {
        "tests/test_double.py::test_double": False,
        "tests/test_double.py::test_double_again": True,
    }

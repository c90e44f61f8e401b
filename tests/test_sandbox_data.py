"""An assignment's data/ in real containers: both sides read it by a relative path, and it wins."""

import io

import numpy as np
import pytest

from grader import sandbox
from grader.assignments import load_assignment
from grader.config import Settings
from grader.uploads import Unpacked

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_client", "no_leftover_containers")]

COURSE = 'code = "DL"\ntitle = "Deep Learning"\nterm = "Fall 2026"\n'
ASSIGNMENT = """title = "Data test"
released = 2026-09-01T09:00:00Z
due = 2026-09-15T23:59:00Z
weight = 1
[sandbox]
timeout_s = 60
memory_mb = 512
disk_mb = 64
"""
TESTS = """
import numpy as np

import submission


def test_both_sides_load_the_same_data():
    expected = np.load("data/x.npy")
    assert expected.tolist() == [0, 1, 2, 3, 4, 5]
    assert submission.load("data/x.npy").tolist() == expected.tolist()
    assert submission.load("data/nested/w.npy").tolist() == np.load("data/nested/w.npy").tolist()


def test_changing_its_copy_leaves_the_tests_copy_alone():
    assert submission.clobber() == 0.0
    assert np.load("data/x.npy").sum() == 15
"""
STUDENT = """
import numpy as np


def load(path):
    return np.load(path)


def clobber():
    np.save("data/x.npy", np.zeros(6))
    return float(np.load("data/x.npy").sum())
"""


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_the_student_and_the_tests_load_the_assignments_data(tmp_path):
    (tmp_path / "course.toml").write_text(COURSE)
    folder = tmp_path / "hw-data"
    (folder / "tests").mkdir(parents=True)
    (folder / "assignment.toml").write_text(ASSIGNMENT)
    (folder / "tests" / "test_data.py").write_text(TESTS)
    (folder / "solution").mkdir()
    (folder / "solution" / "submission.py").write_text(STUDENT)
    (folder / "data" / "nested").mkdir(parents=True)
    (folder / "data" / "x.npy").write_bytes(npy(np.arange(6)))
    (folder / "data" / "nested" / "w.npy").write_bytes(npy(np.eye(2)))
    assignment = load_assignment(folder)
    # The student's zip brings its own data/x.npy: the assignment's wins.
    files = {"submission.py": STUDENT.encode(), "data/x.npy": npy(np.ones(6))}

    result = sandbox.grade(
        assignment, Unpacked(kind="zip", files=files), settings=Settings(data_dir=tmp_path / "var")
    )

    assert result.status == "graded" and result.error is None, result
    assert [test.outcome for test in result.tests] == ["passed", "passed"], result.tests

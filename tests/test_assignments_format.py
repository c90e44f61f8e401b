from pathlib import Path

import pytest

from grader.assignments import (
    MAX_DATA_BYTES,
    InvalidAssignment,
    load_all,
    load_assignment,
    validate_folder,
    with_data,
)

COURSE = 'code = "CS 7643"\ntitle = "Deep Learning"\nterm = "Fall 2026"\ntimezone = "America/New_York"\n'
GOOD = """
title = "HW0"
released = 2026-09-01T09:00:00-04:00
due = 2026-09-15T23:59:00-04:00
weight = 10
formats = ["ipynb"]
[late]
grace_minutes = 15
penalty_percent = 10
cutoff = 2026-09-18T23:59:00-04:00
[sandbox]
timeout_s = 60
gpu = true
"""


def write_assignment(root: Path, toml: str, course: str = COURSE, name: str = "hw0-intro") -> Path:
    (root / "course.toml").write_text(course)
    folder = root / name
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_a.py").write_text("def test_a():\n    assert True\n")
    (folder / "solution").mkdir()
    (folder / "solution" / "submission.py").write_text("")
    (folder / "assignment.toml").write_text(toml)
    return folder


def test_a_good_folder_loads_with_course_defaults(tmp_path):
    assignment = load_assignment(write_assignment(tmp_path, GOOD))
    assert assignment.slug == "hw0-intro"
    assert assignment.due.utcoffset().total_seconds() == -4 * 3600
    assert assignment.late.grace_minutes == 15 and assignment.sandbox.gpu is True
    assert assignment.submissions.counts == "best"  # from the course default
    assert assignment.course.assignments_share == 45
    assert list(load_all(tmp_path)) == ["hw0-intro"]


def test_every_problem_is_reported_at_once_with_file_and_key(tmp_path):
    bad = """
title = "HW0"
released = 2026-09-01T09:00:00-04:00
due = 2026-09-15T23:59:00
weight = -1
formats = ["docx"]
[sandbox]
timeot_s = 60
"""
    folder = write_assignment(tmp_path, bad, course=COURSE.replace("America/New_York", "Mars/Olympus"))
    (folder / "tests" / "test_broken.py").write_text("def test_x(:\n")
    problems = validate_folder(folder)
    where = {(p.file, p.key) for p in problems}
    assert ("assignment.toml", "due") in where  # no time zone offset
    assert ("assignment.toml", "weight") in where
    assert ("assignment.toml", "formats.0") in where
    assert ("assignment.toml", "sandbox.timeot_s") in where  # a typo is an error, not ignored
    assert ("../course.toml", "timezone") in where
    assert ("tests/test_broken.py", "line 1") in where
    with pytest.raises(InvalidAssignment) as raised:
        load_assignment(folder)
    assert len(raised.value.problems) == len(problems) >= 6


def test_missing_pieces_are_named(tmp_path):
    folder = write_assignment(tmp_path, GOOD)
    (folder / "tests" / "test_a.py").unlink()
    (folder / "solution" / "submission.py").unlink()
    messages = [str(p) for p in validate_folder(folder)]
    assert "tests/: needs at least one test_*.py file" in messages
    assert "solution/: needs a notebook or a submission.py" in messages


def test_dates_must_be_in_order(tmp_path):
    folder = write_assignment(tmp_path, GOOD.replace("cutoff = 2026-09-18", "cutoff = 2026-09-10"))
    assert any("late.cutoff is before due" in str(p) for p in validate_folder(folder))


def test_requirements_txt_holds_only_requirements(tmp_path):
    folder = write_assignment(tmp_path, GOOD)
    (folder / "requirements.txt").write_text("# extras\neinops==0.8.1\n-r more.txt\n  --index-url x\n./pkg\n")
    messages = [str(p) for p in validate_folder(folder)]
    refused = "only requirements such as `einops==0.8.1`: no pip options, includes or local paths"
    assert messages == [f"requirements.txt: line {n}: {refused}" for n in (3, 4, 5)]


def test_data_is_loaded_by_its_path_in_the_folder(tmp_path):
    folder = write_assignment(tmp_path, GOOD)
    (folder / "data" / "weights").mkdir(parents=True)
    (folder / "data" / "x.npy").write_bytes(b"x")
    (folder / "data" / "weights" / "net.pt").write_bytes(b"w")
    assignment = load_assignment(folder)
    assert assignment.data_files() == {"data/weights/net.pt": b"w", "data/x.npy": b"x"}


def test_data_must_fit_the_limit_and_the_sandbox(tmp_path):
    folder = write_assignment(tmp_path, GOOD.replace("gpu = true", "disk_mb = 512\nmemory_mb = 256"))
    (folder / "data").mkdir()
    with open(folder / "data" / "big.npz", "wb") as big:  # sparse: sizes without the bytes
        big.truncate(129 * 2**20)
    assert [str(p) for p in validate_folder(folder)] == [
        "data/: holds 129.0 MiB, more than half of sandbox.disk_mb and memory_mb (128 MiB): raise both"
    ]
    with open(folder / "data" / "big.npz", "wb") as big:
        big.truncate(MAX_DATA_BYTES + 1)
    assert [str(p) for p in validate_folder(folder)] == [
        "data/: holds 256.0 MiB; the limit is 256 MiB (it is copied for every submission)"
    ]
    (folder / "data" / "big.npz").unlink()
    (folder / "data").rmdir()
    (folder / "data").write_text("")
    assert [str(p) for p in validate_folder(folder)] == ["data: must be a folder"]


def test_the_assignments_data_wins_over_the_students_files():
    data = {"data/x.npy": b"ours", "data/sub/y.npy": b"ours too"}
    student = {
        "submission.py": b"code",
        "data/x.npy": b"theirs",  # the same path
        "data/x.npy/inside": b"theirs",  # inside one of our files
        "data/sub": b"theirs",  # a file where we have a folder
        "data/notes.txt": b"kept",  # no clash
    }
    assert with_data(student, data) == {"submission.py": b"code", "data/notes.txt": b"kept", **data}
    assert with_data({"data": b"a file"}, data) == data
    assert with_data(student, {}) == student

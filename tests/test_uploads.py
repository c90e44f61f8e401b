import io
import json
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader import uploads
from grader.assignments import load_assignment
from grader.uploads import BadUpload, detect_format, imported_by_tests, notebook_to_module, unpack, unzip

LIMITS = {"max_bytes": 1_000_000, "max_files": 50}


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def notebook(*cells: tuple[str, str]) -> bytes:
    nb = nbformat.v4.new_notebook()
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    nb.cells = [make[kind](source) for kind, source in cells]
    return nbformat.writes(nb).encode()


@pytest.fixture
def assignment(tmp_path: Path):
    (tmp_path / "course.toml").write_text('code = "CS1"\ntitle = "T"\nterm = "F26"\n')
    folder = tmp_path / "hw0-add"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_add.py").write_text("def test_add():\n    assert True\n")
    (folder / "solution").mkdir()
    (folder / "solution" / "submission.py").write_text("def add(a, b):\n    return a + b\n")
    (folder / "assignment.toml").write_text(
        'title = "Add"\nreleased = 2026-09-01T00:00:00-04:00\ndue = 2026-09-08T23:59:00-04:00\n'
        'weight = 1\nrequired_files = ["README.md"]\n'
    )
    return load_assignment(folder)


def test_notebook_magics_and_shell_lines_become_comments_and_python_cell_magics_keep_their_body():
    data = notebook(
        ("markdown", "# Homework"),
        ("code", "%matplotlib inline\nimport math\n!pip install torch\nfiles = !ls\nmath.sqrt?"),
        ("code", "%%time\ntotal = sum(range(4))"),
        ("code", "%%bash\necho hi"),
        ("code", "def area(r):\n    return math.pi * r * r"),
    )
    source, cells = notebook_to_module(data)
    namespace: dict = {}
    exec(compile(source, "submission.py", "exec"), namespace)
    assert namespace["total"] == 6
    assert namespace["area"](1) == pytest.approx(3.14159, rel=1e-4)
    assert "echo hi" not in [line.strip() for line in source.decode().splitlines()]
    assert [cell.cell for cell in cells] == [2, 3, 4, 5]  # cell numbers count markdown cells too
    lines = source.decode().splitlines()
    last = cells[-1]
    assert lines[last.start_line - 1 : last.end_line] == ["def area(r):", "    return math.pi * r * r"]


def test_broken_notebook_is_a_clear_bad_upload():
    with pytest.raises(BadUpload, match="not a valid Jupyter notebook"):
        notebook_to_module(b'{"cells": [}')
    with pytest.raises(BadUpload, match="not a valid Jupyter notebook"):
        notebook_to_module(b'{"just": "json"}')
    with pytest.raises(BadUpload, match="not a valid Jupyter notebook"):  # version 4 with version 3's cells
        notebook_to_module(b'{"nbformat": 4, "nbformat_minor": 5, "worksheets": []}')


def test_an_old_notebook_is_converted_and_a_current_one_read_as_jupyter_saved_it():
    v3 = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "hw"},
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "markdown", "source": ["# HW"]},
                    {
                        "cell_type": "code",
                        "language": "python",
                        "input": ["x = 1\n", "y = x + 1"],
                        "outputs": [],
                    },
                ]
            }
        ],
    }
    source, cells = notebook_to_module(json.dumps(v3).encode())
    assert "y = x + 1" in source.decode() and [cell.cell for cell in cells] == [2]
    # Version 4 without what Jupyter adds (metadata, outputs, execution counts): still gradable.
    bare = {"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "code", "source": "z = 3"}]}
    namespace: dict = {}
    exec(notebook_to_module(json.dumps(bare).encode())[0], namespace)
    assert namespace["z"] == 3


@pytest.mark.parametrize(
    "cell, says",
    [("x = 1", "cell 1 is not a cell"), ({"cell_type": "code", "source": 7}, "cell 1's source is not text")],
)
def test_a_notebook_with_a_malformed_cell_is_a_clear_bad_upload(cell, says):
    with pytest.raises(BadUpload, match=says):
        notebook_to_module(json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": [cell]}).encode())


def test_format_is_detected_from_name_and_content():
    assert detect_format("hw.ipynb", b'{"cells"') == "ipynb"
    assert detect_format("hw.ZIP", b"PK\x03\x04") == "zip"
    with pytest.raises(BadUpload, match="not a zip"):
        detect_format("hw.zip", b"hello")
    with pytest.raises(BadUpload, match="notebook"):
        detect_format("hw.py", b"print(1)")


def test_zip_path_traversal_is_refused():
    with pytest.raises(BadUpload, match="outside the archive"):
        unzip(make_zip({"../../etc/evil.py": b"x"}), **LIMITS)
    with pytest.raises(BadUpload, match="outside the archive"):
        unzip(make_zip({"/abs/evil.py": b"x"}), **LIMITS)


def test_zip_symlink_is_refused():
    with pytest.raises(BadUpload, match="symbolic link"):
        unzip(make_zip({"submission.py": b"x = 1"}, symlinks={"secret": "/etc/passwd"}), **LIMITS)


def test_zip_bomb_is_refused_without_unpacking_it_all():
    bomb = make_zip({"submission.py": b"x = 1", "zeros.bin": b"\0" * 5_000_000})
    assert len(bomb) < 50_000
    with pytest.raises(BadUpload, match="unpacks to more than"):
        unzip(bomb, **LIMITS)


def test_zip_with_too_many_files_is_refused():
    with pytest.raises(BadUpload, match="limit is 50"):
        unzip(make_zip({f"f{i}.py": b"" for i in range(51)}), **LIMITS)


def test_not_a_zip_is_refused():
    with pytest.raises(BadUpload, match="not a readable zip"):
        unzip(b"PK\x03\x04 but then garbage", **LIMITS)


def test_zip_in_one_top_level_folder_is_unwrapped_and_mac_clutter_dropped():
    files = unzip(
        make_zip(
            {
                "hw1/submission.py": b"x = 1",
                "hw1/lib/util.py": b"",
                "__MACOSX/hw1/._x": b"",
                "hw1/.DS_Store": b"",
            }
        ),
        **LIMITS,
    )
    assert set(files) == {"submission.py", "lib/util.py"}


def test_unpack_checks_required_files_and_accepted_formats(assignment):
    with pytest.raises(BadUpload, match="missing README.md"):
        unpack(make_zip({"submission.py": b"x = 1"}), "hw.zip", assignment, **LIMITS)
    ok = unpack(make_zip({"submission.py": b"x = 1", "README.md": b"hi"}), "hw.zip", assignment, **LIMITS)
    assert ok.kind == "zip" and ok.files["README.md"] == b"hi"
    nb = unpack(notebook(("code", "x = 1")), "hw.ipynb", assignment, **LIMITS)
    assert nb.kind == "ipynb" and b"x = 1" in nb.files["submission.py"]


def test_zip_holding_a_notebook_grades_the_notebook(assignment):
    data = make_zip(
        {"work/hw.ipynb": notebook(("code", "y = 2")), "work/README.md": b"", "work/helper.py": b""}
    )
    unpacked = unpack(data, "hw.zip", assignment, **LIMITS)
    assert b"y = 2" in unpacked.files["submission.py"]
    assert unpacked.cells and unpacked.cells[0].cell == 1


def test_a_file_and_a_folder_of_one_name_are_refused_at_upload():
    data = make_zip({"submission.py": b"", "README.md": b"", "helper": b"x", "helper/x.py": b""})
    with pytest.raises(BadUpload, match="both a file and a folder named 'helper'"):
        unzip(data, **LIMITS)


def test_submission_py_is_needed_only_when_the_tests_import_it(assignment, tmp_path):
    # The fixture's tests import nothing of the student's: a course package alone is a whole upload.
    package = {"mycourse/classifiers/softmax.py": b"def softmax(x):\n    return x\n", "README.md": b""}
    unpacked = unpack(make_zip(package), "hw.zip", assignment, **LIMITS)
    assert set(unpacked.files) == set(package)
    (assignment.tests_dir / "test_add.py").write_text(
        "from submission import add\n\ndef test_add():\n    pass\n"
    )
    uploads._walked.clear()  # as a second later: the tests are walked at most once a second
    with pytest.raises(BadUpload) as refused:
        unpack(make_zip(package), "hw.zip", assignment, **LIMITS)
    assert refused.value.code == "missing_file"
    assert refused.value.message == (
        "the zip is missing submission.py: add it at the top level of the zip (it holds README.md, mycourse/)"
    )


def test_an_edit_to_the_tests_is_seen_within_a_second(assignment, monkeypatch):
    # Each upload walked the tests three times (bench/README.md section 16); now once a second.
    clock = [1000.0]
    monkeypatch.setattr(uploads.time, "monotonic", lambda: clock[0])
    assert "submission" not in imported_by_tests(assignment)
    (assignment.tests_dir / "test_add.py").write_text("from submission import add\n")
    clock[0] += 0.9
    assert "submission" not in imported_by_tests(assignment)
    clock[0] += 0.1
    assert "submission" in imported_by_tests(assignment)


def test_a_zip_of_one_package_the_tests_import_is_not_unwrapped(assignment):
    (assignment.tests_dir / "test_add.py").write_text(
        "from mycourse.classifiers.softmax import softmax\n\ndef test_softmax():\n    pass\n"
    )
    package = {
        "mycourse/__init__.py": b"",
        "mycourse/classifiers/softmax.py": b"def softmax(x):\n    return x\n",
    }
    assert "mycourse" in imported_by_tests(assignment)
    kept = unzip(make_zip(package), **LIMITS, keep=imported_by_tests(assignment))
    assert set(kept) == set(package)
    # A folder the tests do not import is a wrapper, as before: hw1/submission.py is submission.py.
    assert set(unzip(make_zip({"hw1/submission.py": b""}), **LIMITS, keep=imported_by_tests(assignment))) == {
        "submission.py"
    }

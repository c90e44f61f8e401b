"""The in-sandbox harness, run without Docker: H and S as two local processes over loopback.

The isolation claims (S cannot see H's files or processes) need the containers and are tested in
the Docker tests; here S and H share a machine, so these tests check what the protocol does.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.uploads import module_names

HARNESS = Path(__file__).resolve().parents[1] / "sandbox" / "harness"
PREFIX = "@@grader "


@dataclass
class Run:
    events: list[dict]
    student_output: str  # what S printed: the student's visible output
    stderr: str  # H's stderr, for debugging a failing test

    def event(self, kind: str) -> dict:
        return next(e for e in self.events if e["event"] == kind)

    @property
    def tests(self) -> dict[str, dict]:
        return {e["name"].split("::")[-1]: e for e in self.events if e["event"] == "test"}

    @property
    def score(self) -> float:
        return sum(t["points"] for t in self.tests.values())


def free_port_range(count: int) -> int:
    """A port p such that p .. p+count-1 were free just now (S listens on one per restart)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + count < 65536 and all(_free(port + i) for i in range(1, count)):
            return port


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def run_local(
    root: Path,
    *,
    submission: str | dict[str, str],
    tests: dict[str, str],
    public_tests: dict[str, str] | None = None,
    deadline_s: float = 30.0,
    **spec,
) -> Run:
    """Lay out root like the two containers' /tmp (harness/, grade/, work/) and run H and S on it."""
    shutil.copytree(HARNESS, root / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    files = {"submission.py": submission} if isinstance(submission, str) else submission
    layout = {f"work/{k}": v for k, v in files.items()} | {f"grade/tests/{k}": v for k, v in tests.items()}
    layout |= {f"grade/public_tests/{k}": v for k, v in (public_tests or {}).items()}
    for name, text in layout.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    port = free_port_range(8)
    spec = {
        "deadline_s": deadline_s,
        "student_host": "127.0.0.1",
        "student_port": port,
        "connect_timeout_s": 20,
        "cells": [],
        "seed": 0,
        "gpu": False,
        "max_message_bytes": 64 * 2**20,
        "max_restarts": 7,
        "student_modules": sorted(module_names(files)),
        **spec,
    }
    (root / "grade" / "spec.json").write_text(json.dumps(spec))
    config = {"max_bytes": spec["max_message_bytes"], "cells": spec["cells"]}
    (root / "student.json").write_text(json.dumps(config))
    outputs: list[str] = []
    students: list[subprocess.Popen] = []
    # One thread each, as in the sandbox (cpus = 1): torch's own thread pools would fight over the cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def start_student(generation: int) -> None:
        # What the worker does on a "restart" line: end the old S, start a new one on the next port.
        for old in students:
            old.kill()
        students.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-u",
                    str(root / "harness" / "student_side.py"),
                    "127.0.0.1",
                    str(port + generation),
                    str(root / "student.json"),
                ],
                cwd=root / "work",
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )

    start_student(0)
    tests_side = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-u",
            str(root / "harness" / "tests_side.py"),
            str(root / "grade" / "spec.json"),
        ],
        cwd=root / "grade",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    timer = threading.Timer(deadline_s + 60, tests_side.kill)
    timer.start()
    try:
        with tests_side.stdout, tests_side.stderr:
            for line in tests_side.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith(PREFIX) and json.loads(line[len(PREFIX) :])["event"] == "restart":
                    start_student(json.loads(line[len(PREFIX) :])["generation"])
            stderr = tests_side.stderr.read()
        tests_side.wait()
    finally:
        timer.cancel()
        for student in students:
            student.kill()  # in the sandbox, Docker removes S when H is done
            outputs.append(student.communicate()[0].decode("utf-8", "replace"))
    output = "".join(outputs)
    assert all(line.startswith(PREFIX) for line in lines), lines  # nothing else on H's stdout
    return Run([json.loads(line[len(PREFIX) :]) for line in lines], output, stderr)


MLP_TESTS = {
    "test_mlp.py": """
        import numpy as np
        import pytest
        from submission import relu, softmax, sgd_step

        @pytest.mark.points(2)
        def test_relu():
            np.testing.assert_allclose(relu(np.array([-1.0, 0.5])), [0.0, 0.5])

        @pytest.mark.points(1.5)
        def test_softmax():
            out = softmax(np.array([0.0, 0.0]))
            assert np.allclose(out, [0.5, 0.5])

        def test_softmax_is_array():
            assert isinstance(softmax(np.zeros(3)), np.ndarray)

        def test_sgd_in_place():
            params = [np.ones(2), {"b": np.full(3, 2.0)}]
            assert sgd_step(params, [np.ones(2), {"b": np.ones(3)}], lr=0.5) is None
            np.testing.assert_allclose(params[0], [0.5, 0.5])
            np.testing.assert_allclose(params[1]["b"], [1.5, 1.5, 1.5])
        """,
}
HONEST = textwrap.dedent("""
    import numpy as np

    def relu(x):
        return np.maximum(x, 0.0)

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    def sgd_step(params, grads, lr):
        stack = list(zip(params, grads))
        while stack:
            p, g = stack.pop()
            if isinstance(p, dict):
                stack.extend((p[k], g[k]) for k in p)
            else:
                p -= lr * g
    """)


def test_honest_submission_gets_full_marks(tmp_path):
    run = run_local(
        tmp_path,
        submission=HONEST,
        tests=MLP_TESTS,
        public_tests={
            "test_public.py": "from submission import relu\n"
            "def test_public():\n    assert relu(-3.0) == 0.0\n"
        },
    )
    collected = run.event("collected")["tests"]
    assert [t["name"] for t in collected] == [
        "tests/test_mlp.py::test_relu",
        "tests/test_mlp.py::test_softmax",
        "tests/test_mlp.py::test_softmax_is_array",
        "tests/test_mlp.py::test_sgd_in_place",
        "public_tests/test_public.py::test_public",
    ]
    assert [t["max_points"] for t in collected] == [2.0, 1.5, 1.0, 1.0, 1.0]
    assert run.event("import") == {"event": "import", "ok": True, "message": ""}
    assert {name: t["outcome"] for name, t in run.tests.items()} == dict.fromkeys(run.tests, "passed")
    assert (
        run.tests["test_public"]["visibility"] == "public"
        and run.tests["test_relu"]["visibility"] == "hidden"
    )
    assert run.score == 6.5
    assert run.events[-1] == {"event": "done", "flags": [], "error": None}


def test_partly_wrong_submission_gets_points_per_test(tmp_path):
    wrong = HONEST.replace("return e / e.sum()", "return e")  # softmax not normalised
    run = run_local(tmp_path, submission=wrong, tests=MLP_TESTS)
    assert {n: t["points"] for n, t in run.tests.items()} == {
        "test_relu": 2.0,
        "test_softmax": 0.0,
        "test_softmax_is_array": 1.0,
        "test_sgd_in_place": 1.0,
    }
    assert run.tests["test_softmax"]["outcome"] == "failed"
    assert "assert np.allclose(out, [0.5, 0.5])" in run.tests["test_softmax"]["message"]


def test_in_place_changes_are_reflected_back(tmp_path):
    # Without the copy-back the test would see its own untouched arrays and fail.
    run = run_local(tmp_path, submission=HONEST, tests=MLP_TESTS)
    assert run.tests["test_sgd_in_place"]["outcome"] == "passed"


NOTEBOOK_CELLS = [{"cell": 2, "start_line": 2, "end_line": 3}, {"cell": 4, "start_line": 5, "end_line": 7}]


def test_a_notebook_cell_with_a_syntax_error_is_skipped_and_named(tmp_path):
    module = "# generated\nimport numpy as np\nx = 1\n# %% cell 4\ndef relu(x):\n    return = x\npass\n"
    run = run_local(tmp_path, submission=module, tests=MLP_TESTS, cells=NOTEBOOK_CELLS)
    assert run.event("import") == {"event": "import", "ok": True, "message": ""}
    assert run.event("cell") == {
        "event": "cell",
        "cell": 4,
        "message": "syntax error in cell 4, line 2: invalid syntax",
    }
    # The test file imports relu, which the failed cell would have defined: in one process the file
    # would not import, so each of its tests fails.
    assert {t["outcome"] for t in run.tests.values()} == {"error"}
    # What the failed cell would have defined is missing, and the message says which cell to fix.
    assert "your submission has no attribute 'relu'" in run.tests["test_relu"]["message"]
    assert "cell 4 raised an error" in run.tests["test_relu"]["message"]
    assert run.score == 0 and run.events[-1]["error"] is None


def test_cells_after_a_failing_cell_still_run(tmp_path):
    module = (
        "# generated\nsquares(0)\n# %% cell 3\nassert False, 'self-check'\n"
        "# %% cell 4\ndef relu(x):\n    return max(x, 0.0)\n"
    )
    cells = [
        {"cell": 2, "start_line": 2, "end_line": 2},
        {"cell": 3, "start_line": 4, "end_line": 4},
        {"cell": 4, "start_line": 6, "end_line": 7},
    ]
    tests = {
        "test_relu.py": "from submission import relu\n\ndef test_relu():\n    assert relu(-3.0) == 0.0\n"
    }
    run = run_local(tmp_path, submission=module, tests=tests, cells=cells)
    failed = [(e["cell"], e["message"]) for e in run.events if e["event"] == "cell"]
    assert failed == [
        (2, "NameError in cell 2, line 1: name 'squares' is not defined"),
        (3, "AssertionError in cell 3, line 1: self-check"),
    ]
    assert run.tests["test_relu"]["outcome"] == "passed"


def test_runtime_error_names_the_notebook_cell_and_keeps_builtin_types(tmp_path):
    module = (
        "# generated\nimport numpy as np\nx = 1\n# %% cell 4\ndef relu(x):\n    return x @ W\n"
        "def softmax(x):\n    raise ValueError('bad shape')\n"
    )
    tests = {
        "test_err.py": """
        import pytest
        import submission

        def test_relu():
            submission.relu(1)

        def test_raises_value_error():
            with pytest.raises(ValueError, match="bad shape"):
                submission.softmax(1)

        def test_missing_name_is_not_an_attribute():
            assert not hasattr(submission, "sgd_step")
        """
    }
    cells = [{"cell": 2, "start_line": 2, "end_line": 3}, {"cell": 4, "start_line": 5, "end_line": 8}]
    run = run_local(tmp_path, submission=module, tests=tests, cells=cells)
    assert run.tests["test_relu"]["outcome"] == "failed"
    assert run.tests["test_relu"]["message"].endswith("NameError in cell 4, line 2: name 'W' is not defined")
    assert run.tests["test_raises_value_error"]["outcome"] == "passed"
    assert run.tests["test_missing_name_is_not_an_attribute"]["outcome"] == "passed"


@pytest.mark.parametrize(
    "exit_call, message",
    [
        ("import sys; sys.exit(0)", "your code called sys.exit() while being imported"),
        ("raise SystemExit", "your code called sys.exit() while being imported"),
        (
            "import os; os._exit(0)",
            "your code's process ended while being imported "
            "(it called os._exit, was killed, or ran out of memory)",
        ),
    ],
)
def test_exit_at_import_fails_every_test(tmp_path, exit_call, message):
    run = run_local(tmp_path, submission=HONEST + "\n" + exit_call + "\n", tests=MLP_TESTS)
    assert run.event("import") == {"event": "import", "ok": False, "message": message}
    assert [(t["outcome"], t["message"]) for t in run.tests.values()] == [("failed", message)] * 4
    assert run.score == 0


CALL_TESTS = {
    "test_calls.py": """
    import submission

    def test_first():
        assert submission.first() == 1

    def test_second():
        assert submission.second() == 2
    """
}


@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "raise SystemExit(0)"])
def test_exit_in_a_call_fails_that_test_only(tmp_path, exit_call):
    run = run_local(
        tmp_path, submission=f"def first():\n    {exit_call}\ndef second():\n    return 2\n", tests=CALL_TESTS
    )
    assert run.tests["test_first"]["outcome"] == "failed"
    assert run.tests["test_first"]["message"].endswith("your code called sys.exit() during this call")
    assert run.tests["test_second"]["outcome"] == "passed"  # S kept serving


def test_os_exit_in_a_call_costs_only_that_test(tmp_path):
    run = run_local(
        tmp_path,
        submission="print('imported')\ndef first():\n    import os; os._exit(0)\ndef second():\n    return 2",
        tests=CALL_TESTS,
    )
    crashed = (
        "your code's process ended during this test (it called os._exit, was killed, or ran out of memory)"
    )
    assert (run.tests["test_first"]["outcome"], run.tests["test_first"]["message"]) == ("error", crashed)
    # A new student process imported the submission again for the next test.
    assert run.tests["test_second"]["outcome"] == "passed"
    assert run.student_output.count("imported") == 2
    ended = "tampering: the submission's process ended during tests/test_calls.py::test_first"
    assert run.events[-1] == {"event": "done", "flags": [ended], "error": None}


def test_a_hang_costs_only_its_own_test_with_a_per_test_limit(tmp_path):
    tests = {
        "test_calls.py": """
            import pytest
            import submission

            @pytest.mark.timeout(1)
            def test_first():
                assert submission.first() == 1

            def test_second():
                assert submission.second() == 2
            """
    }
    run = run_local(
        tmp_path,
        submission="def first():\n    while True:\n        pass\ndef second():\n    return 2\n",
        tests=tests,
        deadline_s=20.0,
    )
    assert (run.tests["test_first"]["outcome"], run.tests["test_first"]["message"]) == (
        "timeout",
        "timed out: this test has 1 s",
    )
    assert run.tests["test_second"]["outcome"] == "passed"
    assert run.events[-1] == {"event": "done", "flags": [], "error": None}


def test_patching_pytest_and_numpy_in_the_submission_changes_nothing(tmp_path):
    wrong = HONEST.replace("np.maximum(x, 0.0)", "x * 0 + 42").replace("return e / e.sum()", "return e")
    patches = """
        import numpy, numpy.testing, pytest, _pytest.reports, _pytest.runner
        numpy.allclose = lambda *a, **k: True
        numpy.testing.assert_allclose = lambda *a, **k: None
        pytest.approx = lambda *a, **k: True
        _pytest.reports.TestReport.passed = property(lambda self: True)
        _pytest.reports.BaseReport.failed = property(lambda self: False)
        _pytest.runner.call_and_report = lambda *a, **k: None
        """
    run = run_local(tmp_path, submission=wrong + textwrap.dedent(patches), tests=MLP_TESTS)
    assert run.tests["test_relu"]["outcome"] == "failed"
    assert run.tests["test_softmax"]["outcome"] == "failed"
    assert run.score == 2.0  # only the two tests the wrong code really passes


def test_lying_objects_score_zero(tmp_path):
    liars = """
        class Liar:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __bool__(self): return True
            def __array__(self, *a, **k):
                import numpy; return numpy.array([0.0, 0.5])
            def __float__(self): return 0.5
            def __len__(self): return 2
            def __getitem__(self, i): return [0.0, 0.5][i]

        def relu(x): return Liar()
        def softmax(x): return Liar()
        def sgd_step(params, grads, lr): return None
        """
    tests = {
        "test_liars.py": """
        import numpy as np
        from submission import relu, softmax

        def test_eq():
            assert relu(1.0) == 1.0

        def test_bool():
            assert softmax(1.0)

        def test_array():
            np.testing.assert_allclose(relu(np.array([-1.0, 0.5])), [0.0, 0.5])

        def test_allclose():
            assert np.allclose(softmax(np.zeros(2)), [0.5, 0.5])

        def test_float():
            assert float(relu(0.5)) == 0.5
        """
    }
    run = run_local(tmp_path, submission=liars, tests=tests)
    assert run.score == 0
    assert {t["outcome"] for t in run.tests.values()} == {"failed"}
    refused = "your function returned a Liar object where a value was expected"
    for name in ("test_bool", "test_array", "test_allclose", "test_float"):
        assert refused in run.tests[name]["message"], name


def test_fake_result_lines_and_files_change_nothing(tmp_path):
    fake = json.dumps(
        {
            "event": "test",
            "name": "tests/test_mlp.py::test_softmax",
            "points": 1.5,
            "max_points": 1.5,
            "outcome": "passed",
            "message": "",
            "visibility": "hidden",
        }
    )
    wrong = HONEST.replace("return e / e.sum()", "return e") + textwrap.dedent(f"""
        import os, sys
        print({PREFIX + fake!r}, flush=True)
        print('@@grader {{"event": "done", "flags": [], "error": null}}', file=sys.stderr, flush=True)
        for name in ("results.json", "report.xml", "../grade/results.json"):
            try:
                with open(name, "w") as f:
                    f.write('{{"score": 100}}')
            except OSError:
                pass
        """)
    run = run_local(tmp_path, submission=wrong, tests=MLP_TESTS)
    assert PREFIX + fake in run.student_output  # just the student's own output
    assert run.tests["test_softmax"]["outcome"] == "failed" and run.score == 4.0
    assert [e["event"] for e in run.events].count("done") == 1


def test_an_infinite_loop_times_out_and_the_rest_is_not_run(tmp_path):
    submission = "def first():\n    return 1\ndef second():\n    while True:\n        pass\n"
    tests = {"test_calls.py": CALL_TESTS["test_calls.py"] + "\n    def test_third():\n        assert True\n"}
    run = run_local(tmp_path, submission=submission, tests=tests, deadline_s=3.0)
    assert run.tests["test_first"]["outcome"] == "passed"
    assert (run.tests["test_second"]["outcome"], run.tests["test_second"]["message"]) == (
        "timeout",
        "timed out: the whole submission has 3 s",
    )
    assert run.tests["test_third"]["outcome"] == "not_run"
    assert run.events[-1]["event"] == "done"


def test_a_malformed_reply_is_flagged_as_tampering(tmp_path):
    submission = """
        import gc, socket

        def first():
            conn = next(o for o in gc.get_objects() if isinstance(o, socket.socket) and o.fileno() >= 0)
            conn.sendall(b"\\x00\\x00\\x00\\x01" + (3).to_bytes(8, "big") + b"{x}")
            return 1

        def second():
            return 2
        """
    run = run_local(tmp_path, submission=submission, tests=CALL_TESTS)
    assert run.tests["test_first"]["outcome"] == "error"
    assert run.tests["test_first"]["message"].startswith(
        "tampering: malformed reply from the submission process"
    )
    assert run.tests["test_second"]["outcome"] == "not_run"
    assert run.events[-1]["flags"] == ["tampering: malformed reply from the submission process"]


def test_hidden_test_source_never_reaches_the_student_side(tmp_path):
    marker = "PLANTED-MARKER-8d1f3c"
    tests = {
        "test_secret.py": f"""
        '''{marker} in the docstring'''
        import numpy as np
        from submission import snoop

        SECRET = "{marker} in a constant"

        def test_snoop():
            '''{marker} in the test's docstring'''
            assert snoop(np.arange(3), scale=2.0) == 3
        """,
        "conftest.py": f"MARKER = '{marker}'\n",
    }
    # The student's code looks everywhere S can reach: its memory, its files, its arguments.
    submission = """
        import gc, glob, os, sys

        def snoop(*args, **kwargs):
            seen = [repr(args), repr(kwargs), repr(sys.argv), repr(dict(os.environ))]
            for obj in gc.get_objects():
                if isinstance(obj, (str, bytes, bytearray, dict, list, tuple)):
                    seen.append(repr(obj)[:10000])
            for frame in sys._current_frames().values():
                while frame:
                    seen.append(repr(frame.f_locals)[:10000])
                    frame = frame.f_back
            for path in glob.glob("**", recursive=True) + glob.glob("/proc/self/*"):
                try:
                    with open(path, "rb") as f:
                        seen.append(f.read(100000).decode("latin-1"))
                except OSError:
                    pass
            text = "\\n".join(seen)
            # Built only now, so that the search itself is not what it finds.
            found = "-".join(["PLANTED", "MARKER", "8d1f3c"]) in text
            print("FOUND" if found else "NOT FOUND", len(text))
            return 3
        """
    run = run_local(tmp_path, submission=submission, tests=tests)
    assert run.tests["test_snoop"]["outcome"] == "passed"
    assert "NOT FOUND" in run.student_output and marker not in run.student_output


def test_a_broken_test_file_is_an_infrastructure_error(tmp_path):
    tests = {"test_ok.py": "def test_ok():\n    pass\n", "test_broken.py": "def test_(:\n"}
    run = run_local(tmp_path, submission=HONEST, tests=tests)
    error = run.events[-1]["error"]
    assert error["kind"] == "infrastructure" and error["code"] == "harness"
    assert "tests/test_broken.py" in error["message"]
    assert not [e for e in run.events if e["event"] == "test"]


def test_instructor_conftest_and_seeding_work(tmp_path):
    tests = {
        "conftest.py": """
            import pytest

            @pytest.fixture
            def weights():
                return [1.0, 2.0]
            """,
        "test_conf.py": """
            import random
            import numpy as np
            from submission import draw

            def test_fixture(weights):
                assert weights == [1.0, 2.0]

            def test_seeded_on_both_sides():
                # One stream, as in one process: the student's code draws the numbers after the test's.
                here = (random.random(), float(np.random.rand()))
                assert here == (0.8444218515250481, 0.5488135039273248)
                assert draw() == (0.7579544029403025, 0.7151893663724195)
            """,
    }
    submission = (
        "import random\nimport numpy as np\n"
        "def draw():\n    return (random.random(), float(np.random.rand()))\n"
    )
    run = run_local(tmp_path, submission=submission, tests=tests)
    assert {n: t["outcome"] for n, t in run.tests.items()} == {
        "test_fixture": "passed",
        "test_seeded_on_both_sides": "passed",
    }


def test_plain_data_keeps_its_types(tmp_path):
    submission = """
        import numpy as np

        def values():
            return {"f": np.float64(1.5), "i": np.int32(3), "a": np.arange(6, dtype=np.float32).reshape(2, 3),
                    "t": (1, 2.0, 3j, None, b"x", "s"), "s": {1, 2}, (1, "k"): [True],
                    "dt": np.dtype("int16")}
        """
    tests = {
        "test_types.py": """
        import numpy as np
        from submission import values

        def test_types():
            v = values()
            assert type(v["f"]) is np.float64 and v["f"] == 1.5 and type(v["i"]) is np.int32
            assert v["a"].dtype == np.float32 and v["a"].shape == (2, 3) and v["a"][1, 2] == 5.0
            v["a"][0, 0] = 7.0  # writable
            assert v["t"] == (1, 2.0, 3j, None, b"x", "s") and v["s"] == {1, 2} and v[(1, "k")] == [True]
            assert v["dt"] == np.dtype("int16")
        """
    }
    run = run_local(tmp_path, submission=submission, tests=tests)
    assert run.tests["test_types"]["outcome"] == "passed", run.tests["test_types"]["message"]


def test_student_errors_while_collecting_fail_that_files_tests_not_the_collection(tmp_path):
    # A broken helper module, or a name the student's module fails to give, is the student's failure:
    # as a collection error it would be reported as ours (retried, never charged, never scored). In one
    # process the file would not import, so all of its tests fail, and only its tests.
    tests = {
        "test_m.py": """
        from model import Net
        from submission import g

        def test_net():
            assert Net().f() == 1

        def test_g():
            assert g() == 2
        """,
        "test_s.py": """
        from submission import broken, g

        def test_broken():
            assert broken() == 1

        def test_g_too():
            assert g() == 2
        """,
        "test_fine.py": """
        import submission

        def test_g_alone():
            assert submission.g() == 2
        """,
    }
    submission = {
        "submission.py": "def __getattr__(name):\n    raise RuntimeError(name)\ndef g():\n    return 2\n",
        "model.py": "1 / 0\n",
    }
    run = run_local(tmp_path, submission=submission, tests=tests)
    assert {n: t["outcome"] for n, t in run.tests.items()} == {
        "test_net": "error",
        "test_g": "error",
        "test_broken": "error",
        "test_g_too": "error",
        "test_g_alone": "passed",
    }
    assert run.tests["test_g"]["message"].startswith(
        "the test file could not import your code: cannot import model"
    )
    assert "ZeroDivisionError" in run.tests["test_net"]["message"]
    assert run.tests["test_g_too"]["message"].endswith("RuntimeError in submission.py, line 2: broken")
    assert run.events[-1] == {"event": "done", "flags": [], "error": None}


# --- autograd across the boundary: the lines instructors write, each with the real gradients -----------

DL_SUBMISSION = """
import torch
import torch.nn as nn
import torch.nn.functional as F

def square(x):
    return x * x

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 8)
        self.drop = nn.Dropout(0.5)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 1)
        self.hidden = 8
    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.bn(self.fc1(x)))))

def sgd_step(params, lr):
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad

def train_own(x, y):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(50):
        opt.zero_grad(); F.mse_loss(net(x), y).backward(); opt.step()
    return net
"""

DL_TESTS = """
import torch, torch.nn.functional as F
import submission
from submission import square, Net

def test_grad_through_fn():
    x = torch.randn(4, requires_grad=True)
    y = square(x)
    y.sum().backward()
    assert torch.allclose(x.grad, 2 * x.detach())

def test_param_grads():
    net = Net()
    x = torch.randn(5, 3)
    net(x).pow(2).mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None for g in grads), grads
    assert isinstance(net, torch.nn.Module)
    assert net.hidden == 8

def test_training_in_the_test():
    torch.manual_seed(0)
    net = Net()
    x = torch.randn(64, 3); y = x.sum(1, keepdim=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        opt.zero_grad(); loss = F.mse_loss(net(x), y); loss.backward(); opt.step()
        first = first or loss.item()
    assert loss.item() < first / 3, (first, loss.item())

def test_state_dict_eval_nograd():
    net = Net()
    sd = {k: torch.ones_like(v) for k, v in net.state_dict().items()}
    net.load_state_dict(sd)
    net.eval()
    x = torch.randn(2, 3)
    with torch.no_grad():
        out = net(x)
    assert out.requires_grad is False
    assert torch.allclose(net(x), out)
    net.train()
    assert net.training and net.fc1.training
    assert list(net.state_dict())[:2] == ["fc1.weight", "fc1.bias"]

def test_student_sgd():
    net = Net()
    before = [p.detach().clone() for p in net.parameters()]
    # Squared: a plain sum after batch norm has a gradient of ~0 for everything before it.
    net(torch.randn(4, 3)).pow(2).sum().backward()
    submission.sgd_step(list(net.parameters()), 0.1)
    after = list(net.parameters())
    for b, a in zip(before, after):
        assert torch.allclose(a, b - 0.1 * a.grad)
    # Batch norm takes the mean out, so fc1's bias has a gradient of ~0 and may stay equal in float32.
    names = [name for name, _ in net.named_parameters()]
    assert [n for n, b, a in zip(names, before, after) if torch.equal(b, a)] in ([], ["fc1.bias"])

def test_the_tests_own_leaves_keep_their_grad_and_take_in_place_updates():
    w = torch.randn(3).requires_grad_()
    (w.sum() * 2).backward()
    expected = w.detach() - 0.1 * w.grad
    assert submission.sgd_step([w], 0.1) is None
    torch.testing.assert_close(w.detach(), expected)
    assert w.requires_grad and w.is_leaf

def test_a_generator_of_parameters_reaches_the_student():
    net = Net()
    net(torch.randn(4, 3)).pow(2).sum().backward()
    before = net.fc1.weight.detach().clone()
    submission.sgd_step(net.parameters(), 0.5)
    assert not torch.equal(before, net.fc1.weight.detach())

def test_own_training():
    x = torch.randn(32, 3); y = x.sum(1, keepdim=True)
    net = submission.train_own(x, y)
    assert F.mse_loss(net(x), y).item() < 0.5
    assert len(net) == 3
"""


def test_autograd_optimizers_and_modules_work_across_the_boundary(tmp_path):
    run = run_local(tmp_path, submission=DL_SUBMISSION, tests={"test_dl.py": DL_TESTS}, deadline_s=120)
    failed = {name: t["message"] for name, t in run.tests.items() if t["outcome"] != "passed"}
    assert failed == {}, run.stderr[-2000:]
    assert len(run.tests) == 8


# --- the tests' own functions and objects passed to the student's code: they run on the tests side --

CALLBACK_SUBMISSION = """
import numpy as np
def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for i in range(x.size):
        old = x.flat[i]
        x.flat[i] = old + h; plus = f(x)
        x.flat[i] = old - h; minus = f(x)
        x.flat[i] = old
        grad.flat[i] = (plus - minus) / (2 * h)
    return grad
def run_episode(env, policy):
    obs = env.reset(); total = 0.0; done = False
    while not done:
        obs, reward, done = env.step(policy(obs))
        total += reward
    return total
def apply_all(fns, x):
    return [f(x) for f in fns]
def count(items):
    return sum(1 for _ in items)
def call_raises(f):
    try:
        f()
    except ValueError as e:
        return "caught " + str(e)

def snoop(f):
    # What a hostile submission may try: the test's function's globals hold the hidden test's module.
    import gc
    server = next(o for o in gc.get_objects() if type(o).__name__ == "Server" and hasattr(o, "callback"))
    ident = object.__getattribute__(f, "_id")
    found = []
    for name in ("__globals__", "__code__", "_private", "__class__"):
        try:
            found.append(repr(server.callback(ident, "getattr", name)))
        except AttributeError as exc:
            found.append("refused: " + str(exc))
    return found
"""

CALLBACK_TESTS = """
import numpy as np
import pytest
import submission

class Env:
    def __init__(self): self.t = 0
    def reset(self): self.t = 0; return np.zeros(2)
    def step(self, action):
        self.t += 1
        return np.ones(2) * self.t, float(action), self.t >= 5

def loss(w):
    return float((w ** 2).sum())

def test_lambda_and_function():
    x = np.array([1.0, -2.0, 3.0])
    g = submission.numerical_gradient(lambda w: loss(w), x.copy())
    np.testing.assert_allclose(g, 2 * x, rtol=1e-4)
    np.testing.assert_allclose(submission.numerical_gradient(loss, x.copy()), 2 * x, rtol=1e-4)

def test_env_object():
    env = Env()
    assert submission.run_episode(env, lambda obs: 1) == 5.0
    assert env.t == 5

def test_list_of_callbacks_and_generator():
    assert submission.apply_all([lambda v: v + 1, np.sqrt], 4.0) == [5.0, 2.0]
    def gen():
        yield from range(3)
    assert submission.count(gen()) == 3

def test_exception_from_callback():
    def boom():
        raise ValueError("no")
    assert submission.call_raises(boom) == "caught no"

SECRET = "SECRET-IN-THE-TESTS"

def test_the_tests_functions_keep_their_insides():
    found = submission.snoop(loss)
    assert all(item.startswith("refused") for item in found), found
    assert not any(SECRET in item for item in found)
"""


def test_the_tests_functions_and_objects_passed_to_student_code_call_back(tmp_path):
    run = run_local(tmp_path, submission=CALLBACK_SUBMISSION, tests={"test_cb.py": CALLBACK_TESTS})
    failed = {name: t["message"] for name, t in run.tests.items() if t["outcome"] != "passed"}
    assert failed == {}, run.stderr[-2000:]
    assert len(run.tests) == 5


# --- one stream of random numbers: a test's seed reaches the student's code, and back ---------------

SEED_SUBMISSION = """
import torch, numpy as np, random
def make():
    return torch.nn.Linear(3, 2)
def draw():
    return torch.rand(3), np.random.rand(2), random.random()
"""

SEED_TESTS = """
import torch, numpy as np, random
import submission

def test_seed_reaches_the_student():
    torch.manual_seed(7)
    net = submission.make()
    torch.manual_seed(7)
    ref = torch.nn.Linear(3, 2)
    torch.testing.assert_close(net.weight.detach(), ref.weight.detach())

def test_one_stream():
    torch.manual_seed(1); np.random.seed(1); random.seed(1)
    a = submission.draw()
    after = torch.rand(1), np.random.rand(1), random.random()
    torch.manual_seed(1); np.random.seed(1); random.seed(1)
    b = (torch.rand(3), np.random.rand(2), random.random())
    after_ref = torch.rand(1), np.random.rand(1), random.random()
    torch.testing.assert_close(a[0], b[0]); np.testing.assert_allclose(a[1], b[1]); assert a[2] == b[2]
    torch.testing.assert_close(after[0], after_ref[0]); np.testing.assert_allclose(after[1], after_ref[1])
    assert after[2] == after_ref[2]
"""


def test_the_tests_seed_and_the_students_draws_are_one_stream(tmp_path):
    run = run_local(tmp_path, submission=SEED_SUBMISSION, tests={"test_seed.py": SEED_TESTS})
    failed = {name: t["message"] for name, t in run.tests.items() if t["outcome"] != "passed"}
    assert failed == {}, run.stderr[-2000:]
    assert len(run.tests) == 2


def test_a_random_state_no_generator_takes_is_tampering_not_our_error(tmp_path):
    # S's replies carry its generators' states; one that torch refuses (its own RuntimeError) must be a
    # malformed reply, the student's, even while the tests are being collected.
    submission = """
import sys, torch
Server = sys.modules["_grader_harness.student_side"].Server
_send = Server.send
def send(self, body):
    if body.get("kind") == "value":
        self.rng.last.clear()
        import torch as t
        t.manual_seed(0)
        real = t.get_rng_state
        t.get_rng_state = lambda: torch.zeros(3, dtype=torch.uint8)
        try:
            _send(self, body)
        finally:
            t.get_rng_state = real
        return
    _send(self, body)
Server.send = send
def add(a, b):
    return a + b
"""
    tests = {
        "test_a.py": """
from submission import add
def test_add():
    assert add(1, 2) == 3
def test_add_again():
    assert add(2, 2) == 4
"""
    }
    run = run_local(tmp_path, submission=submission, tests=tests)
    assert run.events[-1]["error"] is None
    assert run.events[-1]["flags"] == ["tampering: malformed reply from the submission process"]
    assert {t["outcome"] for t in run.tests.values()} == {"error"}


def test_star_imports_take_the_students_public_names_or_its_all(tmp_path):
    submission = {
        "submission.py": "import numpy as np\ndef relu(x):\n    return np.maximum(x, 0)\n_hidden = 1\n",
        "model.py": "__all__ = ['Net']\nclass Net:\n    def f(self):\n        return 1\n"
        "class Other:\n    pass\n",
    }
    tests = {
        "test_star.py": """
from submission import *
from model import *

def test_star():
    assert relu(-1.0) == 0.0
    assert np.zeros(1).shape == (1,)

def test_all_respected():
    assert Net().f() == 1
    assert "Other" not in globals()
    assert "_hidden" not in globals()
"""
    }
    run = run_local(tmp_path, submission=submission, tests=tests)
    assert {n: t["outcome"] for n, t in run.tests.items()} == {
        "test_star": "passed",
        "test_all_respected": "passed",
    }


# --- a pooled sandbox's wait (sandbox/harness/warm.py) ---


def _warm():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_warm_under_test", HARNESS / "warm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frame(files: dict[str, bytes]) -> bytes:
    from grader.containers import frame
    from grader.sandbox_files import build_tar

    return frame(build_tar(files, uid=os.getuid()))


def test_a_pooled_side_unpacks_the_submissions_frame_only_when_it_comes(tmp_path, monkeypatch):
    import io

    warm = _warm()
    monkeypatch.setenv("SANDBOX_WORKDIR", str(tmp_path / "work"))
    monkeypatch.chdir(tmp_path)
    stream = io.BytesIO(_frame({"work/submission.py": b"x = 1\n", "student.json": b"{}"}))
    warm.receive(student=True, stream=stream, root=str(tmp_path))
    assert (tmp_path / "work" / "submission.py").read_bytes() == b"x = 1\n"
    assert os.getcwd() == str(tmp_path / "work")


def test_a_student_frame_that_does_not_unpack_is_the_students_error(tmp_path, monkeypatch):
    import io

    warm = _warm()
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("SANDBOX_WORKDIR", str(tmp_path / "work"))
    monkeypatch.delenv("SANDBOX_UNPACK_ERROR", raising=False)
    monkeypatch.chdir(tmp_path)
    garbage = b"not a tar" * 100
    warm.receive(
        student=True, stream=io.BytesIO(len(garbage).to_bytes(8, "big") + garbage), root=str(tmp_path)
    )
    assert os.environ["SANDBOX_UNPACK_ERROR"].startswith("ReadError")
    with pytest.raises(Exception, match="truncated|invalid|empty|bad"):
        warm.receive(
            student=False, stream=io.BytesIO(len(garbage).to_bytes(8, "big") + garbage), root=str(tmp_path)
        )


def test_a_pooled_side_whose_stdin_closes_unused_exits_quietly(tmp_path):
    # The pool retired it (or its worker died): end of file before any frame.
    code = f"import sys; sys.path.insert(0, {str(HARNESS)!r}); import warm; warm.receive(student=True)"
    code += "; print('ran on')"
    done = subprocess.run([sys.executable, "-c", code], input=b"", capture_output=True, timeout=30)
    assert done.returncode == 0 and b"ran on" not in done.stdout

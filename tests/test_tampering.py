"""Scores that student code cannot forge, and hidden tests it cannot read: attacks graded in real containers.

Every attack ships working code for some of the assignment's functions; it must score exactly what
that working code earns, leak nothing of the hidden tests into what a student sees, and, where the
harness can tell, be flagged to the instructor. The assignment is tests/fixtures/tampering/hw-tamper,
whose points are powers of two (add 1, double 2, mean 4, the public test of add 8), so a score names
the tests that passed. The attacks are in tests/fixtures/tampering/attacks/, or inline below when
they are one line.
"""

import json
import resource
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader import config, engine, feedback, images, pool, sandbox
from grader.assignments import Assignment, load_assignment
from grader.config import Settings
from grader.results import GradeResult
from grader.uploads import Unpacked

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leftover_containers")]

FIXTURES = Path(__file__).parent / "fixtures" / "tampering"
ATTACKS = FIXTURES / "attacks"
MARKER = "SECRET-HIDDEN-7c41e0"  # planted in every kind of text the hidden tests hold
HONEST = (FIXTURES / "hw-tamper" / "solution" / "submission.py").read_text()
POINTS = {"add": 1, "double": 2, "mean": 4, "public": 8}
NAMES = {
    "add": "tests/test_ops.py::test_add",
    "double": "tests/test_ops.py::test_double",
    "mean": "tests/test_ops.py::test_mean",
    "public": "public_tests/test_public.py::test_add_public",
}
TAMPERING = "tampering: malformed reply from the submission process"
ENDED_IN_DOUBLE = f"tampering: the submission's process ended during {NAMES['double']}"
CRASHED = "your code's process ended during this test (it called os._exit, was killed, or ran out of memory)"


def points(*tests: str) -> float:
    return float(sum(POINTS[test] for test in tests))


@pytest.fixture(scope="module")
def assignment() -> Assignment:
    return load_assignment(FIXTURES / "hw-tamper")


@pytest.fixture(scope="module", params=["fresh", "pooled"])
def sandboxes(request, docker_client):
    """Every attack twice: in fresh sandboxes, and in pooled ones (grader.pool), whose interpreters had
    imported torch and numpy before the attack came and wait on stdin for it."""
    if request.param == "fresh":
        yield None
        return
    warm = pool.start(Settings(output_limit_bytes=64 * 1024, pool_size=2))
    yield warm
    pool.stop()
    engine.wait_removed()


@pytest.fixture
def settings(tmp_path, sandboxes) -> Settings:
    return Settings(data_dir=tmp_path / "var", output_limit_bytes=64 * 1024)


def grade(assignment: Assignment, settings: Settings, source: str) -> GradeResult:
    return grade_files(assignment, settings, {"submission.py": source.encode()})


def pair_ready(assignment: Assignment, settings: Settings) -> str:
    """In the pooled run: wait until the pool has a pair for the assignment; its key."""
    warm = pool.active()
    image = images.for_assignment(assignment, settings=settings)
    recipe = pool.Recipe.of(assignment, image=image, settings=settings, harness_dir=config.HARNESS_DIR)
    warm.want(recipe)
    give_up = time.monotonic() + 120
    while not any(pair.key == recipe.key for pair in list(warm.idle)) and time.monotonic() < give_up:
        time.sleep(0.1)
    return recipe.key


def grade_files(assignment: Assignment, settings: Settings, files: dict[str, bytes]) -> GradeResult:
    warm = pool.active()
    if warm is not None:  # the pooled run: a pair must be ready, and this grading must take it
        key = pair_ready(assignment, settings)
        taken = warm.taken[key]
    result = sandbox.grade(assignment, Unpacked(kind="zip", files=files), settings=settings)
    if warm is not None:
        assert warm.taken[key] == taken + 1, "graded in a fresh sandbox, not a pooled one"
    assert_nothing_leaks(result)
    return result


def student_view(result: GradeResult) -> str:
    """Exactly what the student receives, under the default feedback.hidden = "score"."""
    tests, hidden, error = feedback.for_student(result, hidden="score")
    return json.dumps(
        {
            "tests": [test.model_dump() for test in tests],
            "hidden": hidden.model_dump() if hidden else None,
            "error": error.model_dump() if error else None,
            "output": result.output,
        }
    )


def assert_nothing_leaks(result: GradeResult) -> None:
    view = student_view(result)
    assert MARKER not in view, view
    assert MARKER not in result.output  # nor in anything the student's process produced
    # Of the tests themselves, only the public ones (with their messages) are shown.
    shown, _, _ = feedback.for_student(result, hidden="score")
    assert [test.name for test in shown] == [
        test.name for test in result.tests if test.visibility == "public"
    ]


def outcomes(result: GradeResult) -> dict[str, tuple[str, str]]:
    short = {name: key for key, name in NAMES.items()}
    return {short[test.name]: (test.outcome, test.message) for test in result.tests}


def test_an_honest_submission_gets_full_marks(assignment, settings):
    result = grade(assignment, settings, HONEST)
    assert result.status == "graded" and result.error is None, result
    assert (result.score, result.max_score) == (15, 15)
    assert result.flags == []
    assert [test.name for test in result.tests] == list(NAMES.values())


@dataclass
class Attack:
    source: str
    score: float
    flags: list[str]
    reasons: dict[str, str]  # test -> a part of its message that says why it failed
    output: str = ""  # a part of the student's output, to show the attack ran


def attack(name: str, passes: tuple[str, ...], flags=(), output: str = "", **reasons: str):
    source = (ATTACKS / f"{name}.py").read_text()
    return pytest.param(Attack(source, points(*passes), list(flags), reasons, output), id=name)


FILE_ATTACKS = [
    attack("patches_test_runner", ("add", "public"), double="torch.allclose", mean="Not equal to tolerance"),
    attack(
        "patches_the_libraries", ("add", "public"), double="torch.allclose", mean="Not equal to tolerance"
    ),
    attack("fakes_results", ("add", "public"), output="5 passed in 0.12s", double="torch.allclose"),
    attack(
        "lies_with_objects",
        ("add", "public"),
        double="must be Tensor, not Handle",
        mean="your function returned a Liar object where a value was expected",
    ),
    attack("lies_with_subclasses", ("mean",), add="abs((42 - 5))", double="torch.allclose"),
    attack("mutates_its_inputs", ("add", "public"), double="torch.allclose", mean="Not equal to tolerance"),
    attack(
        "snoops_for_hidden_tests",
        ("add", "double", "mean", "public"),
        output="SNOOPED at import: []\nSNOOPED in a call: []\nSNOOPED on disk in a call: []\n",
    ),
    attack("sends_malformed_replies", ("add",), [TAMPERING], double=TAMPERING, mean=TAMPERING),
    attack("claims_a_huge_frame", ("add",), [TAMPERING], double="a reply header larger than the limit"),
    attack("sends_a_json_bomb", ("add",), [TAMPERING], double="a reply header larger than the limit"),
    attack(
        "returns_too_much",
        ("add", "public"),
        double="your code returned 96 MiB of data to the tests; the limit is 64 MiB",
        mean="your code returned 6 MiB of Python lists, dicts or numbers to the tests; the limit is 4 MiB",
    ),
    attack("sabotages_test_collection", ("public",), add="RuntimeError", double="RuntimeError"),
    # Three attacks that once made grading our (infrastructure) error:
    attack(
        "garbles_the_handshake",
        (),
        [TAMPERING],
        add="tampering: malformed reply from the submission process: no ready message",
    ),
    attack("claims_installed_modules", ("add", "double", "mean", "public")),
    attack(
        "crashes_during_collection",
        (),
        ["tampering: the submission's process ended while the tests were being collected"],
        add="your code's process ended",
    ),
]


def at_import(snippet: str, passes: tuple[str, ...], flags=(), reason: str = "", *, id: str):
    source = f"{HONEST}\n{snippet}\n"
    reasons = dict.fromkeys(NAMES, reason) if reason else {}  # a failed import fails every test
    return pytest.param(Attack(source, points(*passes), list(flags), reasons), id=f"import-{id}")


def in_a_call(snippet: str, passes: tuple[str, ...], flags=(), *, id: str, **reasons: str):
    body = "\n".join(f"    {line}" for line in snippet.splitlines())
    source = HONEST.replace("def double(t):\n", f"def double(t):\n    import os, signal, sys\n{body}\n")
    return pytest.param(Attack(source, points(*passes), list(flags), reasons), id=f"call-{id}")


ALL = ("add", "double", "mean", "public")
BUT_DOUBLE = ("add", "mean", "public")
# The student's process is pid 1 of its container, which ignores signals it has no handler for.
CLOSE_SOCKET = "import gc, socket\nfor s in gc.get_objects():\n    if isinstance(s, socket.socket): s.close()"
EXITS = [
    at_import(
        "import sys; sys.exit(0)",
        (),
        ["tampering: the submission called sys.exit() while being imported"],
        "your code called sys.exit() while being imported",
        id="sys.exit",
    ),
    at_import(
        "raise KeyboardInterrupt",
        (),
        ["tampering: the submission raised KeyboardInterrupt while being imported"],
        "your code raised KeyboardInterrupt while being imported",
        id="KeyboardInterrupt",
    ),
    at_import(
        "class Boom(BaseException): pass\nraise Boom('no')",
        (),
        [],
        "Boom in submission.py, line 13: no",
        id="BaseException",
    ),
    at_import(
        "import os; os._exit(0)",
        (),
        ["tampering: the submission's process ended while being imported"],
        "your code's process ended while being imported",
        id="os._exit",
    ),
    at_import("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", ALL, id="kill-self"),
    at_import("import os, signal; os.kill(os.getppid(), signal.SIGKILL)", ALL, id="kill-parent"),
    at_import(
        CLOSE_SOCKET,
        (),
        ["tampering: the submission's process ended while being imported"],
        "your code's process ended while being imported",
        id="close-socket",
    ),
    at_import("import os; os.close(1); os.close(2)", ALL, id="close-stdout"),
    at_import(
        "import os; fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(fd, 2)",
        ALL,
        id="dup2-devnull",
    ),
    at_import("import sys; sys.stdout = sys.stderr = None", ALL, id="stdout-None"),
    in_a_call(
        "sys.exit(0)",
        BUT_DOUBLE,
        [f"tampering: the submission called sys.exit() during {NAMES['double']}"],
        double="your code called sys.exit() during this call",
        id="sys.exit",
    ),
    in_a_call(
        "raise KeyboardInterrupt",
        BUT_DOUBLE,
        [f"tampering: the submission raised KeyboardInterrupt during {NAMES['double']}"],
        double="your code raised KeyboardInterrupt during this call",
        id="KeyboardInterrupt",
    ),
    in_a_call(
        "class Boom(BaseException): pass\nraise Boom('no')",
        BUT_DOUBLE,
        double="Boom in submission.py",
        id="BaseException",
    ),
    # A crash costs only its own test: the next test gets a fresh student process (issue 11).
    in_a_call("os._exit(0)", BUT_DOUBLE, [ENDED_IN_DOUBLE], double=CRASHED, id="os._exit"),
    in_a_call("os.kill(os.getpid(), signal.SIGKILL)", ALL, id="kill-self"),
    in_a_call("os.kill(os.getppid(), signal.SIGKILL)", ALL, id="kill-parent"),
    in_a_call(CLOSE_SOCKET, BUT_DOUBLE, [ENDED_IN_DOUBLE], double=CRASHED, id="close-socket"),
    in_a_call("os.close(1); os.close(2)", ALL, id="close-stdout"),
    in_a_call(
        "fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(fd, 2)", ALL, id="dup2-devnull"
    ),
    in_a_call("sys.stdout = sys.stderr = None", ALL, id="stdout-None"),
]


@pytest.mark.parametrize("case", FILE_ATTACKS + EXITS)
def test_an_attack_scores_only_its_working_code(assignment, settings, case: Attack):
    result = grade(assignment, settings, case.source)
    seen = outcomes(result)
    assert result.status == "graded", result
    assert result.score == case.score, seen
    assert result.max_score == 15
    assert result.flags == case.flags
    for test, reason in case.reasons.items():
        assert seen[test][0] != "passed" and reason in seen[test][1], (test, seen[test])
    assert case.output in result.output


def test_files_that_cannot_be_unpacked_are_the_students_error_not_ours(assignment, settings):
    # The upload check refuses such a zip (tests/test_uploads.py); were one to get through, S still
    # starts, and says why the student's code is not there.
    files = {"submission.py": HONEST.encode(), "helper": b"a file", "helper/x.py": b"a file in a folder"}
    result = grade_files(assignment, settings, files)
    assert result.status == "graded" and result.score == 0, result
    assert result.error is not None and result.error.kind == "student", result.error
    assert "your upload's files could not be unpacked" in result.error.message


# --- denial of service: a hostile submission graded beside an honest one --------------------------

HOSTILE = {
    "fork_bomb": ("import os\nwhile True:\n    os.fork()\n", "pids"),
    "memory_bomb": ("import numpy as np\nx = [np.ones(2**26) for _ in range(64)]\n", "memory"),
    "output_flood": ("import sys\nfor _ in range(800):\n    sys.stdout.write('y' * 65536)\n", "output"),
    "infinite_loop": ("while True:\n    pass\n", "timeout"),
    "giant_return": (
        "import numpy as np\n_big = np.ones(40 * 2**20)\ndef mean(x):\n    return _big\n",
        None,  # the reply is refused at the size limit: test_mean fails, nothing else happens
    ),
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture
def short_assignment(tmp_path) -> Assignment:
    """The same assignment with a 10 s clock, so that the hostile ones that run out of time end soon."""
    folder = tmp_path / "course" / "hw-tamper"
    shutil.copytree(FIXTURES / "hw-tamper", folder)
    shutil.copy(FIXTURES / "course.toml", folder.parent / "course.toml")
    config = folder / "assignment.toml"
    config.write_text(config.read_text().replace("timeout_s = 30", "timeout_s = 10"))
    return load_assignment(folder)


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_submission_does_not_harm_an_honest_one_or_the_worker(
    assignment, short_assignment, settings, docker_client, kind
):
    code, error = HOSTILE[kind]
    # Working code before the attack, so the hostile one still earns what it can.
    hostile_source = HONEST + "\n" + code
    results: dict[str, GradeResult] = {}
    failures: list[BaseException] = []

    def run(name: str, chosen: Assignment, source: str) -> None:
        try:
            results[name] = grade(chosen, settings, source)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            failures.append(exc)

    if pool.active() is not None:  # both pairs first, so that both gradings run at once
        pair_ready(short_assignment, settings)
        pair_ready(assignment, settings)
    before = peak_rss_mib()
    threads = [
        threading.Thread(target=run, args=("hostile", short_assignment, hostile_source)),
        threading.Thread(target=run, args=("honest", assignment, HONEST)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads) and not failures, failures
    honest, hostile = results["honest"], results["hostile"]
    assert (honest.score, honest.error, honest.flags) == (15, None, []), honest
    assert hostile.status in ("graded", "error") and hostile.flags == [], hostile
    assert (hostile.error.code if hostile.error else None) == error, hostile.error
    if kind == "giant_return":
        assert outcomes(hostile)["mean"][1].endswith(
            "your code returned 320 MiB of data to the tests; the limit is 64 MiB"
        )
        assert hostile.score == points("add", "double", "public")
    # The worker (this process) only ever holds capped output: its peak memory barely moves.
    assert peak_rss_mib() - before < 64
    assert docker_client.ping()

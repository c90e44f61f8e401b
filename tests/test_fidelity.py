"""Fidelity (issue 11): in the sandbox a submission scores exactly what it scores when the same pytest
tests import the same code in their own process, as Otter and Gradescope run them.

Every case is graded both ways, by grader.sandbox.grade() and by the in-process reference
(tests/inprocess.py); per-test pass/fail and the total must be equal, the total exactly. The cases:
the homeworks' solutions, starters and recorded wrong solutions; tests/fixtures/fidelity/, a course
whose tests use PyTorch the way instructors write them (autograd through the student's code, the
student's nn.Module trained by the test's optimizer), notebooks with cells that raise, zips with
packages, crashes and hangs in one test, and fractional points.

    .venv/bin/python -m pytest tests/test_fidelity.py -q -k inprocess   # the reference alone
    .venv/bin/python -m pytest tests/test_fidelity.py -q -k sandbox      # both ways, compared

The `inprocess` tests check the reference against the results recorded here (and in the homeworks'
expected.toml), so that a wrong reference cannot make the comparison pass. The reference runs in the
sandbox image when Docker has it, else with this Python (GRADER_REFERENCE, see tests/inprocess.py);
cases whose tests need torch are skipped where that Python has none.
"""

import io
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from grader import sandbox
from grader.assignments import load_assignment, submission_source
from grader.config import Settings
from grader.uploads import Unpacked, imported_by_tests, notebook_to_module, unpack, unzip
from tests.inprocess import DockerRunner, Reference, can_import, default_runner, grade_in_process

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
HOMEWORKS = ROOT / "assignments"
RECORDED = Path(__file__).parent / "fixtures" / "submissions"
COURSE = Path(__file__).parent / "fixtures" / "fidelity"
WRONG = COURSE / "submissions"
LIMITS = {"max_bytes": 100 * 2**20, "max_files": 2000}


@dataclass(frozen=True)
class Case:
    id: str
    assignment: Path
    filename: str  # the upload: a notebook or a zip
    data: bytes
    score: float  # recorded in-process
    fails: tuple[str, ...] | None  # tests (or test files that fail to import) that fail; None: not recorded
    needs: str = ""  # a library the tests import that the reference's Python must have

    def __repr__(self) -> str:
        return self.id


def make_zip(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def single_file(source: str) -> bytes:
    return make_zip({"submission.py": source})


def folder_zip(folder: Path, **extra: bytes | str) -> bytes:
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
    return make_zip({name: data for name, data in files.items() if "__pycache__" not in name} | extra)


def notebook(*cells: str) -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Homework")] + [nbformat.v4.new_code_cell(c) for c in cells]
    return nbformat.writes(nb).encode()


# ---- the homeworks: solution, starter and the recorded wrong solutions -------------------------------


def homework_cases() -> list[Case]:
    cases = []
    for slug, needs in [
        ("hw1-mlp", ""),
        ("hw2-cnn", "torch"),
        ("hw3-rnn", "torch"),
        ("hw4-attention", "torch"),
        ("hw5-lm", "torch"),
        ("hw6-vit-clip", "torch"),
        ("hw7-vae-diffusion", "torch"),
        ("hw8-ssl", "torch"),
        ("hw9-rl", "torch"),
    ]:
        folder = HOMEWORKS / slug
        recorded = tomllib.loads((RECORDED / slug / "expected.toml").read_text("utf-8"))
        for which in ("solution", "starter"):
            source = submission_source(folder / which)
            data = source.read_bytes() if source.is_file() else folder_zip(source)
            filename = source.name if source.is_file() else "submission.zip"
            fails = () if which == "solution" else None
            cases.append(Case(f"{slug}/{which}", folder, filename, data, recorded[which], fails, needs))
        for name, case in recorded["cases"].items():
            data = make_zip({"submission.py": (RECORDED / slug / f"{name}.py").read_bytes()})
            fails = tuple(case["fails"])
            cases.append(Case(f"{slug}/{name}", folder, "submission.zip", data, case["score"], fails, needs))
    return cases


# ---- PyTorch idioms ------------------------------------------------------------------------------

DL = COURSE / "dl-idioms"
DL_NOT_DIFFERENTIABLE = (
    "tests/test_net.py::test_backward_reaches_every_parameter",
    "tests/test_net.py::test_no_grad_gives_outputs_without_a_graph",
    "tests/test_net.py::test_train_with_adam_in_the_test",
    "tests/test_optim.py::test_sgd_step_trains_the_students_net",
    "tests/test_optim.py::test_train_regressor_returns_a_trained_module",
)
DL_CASES = {
    "solution": (24, ()),
    "detached_forward": (15, DL_NOT_DIFFERENTIABLE),
    "wrong_swish_gradient": (22, ("tests/test_functions.py::test_swish_gradient_reaches_the_input",)),
    "sgd_not_in_place": (
        21,
        (
            "tests/test_optim.py::test_sgd_step_updates_the_tensors_in_place",
            "tests/test_optim.py::test_sgd_step_trains_the_students_net",
        ),
    ),
    "dropout_always_on": (
        21,
        (
            "tests/test_modes.py::test_eval_is_deterministic_and_train_is_not",
            "tests/test_modes.py::test_eval_uses_the_running_statistics",
        ),
    ),
}


def dl_cases() -> list[Case]:
    cases = []
    for name, (score, fails) in DL_CASES.items():
        path = DL / "solution" / "submission.py" if name == "solution" else WRONG / "dl-idioms" / f"{name}.py"
        data = single_file(path.read_text())
        cases.append(Case(f"dl-idioms/{name}", DL, "submission.zip", data, score, fails, "torch"))
    return cases


# ---- notebooks: cells that raise are skipped, the rest run ---------------------------------------

CELLS = COURSE / "notebook-cells"
SQUARES = '''def squares(n):
    """[0, 1, 4, ..., (n - 1) ** 2]; ValueError unless n > 0."""
    if n <= 0:
        raise ValueError("n must be positive")
    return [i * i for i in range(n)]'''
NORMALIZE = """def normalize(xs):
    total = sum(xs)
    return [x / total for x in xs]"""
RUNNING_MEAN = """def running_mean(xs):
    means, total = [], 0.0
    for i, x in enumerate(xs, start=1):
        total += x
        means.append(total / i)
    return means"""
RUNNING_MEAN_TODO = '''def running_mean(xs):
    """TODO: the mean of xs[: i + 1] for each i."""
    raise NotImplementedError()'''
RUNNING_MEAN_TESTS = (
    "tests/test_functions.py::test_running_mean",
    "tests/test_functions.py::test_running_mean_of_one",
)
NOTEBOOKS = {
    "solution": ((SQUARES, NORMALIZE, RUNNING_MEAN), ()),
    "scratch_cell_raises": ((SQUARES, "squares(0)  # does it raise?", NORMALIZE, RUNNING_MEAN), ()),
    "otter_check_lines": (
        (
            "import otter\ngrader = otter.Notebook()",
            SQUARES,
            'grader.check("q1")',
            NORMALIZE,
            'grader.check("q2")',
            RUNNING_MEAN,
            'grader.check("q3")',
        ),
        (),
    ),
    "failing_self_check": (
        (SQUARES, NORMALIZE, "assert normalize([1, 1]) == [0.25, 0.75], 'my own check'", RUNNING_MEAN),
        (),
    ),
    "calls_an_unfinished_function": (
        (SQUARES, NORMALIZE, RUNNING_MEAN_TODO, "print(running_mean([1, 2, 3]))"),
        RUNNING_MEAN_TESTS,
    ),
    "raises_not_implemented_in_an_unfinished_cell": (
        (SQUARES, NORMALIZE, RUNNING_MEAN, "# Bonus: not attempted\nraise NotImplementedError()"),
        (),
    ),
    "plots_with_matplotlib": (
        (
            "%matplotlib inline\nimport matplotlib",
            SQUARES,
            "import matplotlib.pyplot as plt\n\nplt.plot(squares(5))\nplt.title('squares')",
            NORMALIZE,
            RUNNING_MEAN,
        ),
        (),
    ),
    "syntax_error_in_a_scratch_cell": ((SQUARES, "def broken(:\n    pass", NORMALIZE, RUNNING_MEAN), ()),
    # A cell that does not compile runs none of its lines: running_mean is never defined.
    "syntax_error_loses_its_cell": (
        (SQUARES, NORMALIZE, RUNNING_MEAN + "\n\nprint(running_mean([1, 2]))))"),
        RUNNING_MEAN_TESTS,
    ),
}


def notebook_cases() -> list[Case]:
    cases = []
    for name, (cells, fails) in NOTEBOOKS.items():
        score = 8 - 3 * bool(fails)
        cases.append(Case(f"notebook-cells/{name}", CELLS, f"{name}.ipynb", notebook(*cells), score, fails))
    # A zip's submission.py is imported as a module: a line that raises fails the import, so every test.
    module = "\n\n\n".join([SQUARES, NORMALIZE, RUNNING_MEAN, "squares(0)  # does it raise?\n"])
    data = single_file(module)
    everything = ("public_tests/test_public.py", "tests/test_functions.py")
    cases.append(
        Case("notebook-cells/zip_keeps_import_semantics", CELLS, "submission.zip", data, 0, everything)
    )
    return cases


# ---- zips with packages; crashes and hangs; fractional points -----------------------------------


def package_cases() -> list[Case]:
    packages, namespace = COURSE / "packages", COURSE / "namespace-package"
    nested = folder_zip(packages / "solution")
    wrong_mod = (
        (packages / "solution" / "pkg" / "sub" / "mod.py").read_text().replace("twice(x) + 1", "twice(x)")
    )
    wrong = folder_zip(packages / "solution", **{"pkg/sub/mod.py": wrong_mod})
    wrong_fails = tuple(
        f"tests/test_pkg.py::{name}"
        for name in (
            "test_from_import",
            "test_attribute_of_the_imported_module",
            "test_the_package_reexports",
        )
    )
    course = {
        p.relative_to(namespace / "solution").as_posix(): p.read_bytes()
        for p in sorted((namespace / "solution" / "mycourse").rglob("*.py"))
    }
    # A README beside the package: a zip of one folder alone is unwrapped (grader.uploads.unzip).
    no_submission = make_zip(course | {"README.md": "My classifiers.\n"})
    return [
        Case("packages/nested_package", packages, "submission.zip", nested, 4, ()),
        Case("packages/nested_package_wrong_f", packages, "submission.zip", wrong, 1, wrong_fails),
        Case("namespace-package/no_submission_py", namespace, "submission.zip", no_submission, 3, ()),
    ]


CRASHES = COURSE / "crashes"


def crash_cases() -> list[Case]:
    honest = (CRASHES / "solution" / "submission.py").read_text()
    second = "def second():\n    return 2\n"
    crashes = single_file(honest.replace(second, "def second():\n    import os\n\n    os._exit(1)\n"))
    hangs = single_file(honest.replace(second, "def second():\n    while True:\n        pass\n"))
    fails = ("tests/test_calls.py::test_second",)
    return [
        Case("crashes/solution", CRASHES, "submission.zip", single_file(honest), 8, ()),
        Case("crashes/crashes_in_one_test", CRASHES, "submission.zip", crashes, 7, fails),
        Case("crashes/hangs_in_one_test", CRASHES, "submission.zip", hangs, 7, fails),
        # No marker on this test: the assignment's [sandbox] test_timeout_s applies.
        Case("hangs-default/hangs_in_one_test", COURSE / "hangs-default", "submission.zip", hangs, 7, fails),
    ]


def fraction_cases() -> list[Case]:
    folder = COURSE / "fractions"
    honest = (folder / "solution" / "submission.py").read_text()
    no_tenths = honest.replace("def tenth(i):\n    return i", "def tenth(i):\n    return -1")
    no_thirds = honest.replace("def third(i):\n    return i", "def third(i):\n    return -1")
    thirds = tuple(f"tests/test_points.py::test_third_{x}" for x in "abc")
    tenths = tuple(f"tests/test_points.py::test_tenth[{i}]" for i in range(10))
    # Exactly: 3 x 2/3 is 2 and 10 x 0.1 is 1, where a plain float sum makes 0.9999999999999999.
    return [
        Case("fractions/solution", folder, "submission.zip", single_file(honest), 3.0, ()),
        Case("fractions/only_the_thirds", folder, "submission.zip", single_file(no_tenths), 2.0, tenths),
        Case("fractions/only_the_tenths", folder, "submission.zip", single_file(no_thirds), 1.0, thirds),
    ]


def callback_cases() -> list[Case]:
    folder = COURSE / "callbacks"
    honest = (folder / "solution" / "submission.py").read_text()
    # No first_valid: in one process tests/test_episodes.py does not import, so both its tests fail.
    unfinished = honest[: honest.index("def first_valid")]
    episodes = ("tests/test_episodes.py",)  # a test file that does not import
    return [
        Case("callbacks/solution", folder, "submission.zip", single_file(honest), 5.0, ()),
        Case("callbacks/a_name_missing", folder, "submission.zip", single_file(unfinished), 3.0, episodes),
    ]


CASES = (
    homework_cases()
    + dl_cases()
    + notebook_cases()
    + package_cases()
    + crash_cases()
    + fraction_cases()
    + callback_cases()
)
IDS = [case.id for case in CASES]


def case_named(case_id: str) -> Case:
    return next(case for case in CASES if case.id == case_id)


# ---- both ways ------------------------------------------------------------------------------------


def reference_upload(case: Case) -> Unpacked:
    """The submission as the reference lays it out: the notebook converted, the zip's files as they are."""
    if case.filename.endswith(".ipynb"):
        module, cells = notebook_to_module(case.data, case.filename)
        return Unpacked(kind="ipynb", files={"submission.py": module}, cells=cells)
    keep = imported_by_tests(load_assignment(case.assignment))  # as grader.uploads.unpack does
    return Unpacked(kind="zip", files=unzip(case.data, **LIMITS, keep=keep))


@pytest.fixture(scope="module")
def runner():
    runner = default_runner()
    yield runner
    if isinstance(runner, DockerRunner):
        runner.client.close()


@pytest.fixture(scope="module")
def references(runner):
    """The reference result of each case, computed once per module run."""
    done: dict[str, Reference] = {}

    def reference(case: Case) -> Reference:
        if case.needs and not can_import(runner, case.needs):
            pytest.skip(f"the reference's Python has no {case.needs} (GRADER_REFERENCE, tests/inprocess.py)")
        if case.id not in done:
            done[case.id] = grade_in_process(case.assignment, reference_upload(case), runner=runner)
        return done[case.id]

    return reference


def failing(reference: Reference) -> list[str]:
    return sorted(
        [name for name, test in reference.tests.items() if not test.passed] + list(reference.collect_errors)
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inprocess_reference_gets_the_recorded_results(case, references):
    reference = references(case)
    details = {
        name: (test.outcome, test.message[:300]) for name, test in reference.tests.items() if not test.passed
    }
    if case.fails is not None:
        assert failing(reference) == sorted(case.fails), (
            details,
            reference.collect_errors,
            reference.log[-3000:],
        )
    assert reference.score == case.score, details


def test_inprocess_a_crash_or_a_hang_restarts_the_process(references):
    """Only the test that crashed or hung ends its process; a new one runs the tests after it."""
    crashed = references(case_named("crashes/crashes_in_one_test"))
    hung = references(case_named("crashes/hangs_in_one_test"))
    second = "tests/test_calls.py::test_second"
    assert (crashed.processes, crashed.tests[second].outcome) == (2, "crashed")
    assert (hung.processes, hung.tests[second].outcome) == (2, "timeout")
    assert hung.tests[second].message == "timed out after 3 s"


def test_inprocess_notebook_cells_that_raise_are_skipped_and_recorded(references):
    failed = references(case_named("notebook-cells/otter_check_lines")).failed_cells
    assert [cell for cell, _ in failed] == [2, 4, 6, 8]  # markdown is cell 1
    assert failed[0][1] == "ModuleNotFoundError: No module named 'otter'"
    assert failed[1][1] == "NameError: name 'grader' is not defined"
    failed = references(case_named("notebook-cells/calls_an_unfinished_function")).failed_cells
    assert failed == [(5, "NotImplementedError: ")]


def test_inprocess_a_notebook_plots_with_matplotlib_where_it_is_installed(runner, references):
    plots = case_named("notebook-cells/plots_with_matplotlib")
    if not can_import(runner, "matplotlib"):
        pytest.skip("the reference's Python has no matplotlib")
    assert references(plots).failed_cells == []


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "var")


@pytest.mark.usefixtures("no_leftover_containers")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sandbox_scores_like_the_reference(case, references, settings):
    reference = references(case)
    assignment = load_assignment(case.assignment)
    upload = unpack(case.data, case.filename, assignment, **LIMITS)
    result = sandbox.grade(assignment, upload, settings=settings)
    assert result.status == "graded", result.error
    differences = []
    for test in result.tests:
        expected = reference.passed(test.name)
        if expected is None or expected != (test.outcome == "passed"):
            in_process = reference.tests.get(test.name)
            differences.append(
                f"{test.name}: sandbox {test.outcome} {test.message[:300]!r}; in process "
                + (f"{in_process.outcome} {in_process.message[:300]!r}" if in_process else repr(expected))
            )
    unseen = sorted(set(reference.tests) - {test.name for test in result.tests})
    differences += [f"{name}: in process only, {reference.tests[name].outcome}" for name in unseen]
    assert not differences, "\n".join(differences)
    assert result.score == reference.score  # exactly: points add up the same way
    if not reference.collect_errors:
        assert result.max_score == reference.max_score

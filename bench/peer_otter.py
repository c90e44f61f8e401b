"""7. A peer: `grader grade` against Otter-Grader 7.0.0's `otter run` on the same torch notebook and tests.

    .venv/bin/python bench/peer_otter.py [--quick] [--runs N] [--assignment assignments/hw4-attention]

Otter goes into its own venv outside the repository (~/.cache/grader-bench/otter-7.0.0, made once with
pip from PyPI: otter-grader[grading]==7.0.0 and torch==2.13.0, the sandbox image's torch). The
assignment's pytest tests are translated here, mechanically, into Otter's exception-based test files
(one file per pytest test, same name and points, the harness's `device` fixture and seed), zipped with
`otter generate`, and both tools grade the same notebook. Before any timing, the solution, the starter
and a half-solved notebook (the solution's first code cells, the starter's last) must get the same
score per test from both: otherwise this stops with the differences.

Timed as a user would run them, wall clock of each command, interleaved (A B C D A B C D ...):
  A `grader grade ASSIGNMENT NOTEBOOK --json`: two Docker containers, no network, limits.
  B `otter run -a autograder.zip NOTEBOOK`: no container; a Jupyter kernel on this machine runs the
    notebook and then the tests in the same process. It is started in a network namespace of its own
    with only loopback (`unshare -n`, when this user may), so it cannot reach a network either.
  C as B, with the notebook's Jupyter-only cells (`if __name__ == "__main__":`) tagged `otter_ignore`,
    as an Otter course would: Jupyter runs those cells, our grader imports the notebook as a module
    and does not.
  D as C, with OMP/MKL/OPENBLAS_NUM_THREADS=1 as the sandbox sets them for a 1-CPU assignment
    (otherwise torch starts a thread per core, which on a busy machine costs more than it gains).
A/B is the figure with the target; A/C and A/D compare the same work.
"""

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Report, median  # noqa: E402

OTTER_VERSION = "7.0.0"
REQUIREMENTS = [f"otter-grader[grading]=={OTTER_VERSION}", "torch==2.13.0"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grader-bench"
SEED = 0  # the harness seeds random, numpy and torch with the assignment's seed (0) before every test
FIXTURES = {"device": '"cpu"'}  # the harness's fixtures, as this machine (no GPU) would give them
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # as the sandbox sets them
TARGET = 0.5  # grader / otter wall clock, at most (issue 13; aim 0.35)


class Untranslatable(Exception):
    """A pytest test uses something the translation to Otter does not carry."""


# ---- Otter's venv ---------------------------------------------------------------------------------


def otter_venv(folder: Path) -> Path:
    """The venv with Otter and torch, made once and reused; its bin folder."""
    stamp = folder / "bench-requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if stamp.exists() and stamp.read_text() == wanted and (folder / "bin" / "otter").exists():
        return folder / "bin"
    print(f"  installing {' '.join(REQUIREMENTS)} into {folder} (once, about 2 minutes)", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    common.run([sys.executable, "-m", "venv", str(folder)])
    common.run([str(folder / "bin" / "pip"), "install", "--quiet", *REQUIREMENTS])
    stamp.write_text(wanted)
    return folder / "bin"


# ---- pytest -> Otter ------------------------------------------------------------------------------


def _points(func: ast.FunctionDef, where: str) -> float:
    """The test's points from @pytest.mark.points(n) (1 without it, as in the harness)."""
    value = 1.0
    for deco in func.decorator_list:
        text = ast.unparse(deco)
        if not text.startswith("pytest.mark.points("):
            raise Untranslatable(f"{where}: decorator @{text}")
        call = deco if isinstance(deco, ast.Call) else None
        if call is None or len(call.args) != 1 or call.keywords:
            raise Untranslatable(f"{where}: @{text} (one positional number expected)")
        value = float(ast.literal_eval(call.args[0]))
    return value


def _blank(lines: list[str], node: ast.stmt, replacement: str) -> None:
    """Replace a statement's lines by one line, keeping the line count (tracebacks point right)."""
    first, last = node.lineno - 1, node.end_lineno - 1
    indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
    lines[first] = indent + replacement + "\n"
    for i in range(first + 1, last + 1):
        lines[i] = "\n"


def translate(path: Path, rel: str, *, hidden: bool) -> list[tuple[str, float, str]]:
    """One pytest file as Otter exception-based test files: (test name, points, source) per test.

    Each Otter file holds the whole pytest module (so helpers and constants come along), with
    `import pytest` replaced by a stand-in that knows only mark.points and `import submission` /
    `from submission import ...` by names bound to the notebook's globals before each case, and then
    one Otter test case that seeds like the harness and calls the pytest function with its fixtures.
    """
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    bound: list[str] = []  # module names the notebook's globals are bound to before each case
    from_names: list[tuple[str, str]] = []  # (local name, notebook name)
    tests: list[tuple[str, float, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pytest":
            if node.attr != "mark":
                raise Untranslatable(f"{rel}:{node.lineno}: pytest.{node.attr}")
        if isinstance(node, ast.Attribute) and ast.unparse(node).startswith("pytest.mark."):
            if ast.unparse(node) not in ("pytest.mark", "pytest.mark.points"):
                raise Untranslatable(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            raise Untranslatable(f"{rel}:{node.lineno}: test class {node.name}")
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
            if names & {"pytest", "submission"}:
                if len(node.names) != 1 or node.names[0].asname:
                    raise Untranslatable(f"{rel}:{node.lineno}: {ast.unparse(node)}")
                if "pytest" in names:
                    _blank(
                        lines,
                        node,
                        "from types import SimpleNamespace as _NS; "
                        "pytest = _NS(mark=_NS(points=lambda n: lambda f: f))  # Otter: a stand-in",
                    )
                else:
                    bound.append("submission")
                    _blank(lines, node, "submission = None  # Otter: the notebook, bound before each case")
        elif isinstance(node, ast.ImportFrom) and node.module == "pytest":
            raise Untranslatable(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module == "submission":
            pairs = [(alias.asname or alias.name, alias.name) for alias in node.names]
            if any(name == "*" for _, name in pairs):
                raise Untranslatable(f"{rel}:{node.lineno}: from submission import *")
            from_names += pairs
            _blank(
                lines,
                node,
                " = ".join(local for local, _ in pairs) + " = None  # Otter: bound before each case",
            )
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            where = f"{rel}::{node.name}"
            params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
            if node.args.vararg or node.args.kwarg or set(params) - FIXTURES.keys():
                raise Untranslatable(f"{where}: fixtures {params} (only {sorted(FIXTURES)} are carried)")
            tests.append((node.name, _points(node, where), params))
        elif isinstance(node, ast.AsyncFunctionDef) and node.name.startswith("test"):
            raise Untranslatable(f"{rel}::{node.name}: async test")
    module = "".join(lines)
    out = []
    for func, points, params in tests:
        name = f"{rel}::{func}"
        names = bound + [local for local, _ in from_names]
        binds = [f"    {b} = _types.ModuleType({b!r})\n    {b}.__dict__.update(env)\n" for b in bound]
        binds += [f"    {local} = env[{remote!r}]\n" for local, remote in from_names]
        call = ", ".join(f"{p}={FIXTURES[p]}" for p in params)
        appendix = (
            f"\n\n# ---- Otter: written by bench/peer_otter.py from {rel}::{func}\n"
            "import random as _random\n"
            "import sys as _sys\n"
            "import types as _types\n\n"
            "from otter.test_files import test_case as _test_case\n\n"
            "OK_FORMAT = False\n"
            f"name = {name!r}\n"
            "points = None\n\n\n"
            f"@_test_case(name={name!r}, points={points!r}, hidden={hidden!r})\n"
            "def _otter_case(env):\n"
            + (f"    global {', '.join(names)}\n" if names else "")
            + "".join(binds)
            + f"    _random.seed({SEED})\n"
            + '    if "numpy" in _sys.modules:\n'
            + f'        _sys.modules["numpy"].random.seed({SEED})\n'
            + '    if "torch" in _sys.modules:\n'
            + f'        _sys.modules["torch"].manual_seed({SEED})\n'
            + f"    {func}({call})\n"
        )
        out.append((name, points, module + appendix))
    return out


def otter_tests(assignment: Path, folder: Path) -> dict[str, float]:
    """Write the assignment's tests as Otter test files under folder; {test name: points}."""
    if any(assignment.glob("*tests/**/conftest.py")):
        raise Untranslatable("conftest.py: fixtures of the assignment's own are not carried")
    folder.mkdir(parents=True)
    points: dict[str, float] = {}
    sources = sorted(assignment.glob("tests/**/test_*.py")) + sorted(
        assignment.glob("public_tests/**/test_*.py")
    )
    for path in sources:
        rel = path.relative_to(assignment).as_posix()
        for name, value, text in translate(path, rel, hidden=not rel.startswith("public_tests/")):
            # Numbered so that Otter (sorted glob) runs them in pytest's order; its "already checked"
            # test is a substring match on paths, which the ./tests/NNN_ prefix keeps unambiguous.
            stem = f"{len(points):03d}_" + name.replace("/", "_").replace("::", "__").replace(".py", "")
            (folder / f"{stem}.py").write_text(text)
            points[name] = value
    if not points:
        raise Untranslatable(f"no tests under {assignment}/tests")
    return points


def jupyter_only_cells_ignored(notebook: Path, out: Path) -> int:
    """Copy the notebook with its `if __name__ == "__main__":` cells tagged otter_ignore; how many."""
    nb = json.loads(notebook.read_text())
    count = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            body = ast.parse("".join(cell["source"])).body
        except SyntaxError:
            continue
        if (
            len(body) == 1
            and isinstance(body[0], ast.If)
            and ast.unparse(body[0].test)
            in (
                "__name__ == '__main__'",
                "'__main__' == __name__",
            )
        ):
            cell.setdefault("metadata", {}).setdefault("tags", []).append("otter_ignore")
            count += 1
    out.write_text(json.dumps(nb, indent=1))
    return count


def half_solved(solution: Path, starter: Path, out: Path) -> bool:
    """The solution with its second half of code cells taken from the starter (a partial score)."""
    sol, start = json.loads(solution.read_text()), json.loads(starter.read_text())
    code = [i for i, cell in enumerate(sol["cells"]) if cell["cell_type"] == "code"]
    if [c["cell_type"] for c in sol["cells"]] != [c["cell_type"] for c in start["cells"]]:
        return False
    for i in code[len(code) // 2 :]:
        sol["cells"][i] = start["cells"][i]
    out.write_text(json.dumps(sol, indent=1))
    return True


# ---- the two commands -----------------------------------------------------------------------------


def no_network_prefix() -> list[str]:
    """`unshare -n` with loopback up (the Jupyter kernel talks to Otter over 127.0.0.1), when allowed."""
    ip = shutil.which("ip")
    if ip and shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-n", ip, "link", "set", "lo", "up"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-n", "sh", "-c", f'{ip} link set lo up && exec "$@"', "otter"]
    return []


class Commands:
    def __init__(self, assignment: Path, otter_bin: Path, autograder: Path, work: Path):
        self.assignment, self.otter_bin, self.autograder, self.work = assignment, otter_bin, autograder, work
        self.prefix = no_network_prefix()
        self.env = {**os.environ, "PATH": f"{otter_bin}:{os.environ.get('PATH', '')}"}
        self.env.pop("VIRTUAL_ENV", None)
        self.tests_s = 0.0  # the last `grader grade`'s tests' own time (sum of their durations)

    def grader(self, notebook: Path) -> tuple[float, dict[str, tuple[float, float]]]:
        cmd = [str(common.VENV_BIN / "grader"), "grade", str(self.assignment), str(notebook), "--json"]
        seconds, done = common.timed(subprocess.run, cmd, capture_output=True, text=True, cwd=common.ROOT)
        try:
            result = json.loads(done.stdout)
        except ValueError:
            raise RuntimeError(
                f"grader grade printed no JSON ({done.returncode}): {done.stderr[-2000:]}"
            ) from None
        if result.get("status") != "graded":
            raise RuntimeError(f"grader grade: {result.get('status')}: {result.get('error')}")
        self.tests_s = sum(t["duration_s"] or 0 for t in result["tests"])
        return seconds, {t["name"]: (t["points"], t["max_points"]) for t in result["tests"]}

    def otter(
        self, notebook: Path, *, one_thread: bool = False
    ) -> tuple[float, dict[str, tuple[float, float]]]:
        out = Path(tempfile.mkdtemp(dir=self.work, prefix="otter-out-"))
        env = {**self.env, **dict.fromkeys(THREAD_VARIABLES, "1")} if one_thread else self.env
        cmd = [*self.prefix, str(self.otter_bin / "otter"), "run", "-a", str(self.autograder), "-o", str(out)]
        seconds, done = common.timed(
            subprocess.run, [*cmd, str(notebook)], capture_output=True, text=True, cwd=out, env=env
        )
        results = out / "results.json"
        if done.returncode != 0 or not results.exists():
            raise RuntimeError(f"otter run failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}")
        tests = json.loads(results.read_text())["tests"]
        shutil.rmtree(out)
        return seconds, {t["name"]: (t["score"], t["max_score"]) for t in tests if "max_score" in t}


def same_scores(report: Report, label: str, ours: dict, theirs: dict) -> None:
    """Both tools give the same points per test, or stop with the differences."""
    differences = [
        f"{name}: grader {ours.get(name)}, otter {theirs.get(name)}"
        for name in sorted(ours.keys() | theirs.keys())
        if ours.get(name) != theirs.get(name)
    ]
    total = sum(p for p, _ in ours.values()), sum(m for _, m in ours.values())
    report.check(f"same score per test: {label}", not differences, f"{total[0]:g}/{total[1]:g}")
    if differences:
        raise RuntimeError(f"grader and otter disagree on {label}:\n  " + "\n  ".join(differences))


def host_seconds(cmd: list, runs: int = 3) -> float:
    return median(common.timed(common.run, [str(part) for part in cmd])[0] for _ in range(runs))


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 interleaved runs instead of 5")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--assignment", type=Path, default=common.ROOT / "assignments" / "hw4-attention")
    parser.add_argument("--notebook", type=Path, default=None, help="default: the assignment's solution")
    parser.add_argument("--venv", type=Path, default=CACHE / f"otter-{OTTER_VERSION}")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    assignment = args.assignment.resolve()
    notebook = (args.notebook or next((assignment / "solution").glob("*.ipynb"))).resolve()
    starter = next((assignment / "starter").glob("*.ipynb"), None)

    report = Report(
        f"7. Peer: grader grade / otter run {OTTER_VERSION}, {assignment.name} {notebook.name}, {runs} runs"
    )
    otter_bin = otter_venv(args.venv)
    work = Path(tempfile.mkdtemp(prefix="bench-otter-"))
    try:
        points = otter_tests(assignment, work / "source" / "tests")
        report.note(f"{len(points)} pytest tests ({sum(points.values()):g} points) as Otter test files")
        common.run(
            [str(otter_bin / "otter"), "generate", "-t", "tests", "-o", str(work / "autograder.zip"),
             "--no-config", "--no-requirements", "--no-environment"],
            cwd=work / "source",
        )  # fmt: skip
        commands = Commands(assignment, otter_bin, work / "autograder.zip", work)
        report.note(
            "otter run: no container, the kernel and tests in this machine's processes; "
            + (
                "network: its own namespace, loopback only"
                if commands.prefix
                else "network NOT cut (no unshare)"
            )
        )
        ignored = work / notebook.name
        tagged = jupyter_only_cells_ignored(notebook, ignored)

        # The parity checks are also the warm-up (page cache, Docker, .pyc files).
        half = work / "half-solved.ipynb"
        checks = [("solution", notebook), ("starter", starter)]
        if starter and half_solved(notebook, starter, half):
            checks.append(("solution, 2nd half of the cells from the starter", half))
        scores = {}
        for label, nb in checks:
            if nb is None:
                continue
            scores[label] = commands.grader(nb)[1]
            same_scores(report, f"{label} ({nb.name})", scores[label], commands.otter(nb)[1])
        same_scores(
            report,
            f"solution, {tagged} Jupyter-only cell(s) otter_ignore'd",
            scores["solution"],
            commands.otter(ignored)[1],
        )

        load_before = common.load()
        times: dict[str, list[float]] = {"A": [], "B": [], "C": [], "D": []}
        tests_s = []
        for _ in range(runs):
            times["A"].append(commands.grader(notebook)[0])
            tests_s.append(commands.tests_s)
            times["B"].append(commands.otter(notebook)[0])
            times["C"].append(commands.otter(ignored)[0])
            times["D"].append(commands.otter(ignored, one_thread=True)[0])
        load_after = common.load()
        a, b, c, d = (median(times[k]) for k in "ABCD")

        report.note(f"interleaved A B C D x {runs}: before {load_before}; after {load_after}")
        report.figure("A `grader grade NOTEBOOK --json` median", a, "s")
        report.figure(
            "  of which the tests' own time in the sandbox (sum of durations)", median(tests_s), "s"
        )
        report.figure("B `otter run -a autograder.zip NOTEBOOK` median", b, "s")
        report.figure("C B with the Jupyter-only cells otter_ignore'd", c, "s")
        report.figure("D C with OMP/MKL/OPENBLAS_NUM_THREADS=1, as in the sandbox", d, "s")
        for key, values in times.items():
            report.note(
                f"{'runs (s): ' if key == 'A' else ' ' * 10}{key} " + " ".join(f"{x:.2f}" for x in values)
            )
        report.figure("ratio A/B: grader grade / otter run", a / b, "x", fmt="{:.2f}", at_most=TARGET)
        report.figure("ratio A/C: the same cells run", a / c, "x", fmt="{:.2f}")
        report.figure("ratio A/D: the same cells, one torch thread each", a / d, "x", fmt="{:.2f}")

        python = otter_bin / "python"
        report.note("where Otter's time goes (host, medians of 3):")
        report.figure(
            "  `otter --version` (CLI start-up and imports)",
            host_seconds([otter_bin / "otter", "--version"]),
            "s",
        )
        report.figure(
            "  python -c 'import torch' (the kernel imports it)",
            host_seconds([python, "-c", "import torch"]),
            "s",
        )
        report.figure(
            "  a Jupyter kernel started, one empty cell, shut down",
            host_seconds(
                [
                    python,
                    "-c",
                    "from jupyter_client.manager import start_new_kernel\n"
                    "km, kc = start_new_kernel(kernel_name='python3')\n"
                    "kc.execute_interactive('pass', timeout=60)\n"
                    "kc.stop_channels(); km.shutdown_kernel(now=True)",
                ]
            ),
            "s",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


if __name__ == "__main__":
    sys.exit(1 if main().misses else 0)

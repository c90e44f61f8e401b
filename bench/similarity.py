"""8. The similarity report of 200 submissions on one core (issue 18: under a minute).

    .venv/bin/python bench/similarity.py [--students 200] [--runs 2]

The whole job as the worker runs it (grader.similarity.build): counted submissions read from a SQLite
database and the stored uploads, the real hw1-mlp starter and solution taken out, every pair compared.
The process is pinned to one CPU. The first run includes importing copydetect (and the matplotlib it
imports); later runs do not.

The submissions are made up from hw1-mlp's starter: each function filled with the body of one of four
independent solutions (tests/fixtures/similarity: ada, bob, cyd, and the reference), picked at random,
plus 60-140 lines of the student's own experiments (random statements); one student in ten copied
another's notebook and renamed its variables. About 200 lines each, as a homework notebook's code.
"""

import argparse
import ast
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Report  # noqa: E402

TARGET_S = 60.0
CASES = common.ROOT / "tests" / "fixtures" / "similarity"
SOURCES = ["ada_own_work", "bob_own_work", "cyd_own_work", "solution"]


def _functions(path: Path) -> dict[str, str]:
    text = path.read_text()
    lines = text.splitlines(True)
    return {
        node.name: "".join(lines[node.lineno - 1 : node.end_lineno])
        for node in ast.parse(text).body
        if isinstance(node, ast.FunctionDef)
    }


def _experiment(rng: random.Random, index: int) -> str:
    """A function of random statements: the student's own cells (plots, trials, checks)."""
    names = [f"{rng.choice('abcdefghpqrstuvwxyz')}{rng.randrange(100)}" for _ in range(6)]
    ops = ["+", "-", "*", "/", "@"]
    calls = ["np.mean", "np.std", "np.sum", "np.max", "np.abs", "np.log1p", "np.sqrt", "np.tanh"]
    body = [f"def experiment_{index}(X, y, params):"]
    for _ in range(rng.randrange(6, 14)):
        target, left, right = rng.choice(names), rng.choice(names + ["X"]), rng.choice(names + ["y"])
        kind = rng.randrange(5)
        if kind == 0:
            body.append(f"    {target} = {rng.choice(calls)}({left}, axis={rng.randrange(2)})")
        elif kind == 1:
            body.append(
                f"    {target} = {left} {rng.choice(ops)} {rng.uniform(0, 9):.{rng.randrange(1, 4)}f}"
            )
        elif kind == 2:
            body.append(f"    for {target} in range({rng.randrange(2, 50)}):")
            body.append(f"        print('{target}', {rng.choice(calls)}({left}))")
        elif kind == 3:
            body.append(f"    if {left} > {rng.randrange(10)}:")
            body.append(f"        {target} = [{left}, {right}, {rng.randrange(999)}]")
        else:
            body.append(
                f"    {target} = mlp_forward(params, X[{rng.randrange(50)}:{rng.randrange(50, 150)}])"
            )
    body.append(f"    return {rng.choice(names)}")
    return "\n".join(body)


def submissions(count: int, seed: int = 7) -> dict[str, str]:
    """count made-up submissions to hw1-mlp by login: code cells of one notebook each."""
    rng = random.Random(seed)
    starter = (CASES / "starter.py").read_text()
    bodies = {name: _functions(CASES / f"{name}.py") for name in SOURCES}
    stubs = _functions(CASES / "starter.py")
    out: dict[str, str] = {}
    for i in range(count):
        login = f"s{i:04d}"
        if i % 10 == 9:  # a copy of an earlier student's, with the variables renamed
            original = out[f"s{rng.randrange(i):04d}"]
            for old in ("params", "grads", "loss", "dout", "logits"):
                original = original.replace(old, f"{old}_{rng.randrange(100)}")
            out[login] = original
            continue
        code = starter
        for name, stub in stubs.items():
            choice = bodies[rng.choice(SOURCES)]
            if "NotImplementedError" in stub and name in choice:
                code = code.replace(stub, choice[name])
        experiments = "\n\n\n".join(_experiment(rng, n) for n in range(rng.randrange(5, 11)))
        out[login] = code.replace(
            'if __name__ == "__main__":', experiments + '\n\n\nif __name__ == "__main__":'
        )
    return out


def notebook(source: str) -> bytes:
    import json

    cell = {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None, "outputs": []}
    return json.dumps(
        {"cells": [{**cell, "source": source}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    ).encode()


def seed_service(root: Path, codes: dict[str, str]):
    """A SQLite database at head, the course with the real hw1-mlp, one graded notebook per student."""
    from grader import accounts, catalog, storage
    from grader.config import Settings
    from grader.db import migrate, session_factory
    from grader.models import Submission, User
    from grader.uploads import unpack

    course = root / "assignments"
    course.mkdir()
    shutil.copy(common.ROOT / "assignments" / "course.toml", course / "course.toml")
    shutil.copytree(common.ROOT / "assignments" / "hw1-mlp", course / "hw1-mlp")
    settings = Settings(
        data_dir=root / "var", assignments_dir=course, database_url=f"sqlite:///{root / 'grader.db'}"
    )
    migrate(settings.effective_database_url)
    with session_factory(settings)() as session:
        assignment = catalog.sync(session=session, settings=settings)["hw1-mlp"]
        for login, code in codes.items():
            user = User(login=login, name=login, role="student", secret_hash=accounts.hash_secret("x"))
            session.add(user)
            session.flush()
            data = notebook(code)
            unpacked = unpack(data, "hw1.ipynb", assignment, max_bytes=10**8, max_files=100)
            digest = storage.store(settings, data, unpacked, assignment)
            session.add(
                Submission(
                    user_id=user.id,
                    assignment="hw1-mlp",
                    sha256=digest,
                    filename="hw1.ipynb",
                    format="ipynb",
                    status="graded",
                    score=5,
                    max_score=10,
                    submitted_at=datetime.now(UTC),
                )
            )
        session.commit()
    return settings, assignment


def _timed_build(report: Report, label: str, settings, assignment):
    """One report of every submission, timed as a whole and per stage."""
    from grader import similarity
    from grader.db import session_factory

    stages: dict[str, float] = {}
    last = [time.perf_counter(), "start"]

    def progress(stage, done, total):
        now = time.perf_counter()
        stages[last[1]] = stages.get(last[1], 0) + now - last[0]
        last[0], last[1] = now, stage

    with session_factory(settings)() as session:
        elapsed, built = common.timed(
            similarity.build, session=session, settings=settings, assignment=assignment, progress=progress
        )
    stages[last[1]] = stages.get(last[1], 0) + time.perf_counter() - last[0]
    report.figure(f"{label}: whole report", elapsed, "s", at_most=TARGET_S)
    report.note("  " + ", ".join(f"{stage} {sec:.2f} s" for stage, sec in stages.items() if sec > 0.005))
    return built


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    report = Report(f"8. Similarity report: {args.students} submissions on one core")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    codes = submissions(args.students)
    lines = sorted(code.count("\n") for code in codes.values())
    report.note(f"submissions: {len(codes)}, lines each: median {lines[len(lines) // 2]}, max {lines[-1]}")

    with tempfile.TemporaryDirectory(prefix="grader-bench-similarity-") as tmp:
        settings, assignment = seed_service(Path(tmp), codes)
        for run in range(args.runs):
            label = "first run (imports copydetect)" if run == 0 else f"run {run + 1}"
            built = _timed_build(report, label, settings, assignment)
        copies = {f"s{i:04d}" for i in range(9, args.students, 10)}
        report.note(
            f"{built.compared} pairs compared, {len(built.pairs)} kept, {len(built.flagged)} flagged; "
            f"{len(copies)} made-up copies"
        )
        flagged_copies = [c for c in copies if any(c in (p.a, p.b) for p in built.flagged)]
        report.check("every made-up copy is flagged", len(flagged_copies) == len(copies))
        # Not independent work: students here share the bodies of four solutions, picked per function.
        scores = sorted(
            (p.score for p in built.pairs if p.a not in copies and p.b not in copies), reverse=True
        )
        report.note(
            f"scores of pairs without a copy: top {scores[:3]}, median of kept {scores[len(scores) // 2]}"
        )
    return report


if __name__ == "__main__":
    sys.exit(1 if main().misses else 0)

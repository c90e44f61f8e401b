"""5. A realistic PyTorch homework graded end to end: where the time goes (torch import on each side,
the tests themselves) and what a warm pool or a preloaded interpreter would save.

    .venv/bin/python bench/torch_homework.py [--quick] [--assignment assignments/hw4-attention]

Grades the assignment's reference solution (the newest of hw4..hw2 that exists, else a small torch
test written here). No target in the issue; the figures feed the warm-pool proposal.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import IMAGE, Report, median  # noqa: E402

CANDIDATES = ["hw4-attention", "hw3-rnn", "hw2-cnn"]
FALLBACK_TEST = """\
import torch
from submission import train


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1)
    first, last = train(x, y, steps=50)
    assert last < first / 2
"""
FALLBACK_SOLUTION = """\
import torch


def train(x, y, steps):
    model = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]
"""


def _fallback(tmp: Path) -> Path:
    """A one-test torch assignment in a copy of the test course (for trees without the homeworks)."""
    course = tmp / "course"
    course.mkdir()
    shutil.copy(common.COURSE / "course.toml", course / "course.toml")
    folder = course / "torch-steps"
    (folder / "tests").mkdir(parents=True)
    (folder / "solution").mkdir()
    toml = (common.ADD_ONE / "assignment.toml").read_text().replace("Add two numbers", "A few torch steps")
    (folder / "assignment.toml").write_text(
        toml.replace("timeout_s = 60", "timeout_s = 120\nmemory_mb = 2048")
    )
    (folder / "tests" / "test_train.py").write_text(FALLBACK_TEST)
    (folder / "solution" / "submission.py").write_text(FALLBACK_SOLUTION)
    return folder


def _wall(cmd) -> float:
    return common.timed(common.run, cmd)[0]


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 graded runs instead of 5")
    parser.add_argument("--assignment", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = 2 if args.quick else 5

    from profile_sandbox import print_profile, profile

    from grader import sandbox
    from grader.assignments import load_assignment, submission_source
    from grader.config import get_settings
    from grader.uploads import unpack_path

    tmp = Path(tempfile.mkdtemp(prefix="bench-torch-"))
    folder = args.assignment or next(
        (
            common.ROOT / "assignments" / c
            for c in CANDIDATES
            if (common.ROOT / "assignments" / c / "assignment.toml").exists()
        ),
        None,
    )
    folder = folder or _fallback(tmp)
    settings = get_settings()
    assignment = load_assignment(folder)
    unpacked = unpack_path(
        submission_source(folder / "solution"),
        assignment,
        max_bytes=settings.max_unpacked_bytes,
        max_files=settings.max_upload_files,
    )
    report = Report(f"5. PyTorch homework end to end: {folder.name} reference solution, {runs} runs")

    result = sandbox.grade(assignment, unpacked, settings=settings)  # warm-up, and the test durations
    if result.status != "graded" or result.score != result.max_score:
        report.check("reference solution gets full marks", False, f"{result.score}/{result.max_score}")
    totals = [common.timed(sandbox.grade, assignment, unpacked, settings=settings)[0] for _ in range(runs)]
    tests_s = sum(t.duration_s or 0 for t in result.tests)
    total = median(totals)
    report.figure(
        f"sandbox.grade() median ({len(result.tests)} tests, {result.score:g}/{result.max_score:g})",
        total,
        "s",
    )
    report.figure("  of which the tests' own time (sum of durations)", tests_s, "s")

    name = f"bench-torch-{uuid.uuid4().hex[:8]}"
    limits = [
        "--network",
        "none",
        "--cpus",
        str(assignment.sandbox.cpus),
        "--memory",
        f"{assignment.sandbox.memory_mb}m",
    ]
    common.run(["docker", "run", "-d", "--rm", "--name", name, *limits, IMAGE, "sleep", "3600"])
    try:
        probes = {
            "docker run --rm: python3 -c 'import torch'": [
                "docker",
                "run",
                "--rm",
                *limits,
                IMAGE,
                "python3",
                "-c",
                "import torch",
            ],
            "docker run --rm: python3 -c pass": [
                "docker",
                "run",
                "--rm",
                *limits,
                IMAGE,
                "python3",
                "-c",
                "pass",
            ],
            "docker exec: python3 -c 'import torch'": [
                "docker",
                "exec",
                name,
                "python3",
                "-c",
                "import torch",
            ],
            "docker exec: python3 -c 'import pytest'": [
                "docker",
                "exec",
                name,
                "python3",
                "-c",
                "import pytest",
            ],
            "docker exec: python3 -c 'import numpy'": [
                "docker",
                "exec",
                name,
                "python3",
                "-c",
                "import numpy",
            ],
            "docker exec: python3 -c pass": ["docker", "exec", name, "python3", "-c", "pass"],
        }
        probe_times = {k: [] for k in probes}
        for cmd in probes.values():
            _wall(cmd)
        for _ in range(max(3, runs)):
            for key, cmd in probes.items():
                probe_times[key].append(_wall(cmd))
        med = {k: median(v) for k, v in probe_times.items()}
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    for key, value in med.items():
        report.figure(f"median {key}", value, "s")
    torch_import = med["docker exec: python3 -c 'import torch'"] - med["docker exec: python3 -c pass"]
    report.figure("import torch, one side (exec difference)", torch_import, "s")

    rows, prof_total, missing, calls = profile(assignment, unpacked, settings, max(2, runs // 2))
    report.note("profile (instrumented runs):")
    print_profile(rows, prof_total, missing, calls, out=report.note)
    at = {name: t for name, t, _d in rows}
    # A warm pool keeps H and S started, their interpreters running with pytest, numpy and torch
    # imported; a grading then costs the tar, the handshake, the tests and the teardown.
    before_accept = at.get("S_accepted", float("nan"))
    s_import = at.get("S_ready_sent", float("nan")) - before_accept  # S: import of the submission (torch)
    collection = at.get("H_pytest_done", float("nan")) - at.get("H_pytest_main_start", float("nan")) - tests_s
    teardown = prof_total - at.get("H_pytest_done", prof_total)
    report.figure("start-up before S accepts H (containers, interpreters, pytest)", before_accept, "s")
    report.figure("S imports the submission (its torch import inside)", s_import, "s")
    report.figure("H pytest collection and set-up (test files import torch)", collection, "s")
    report.figure("H and S teardown after the last test (wait, kill, remove)", teardown, "s")
    saved = before_accept + min(s_import, torch_import) + min(collection, torch_import)
    report.figure("warm pool (started, torch preloaded) would save about", saved, "s")
    report.figure("  as a share of the total", saved / prof_total * 100, "%", fmt="{:.0f}")
    report.figure(
        "  and taking teardown off the result path too",
        (saved + teardown) / prof_total * 100,
        "%",
        fmt="{:.0f}",
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()

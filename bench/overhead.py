"""1. Sandbox overhead: `grader grade` of a trivial submission vs a bare `docker run` vs pytest by
`docker exec` in a running container; medians, ratios, and a profile of where grade() spends its time.

    .venv/bin/python bench/overhead.py [--runs N] [--quick]
"""

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import IMAGE, Report, median  # noqa: E402

TARGET_ADDED_S = 0.5
# The flags grader/containers.py gives each container, for a bare run that pays for the same isolation.
SANDBOX_FLAGS = [
    "--network",
    "none",
    "--read-only",
    "--tmpfs",
    "/tmp:size=512m,mode=1777",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--memory",
    "1g",
    "--memory-swap",
    "1g",
    "--pids-limit",
    "256",
    "--user",
    "1000:1000",
]


def _exec_container() -> str:
    """A running container holding the add-one test and the submission side by side in /tmp/bench."""
    name = f"bench-exec-{uuid.uuid4().hex[:8]}"
    common.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "none", IMAGE, "sleep", "3600"])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for arcname, data in {
            "bench/test_x.py": (common.ADD_ONE / "tests" / "test_x.py").read_bytes(),
            "bench/submission.py": common.PASSES_SOURCE,
        }.items():
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    common.run(["docker", "exec", "-i", name, "tar", "-x", "-C", "/tmp"], input=buffer.getvalue())
    return name


def _wall(cmd: list[str], **kwargs) -> float:
    started = time.perf_counter()
    common.run(cmd, **kwargs)
    return time.perf_counter() - started


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs per variant (default 11, --quick 5)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 11)

    from grader import sandbox
    from grader.assignments import load_assignment
    from grader.config import get_settings
    from grader.uploads import unpack

    settings = get_settings()
    assignment = load_assignment(common.ADD_ONE)
    unpacked = unpack(
        common.passes_zip(),
        "passes_all.zip",
        assignment,
        max_bytes=settings.max_unpacked_bytes,
        max_files=settings.max_upload_files,
    )
    report = Report(f"1. sandbox overhead: trivial submission (add-one, one passing test), {runs} runs each")
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    zip_path = work / "passes_all.zip"
    zip_path.write_bytes(common.passes_zip())
    exec_name = _exec_container()
    times: dict[str, list[float]] = {}
    variants = {
        "grader grade --json (CLI)": lambda: _wall(
            [*common.GRADER, "grade", str(common.ADD_ONE), str(zip_path), "--json"], cwd=common.ROOT
        ),
        "sandbox.grade() in process": lambda: common.timed(
            sandbox.grade, assignment, unpacked, settings=settings
        )[0],
        "docker run --rm IMAGE python3 -c pass": lambda: _wall(
            ["docker", "run", "--rm", IMAGE, "python3", "-c", "pass"]
        ),
        "  same, with the sandbox's flags": lambda: _wall(
            ["docker", "run", "--rm", *SANDBOX_FLAGS, IMAGE, "python3", "-c", "pass"]
        ),
        "docker exec: pytest the same test": lambda: _wall(
            [
                "docker",
                "exec",
                "-w",
                "/tmp/bench",
                exec_name,
                "python3",
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "test_x.py",
            ]
        ),
        "docker exec: python3 -c pass": lambda: _wall(["docker", "exec", exec_name, "python3", "-c", "pass"]),
        "host: python -c 'import grader.cli'": lambda: _wall([sys.executable, "-c", "import grader.cli"]),
        "host: import only what grade needs": lambda: _wall(
            [
                sys.executable,
                "-c",
                "import typer, rich.table, grader.assignments, grader.uploads, grader.sandbox, "
                "grader.results",
            ]
        ),
        "host: python -c pass": lambda: _wall([sys.executable, "-c", "pass"]),
    }
    try:
        for fn in variants.values():  # one warm-up each (page cache, image layers)
            fn()
        for _ in range(runs):  # interleaved, so a burst of load from elsewhere hits every variant alike
            for name, fn in variants.items():
                times.setdefault(name, []).append(fn())
    finally:
        subprocess.run(["docker", "rm", "-f", exec_name], capture_output=True)
    med = {name: median(values) for name, values in times.items()}
    for name, value in med.items():
        report.figure(f"median {name}", value, "s")
    cli, lib = med["grader grade --json (CLI)"], med["sandbox.grade() in process"]
    bare, execd = med["docker run --rm IMAGE python3 -c pass"], med["docker exec: pytest the same test"]
    report.figure("grader grade - bare docker run", cli - bare, "s", at_most=TARGET_ADDED_S)
    report.figure("sandbox.grade() - bare docker run (library call)", lib - bare, "s", at_most=TARGET_ADDED_S)
    report.figure("ratio grader grade / bare docker run", cli / bare, "x", fmt="{:.2f}")
    report.figure("ratio sandbox.grade() / bare docker run", lib / bare, "x", fmt="{:.2f}")
    report.figure("ratio grader grade / docker exec pytest", cli / execd, "x", fmt="{:.2f}")
    report.figure("ratio sandbox.grade() / docker exec pytest", lib / execd, "x", fmt="{:.2f}")
    report.figure("CLI start-up share of grader grade (cli - library)", cli - lib, "s")

    from profile_sandbox import print_profile, profile

    prof_runs = max(3, runs // 2)
    rows, total, missing, calls = profile(assignment, unpacked, settings, prof_runs)
    report.note(
        f"profile of sandbox.grade() ({prof_runs} instrumented runs; H = tests side, S = student side):"
    )
    print_profile(rows, total, missing, calls, out=report.note)
    return report


if __name__ == "__main__":
    main()

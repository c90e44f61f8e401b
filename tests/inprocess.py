"""The reference for the sandbox's scores: the same tests import the same code in one pytest process.

That is how Otter and Gradescope's autograders run: the student's module and the tests share a
process. tests/test_fidelity.py checks that grader.sandbox.grade() gives every honest submission
exactly the score this gives it, test by test.

- A notebook is converted with grader.uploads.notebook_to_module and run cell by cell with
  sandbox/harness/cells.py (a cell that raises is skipped, the rest still run); the module is in
  sys.modules["submission"] before the tests are imported. A zip's files are importable from the
  process's working directory: `submission` is imported by the tests, with normal import semantics.
- The tests run in a subprocess with tests/fixtures/inprocess_run.py as their pytest plugin: points
  (`@pytest.mark.points(N)`, default 1), per-test time limits (`@pytest.mark.timeout(N)`, else the
  assignment's `[sandbox] test_timeout_s`), the `device` fixture and seeding, as in the harness.
- A test that crashes the process (os._exit, a segfault) or runs past its time limit fails alone: a new
  process re-imports the submission and runs the tests after it, as the sandbox restarts its student side.

By default the process runs in the sandbox image (one container, no network, the assignment's CPUs
and threads), so both ways use the same Python, numpy and torch. GRADER_REFERENCE=host runs it with
this interpreter instead, GRADER_REFERENCE=/path/to/python with that one.
"""

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from grader.uploads import Unpacked

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).parent / "fixtures" / "inprocess_run.py"
CELLS = ROOT / "sandbox" / "harness" / "cells.py"
TEST_FOLDERS = ("tests", "public_tests")  # in the harness's order
LABEL = "grader.reference"  # on the reference's containers, to find any left behind
STARTUP_S = 60.0  # on top of the submission's time limit: interpreter, torch, collection
EVERY_TEST = "*"  # in Reference.collect_errors: the process ended before the tests were collected


class Outcome(NamedTuple):
    passed: bool
    points: float  # earned: max_points when passed, else 0
    max_points: float
    outcome: str  # passed, failed, error, timeout, crashed, not_run
    message: str = ""
    duration_s: float = 0.0


@dataclass
class Reference:
    """What the tests give the submission in one process; tests in collected order."""

    tests: dict[str, Outcome] = field(default_factory=dict)
    # Test files that could not be imported (e.g. `import submission` raised): all their tests score 0.
    collect_errors: dict[str, str] = field(default_factory=dict)
    failed_cells: list[tuple[int, str]] = field(default_factory=list)
    processes: int = 0
    log: str = ""  # pytest's and the student's output, for a failing comparison

    @property
    def score(self) -> float:
        return math.fsum(test.points for test in self.tests.values())

    @property
    def max_score(self) -> float:
        return math.fsum(test.max_points for test in self.tests.values())

    def passed(self, name: str) -> bool | None:
        """Whether the test passed; None when this run does not know the test at all."""
        if name in self.tests:
            return self.tests[name].passed
        if name.split("::")[0] in self.collect_errors or EVERY_TEST in self.collect_errors:
            return False
        return None


@dataclass(frozen=True)
class Limits:
    timeout_s: float  # the whole submission, as the sandbox's [sandbox] timeout_s
    test_timeout_s: float | None
    cpus: float
    memory_mb: int


def limits(assignment_dir: Path) -> Limits:
    """The assignment's [sandbox] table, read here so that keys the loader does not know yet work too."""
    config = tomllib.loads((assignment_dir / "assignment.toml").read_text("utf-8"))
    box = config.get("sandbox", {})
    return Limits(
        timeout_s=float(box.get("timeout_s", 300)),
        test_timeout_s=box.get("test_timeout_s"),
        cpus=float(box.get("cpus", 1.0)),
        memory_mb=int(box.get("memory_mb", 2048)),
    )


def grade_in_process(assignment_dir: Path, unpacked: Unpacked, *, runner=None) -> Reference:
    """Run the assignment's tests against the submission in one process (restarted after a crash)."""
    runner = runner or default_runner()
    box = limits(assignment_dir)
    with tempfile.TemporaryDirectory(prefix="grader-reference-") as tmp:
        base = Path(tmp)
        targets = _layout(base, assignment_dir, unpacked)
        spec = {
            "work": "work",
            "grade": "grade",
            "cells_module": "driver/cells.py",
            "cells": [cell.__dict__ for cell in unpacked.cells],
            "seed": 0,
            "default_timeout_s": box.test_timeout_s,
        }
        reference, order, remaining = Reference(), None, targets
        while remaining:
            reference.processes += 1
            run = f"out/run-{reference.processes}"
            events, log, timed_out = runner.run(
                base,
                {**spec, "targets": remaining, "results": f"{run}.jsonl"},
                run,
                timeout_s=box.timeout_s + STARTUP_S,
                box=box,
            )
            reference.log += f"--- process {reference.processes}\n{log}\n"
            started = _read(events, reference)
            if order is None:
                order = [t["name"] for e in events if e["event"] == "collected" for t in e["tests"]]
                if not any(e["event"] == "collected" for e in events):
                    # The student's code ended the process before pytest listed the tests: all fail.
                    reference.collect_errors[EVERY_TEST] = log[-2000:]
            for name in started:
                if name not in reference.tests:  # it started and never finished: this process ended in it
                    what = "timeout" if timed_out else "crashed"
                    reference.tests[name] = Outcome(False, 0.0, _max_points(events, name), what, log[-2000:])
            remaining = [name for name in order if name not in reference.tests]
            if remaining and not started:
                # Nothing ran (the import itself crashed or hung): the rest would fail the same way.
                for name in remaining:
                    reference.tests[name] = Outcome(
                        False, 0.0, _max_points(events, name), "not_run", log[-2000:]
                    )
                remaining = []
        reference.tests = {name: reference.tests[name] for name in order or [] if name in reference.tests}
    return reference


def _read(events: list[dict], reference: Reference) -> list[str]:
    """Record the events' results in reference; return the tests that started."""
    points = {t["name"]: t["max_points"] for e in events if e["event"] == "collected" for t in e["tests"]}
    started = []
    for event in events:
        kind = event["event"]
        if kind == "start":
            started.append(event["name"])
        elif kind == "test":
            name, passed = event["name"], event["outcome"] == "passed"
            worth = points[name]
            reference.tests[name] = Outcome(
                passed,
                worth if passed else 0.0,
                worth,
                event["outcome"],
                event["message"],
                event.get("duration_s", 0),
            )
        elif kind == "collect_error":
            reference.collect_errors.setdefault(event["path"], event["message"])
        elif kind == "cells" and not reference.failed_cells:
            reference.failed_cells = [(cell, text) for cell, text in event["failed"]]
    return started


def _max_points(events: list[dict], name: str) -> float:
    return next(
        (
            t["max_points"]
            for e in events
            if e["event"] == "collected"
            for t in e["tests"]
            if t["name"] == name
        ),
        0.0,
    )


def _layout(base: Path, assignment_dir: Path, unpacked: Unpacked) -> list[str]:
    """base/driver (the plugin), base/grade (the tests), base/work (the submission); the test folders."""
    (base / "driver").mkdir()
    (base / "out").mkdir()
    shutil.copy(DRIVER, base / "driver" / DRIVER.name)
    shutil.copy(CELLS, base / "driver" / "cells.py")
    data = assignment_dir / "data"
    targets = []
    for folder in (*TEST_FOLDERS, "data"):
        if (assignment_dir / folder).is_dir():
            shutil.copytree(
                assignment_dir / folder, base / "grade" / folder, ignore=shutil.ignore_patterns("__pycache__")
            )
            targets += [folder] if folder in TEST_FOLDERS else []
    work = base / "work"
    work.mkdir()
    for name, content in unpacked.files.items():
        # The assignment's data wins over a student's file at its place (grader.assignments.with_data).
        if data.is_dir() and PurePosixPath(name).parts[0] == "data":
            continue
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(content)
    if data.is_dir():
        shutil.copytree(data, work / "data", dirs_exist_ok=True)
    return targets


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text("utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            break  # a line cut short by the end of the process
    return events


def _environment(box: Limits) -> dict[str, str]:
    threads = str(max(1, int(box.cpus)))  # as grader.containers._environment
    return {
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "PYTHONDONTWRITEBYTECODE": "1",
    }


class HostRunner:
    """Runs the reference process with a Python here (it needs pytest and whatever the tests import)."""

    def __init__(self, python: str = sys.executable):
        self.python = python

    def run(self, base: Path, spec: dict, name: str, *, timeout_s: float, box: Limits):
        (base / f"{name}.json").write_text(json.dumps(spec))
        env = {
            **os.environ,
            **_environment(box),
            "MPLCONFIGDIR": str(base / "out"),
            "HOME": str(base / "out"),
        }
        command = [self.python, "-I", str(base / "driver" / DRIVER.name), str(base), f"{name}.json"]
        process = subprocess.Popen(
            command,
            cwd=base,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)  # the student's code may have started children
            output, _ = process.communicate()
        log = output.decode("utf-8", "replace")[-20000:]
        return _events(base / spec["results"]), log, timed_out


class DockerRunner:
    """Runs the reference process in a container of the sandbox image: same Python and libraries.

    Files go in and results come out through the Docker API, as in grader/containers.py.
    """

    def __init__(self, client, image: str):
        self.client, self.image = client, image

    def run(self, base: Path, spec: dict, name: str, *, timeout_s: float, box: Limits):
        import docker
        import requests

        home = "/tmp/ref"
        (base / f"{name}.json").write_text(json.dumps(spec))
        api = self.client.api
        container = api.create_container(
            self.image,
            ["python3", "-I", f"{home}/driver/{DRIVER.name}", home, f"{name}.json"],
            user="1001:1001",
            working_dir="/tmp",
            environment={**_environment(box), "MPLCONFIGDIR": f"{home}/out", "HOME": f"{home}/out"},
            labels={LABEL: uuid.uuid4().hex},
            host_config=api.create_host_config(
                network_mode="none",
                nano_cpus=int(box.cpus * 1e9),
                # The tests and the student's code share this one process: room for both sides.
                mem_limit=f"{2 * box.memory_mb}m",
                memswap_limit=f"{2 * box.memory_mb}m",
            ),
        )["Id"]
        timed_out = False
        try:
            api.put_archive(container, "/tmp", _tar(base, "ref"))
            api.start(container)
            try:
                api.wait(container, timeout=timeout_s)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                api.kill(container)
            log = api.logs(container, stdout=True, stderr=True).decode("utf-8", "replace")[-20000:]
            try:
                stream, _ = api.get_archive(container, f"{home}/{spec['results']}")
            except docker.errors.NotFound:  # the process ended before it opened its results file
                stream = None
            if stream is not None:
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                    member = archive.next()
                    (base / spec["results"]).write_bytes(archive.extractfile(member).read())
        finally:
            api.remove_container(container, force=True)
        return _events(base / spec["results"]), log, timed_out


def _tar(base: Path, top: str) -> bytes:
    """base's tree under top/, owned by the student user (1001), as grader.sandbox_files.build_tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:

        def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 1001
            info.mode = 0o755 if info.isdir() else 0o644
            return info

        archive.add(base, arcname=top, filter=owned)
    return buffer.getvalue()


def default_runner():
    """The sandbox image when Docker has it (GRADER_REFERENCE unset or "docker"), else this Python."""
    choice = os.environ.get("GRADER_REFERENCE", "")
    if choice and choice != "docker":
        return HostRunner(sys.executable if choice == "host" else choice)
    try:
        import docker

        from grader.config import get_settings

        client = docker.from_env()
        client.images.get(get_settings().sandbox_image)
        return DockerRunner(client, get_settings().sandbox_image)
    except Exception:  # no engine, no image: the host's Python, which may lack torch
        if choice == "docker":
            raise
        return HostRunner()


def can_import(runner, module: str) -> bool:
    """Whether the runner's Python has the module (torch, say), so a test can skip where it does not."""
    if isinstance(runner, DockerRunner):
        return True  # the sandbox image has what the homeworks need
    done = subprocess.run([runner.python, "-c", f"import {module}"], capture_output=True)
    return done.returncode == 0

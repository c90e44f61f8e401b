"""Grade one submission in Docker: the only module that talks to the engine.

One sandbox is two containers. H runs the trusted harness and the hidden tests; S runs the student's
code. S joins H's network namespace, so the tests reach the student's code over loopback while neither
container has any other network. Files go in as a tar on stdin, never through bind mounts, so a worker
that itself runs in a container works. Both containers are removed whatever happens.
"""

import ast
import contextlib
import io
import json
import re
import socket
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import docker
import requests
from docker.types import DeviceRequest, LogConfig, Ulimit
from docker.utils.socket import frames_iter

from grader import config, images, sandbox_result
from grader.assignments import Assignment, with_data
from grader.config import Settings
from grader.engine import SandboxUnavailable, remove_later, remove_orphans  # noqa: F401 - grader.sandbox's interface too
from grader.engine import client as _client
from grader.engine import kill as _kill
from grader.results import GradeResult
from grader.sandbox_result import EVIDENCE, RESULT_PREFIX
from grader.uploads import Unpacked, module_names

STUDENT_PORT = 7431  # the first student side's; each restart listens on the next port
# Fresh student sides the harness may ask for in one grading, after crashes or a test's timeout.
MAX_RESTARTS = 30
# Seconds on top of timeout_s for the containers to start and unpack; the harness gets less than
# timeout_s (DEADLINE_MARGIN_S) so that it normally reports a timeout itself before we kill it.
STARTUP_GRACE_S = 5.0
DEADLINE_MARGIN_S = 2.0
# H's stdout carries only harness lines; more than this means the harness is broken.
HARNESS_OUTPUT_LIMIT = 16 * 2**20
STDOUT = 1  # the stream number of stdout in Docker's attach protocol

# Runs as the container's command: unpack the tar from stdin into /tmp, then become the harness.
# Docker would create a working_dir under /tmp owned by root, where the tar could not go; so the
# container starts in /tmp and BOOT moves into SANDBOX_WORKDIR once the files are there.
# -u because -I ignores PYTHONUNBUFFERED, and output still in a buffer is lost when we kill on timeout.
BOOT = """\
import os, sys, tarfile
try:
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as archive:
        archive.extractall("/tmp")
except Exception as exc:
    if sys.argv[1] != "student_side.py":
        raise
    # The student's files (after the harness's) would not unpack: S reports it as the student's error.
    sys.stdin.buffer.read()
    os.environ["SANDBOX_UNPACK_ERROR"] = f"{type(exc).__name__}: {exc}"[:500]
os.chdir(os.environ.get("SANDBOX_WORKDIR", "/tmp"))
os.execv(sys.executable, [sys.executable, "-I", "-u", "/tmp/harness/" + sys.argv[1], *sys.argv[2:]])
"""

# A pooled container's command (grader.pool): unpack the first frame on stdin (what is the same for
# every submission: the harness, and on the tests side the tests), then run the harness in this same
# interpreter, so what it imports while it waits for the submission's frame is kept. -I implies -P on
# Python 3.11: nothing of the working directory is on sys.path. Frames: sandbox/harness/warm.py.
POOLED_BOOT = """\
import io, runpy, sys, tarfile
size = int.from_bytes(sys.stdin.buffer.read(8), "big")
with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read(size)), mode="r:") as archive:
    archive.extractall("/tmp")
sys.argv = ["/tmp/harness/" + sys.argv[1], *sys.argv[2:]]
sys.dont_write_bytecode = True
runpy.run_path(sys.argv[0], run_name="__main__")
"""
# What a pooled student side imports ahead, of what the tests import: the heavy libraries a student's
# code imports too. The tests side imports all that its test files import.
STUDENT_PRELOAD = ("numpy", "torch")

GPU_UNSUPPORTED = re.compile(r"could not select device driver|nvidia-container|unknown runtime", re.I)


def _tree(root: Path, prefix: str) -> dict[str, bytes]:
    return {
        f"{prefix}/{path.relative_to(root).as_posix()}": path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def build_tar(files: dict[str, bytes], *, uid: int) -> bytes:
    """A tar of the files (path -> content), 0644 in 0755 folders, all owned by uid."""
    folders = {str(parent) for name in files for parent in PurePosixPath(name).parents} - {"."}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        # By depth, then name: the same files give the same bytes (grader.pool keys pairs by them).
        for name in sorted(folders, key=lambda folder: (folder.count("/"), folder)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, uid, uid
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, uid, uid
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _spec(assignment: Assignment, unpacked: Unpacked) -> dict:
    box = assignment.sandbox
    return {
        "deadline_s": max(1.0, box.timeout_s - DEADLINE_MARGIN_S),
        "student_host": "127.0.0.1",
        "student_port": STUDENT_PORT,
        "connect_timeout_s": 60,
        "cells": [cell.__dict__ for cell in unpacked.cells],
        "seed": 0,
        "gpu": box.gpu,
        "max_message_bytes": _max_message_bytes(box),
        # The worker's list of the upload's modules: S is not trusted to say which names are the student's.
        "student_modules": sorted(module_names(unpacked.files)),
        "test_timeout_s": box.test_timeout_s,
        "max_restarts": MAX_RESTARTS,
    }


def _max_message_bytes(box) -> int:
    # A reply bigger than this would let the student's code exhaust the tests' memory.
    return min(64 * 2**20, box.memory_mb * 2**20 // 4)


def _tests_files(assignment: Assignment, harness_dir: Path) -> dict[str, bytes]:
    """H's files that are the same for every submission of the assignment: all but spec.json."""
    files = _tree(harness_dir, "harness") | _tree(assignment.tests_dir, "grade/tests")
    if assignment.public_tests_dir.is_dir():
        files |= _tree(assignment.public_tests_dir, "grade/public_tests")
    files |= {f"grade/{name}": content for name, content in assignment.data_files().items()}
    return files


def _spec_file(assignment: Assignment, unpacked: Unpacked) -> dict[str, bytes]:
    return {"grade/spec.json": json.dumps(_spec(assignment, unpacked)).encode()}


def _student_tar(
    assignment: Assignment, unpacked: Unpacked, harness_dir: Path | None, *, scramble_args: bool
) -> bytes:
    """S's tar: the harness (unless harness_dir is None: a pooled S has it already), its settings and
    the student's files."""
    # The assignment's data/ wins over the student's files of the same paths.
    merged = with_data(unpacked.files, assignment.data_files())
    files = {f"work/{name}": data for name, data in merged.items()}
    # S's own settings: the reply limit it refuses honest replies over, a notebook's cells, and
    # whether to spoil arguments after each call (checking a reference solution: grade(scramble_args)).
    config = {
        "max_bytes": _max_message_bytes(assignment.sandbox),
        "cells": [c.__dict__ for c in unpacked.cells],
        "scramble_args": scramble_args,
    }
    # Ours first: a student's file that cannot be unpacked must not keep S from starting.
    ours = _tree(harness_dir, "harness") if harness_dir is not None else {}
    ours |= {"student.json": json.dumps(config).encode()}
    return build_tar(ours | files, uid=1001)


def preloads(assignment: Assignment) -> tuple[list[str], list[str]]:
    """What a pooled pair imports before its submission: the installed libraries the test files import
    (the tests side), and of those the heavy ones (the student side). The tests' own helper modules
    are left out: they are imported when the tests are collected, after the submission came."""
    wanted: set[str] = set()
    local: set[str] = {"submission"}
    for folder in (assignment.tests_dir, assignment.public_tests_dir, assignment.data_dir):
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
            local.add(path.stem)
            local.update(part for part in path.relative_to(folder).parts[:-1])
            try:
                tree = ast.parse(path.read_bytes())
            except (SyntaxError, ValueError):
                continue
            for node in tree.body:
                if isinstance(node, ast.Import):
                    wanted |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    wanted.add(node.module)
    tests = sorted(name for name in wanted if name.partition(".")[0] not in local)
    return tests, [name for name in STUDENT_PRELOAD if any(t.partition(".")[0] == name for t in tests)]


@dataclass
class _Stream:
    """The head of one or more containers' stdout (and stderr), read live so a flood cannot push it out.

    The student's output is one stream over every student container of a grading (a restart starts a
    new one); the limit is for them all together.
    """

    limit: int
    data: bytearray = field(default_factory=bytearray)
    total: int = 0
    threads: list = field(default_factory=list)
    socks: list = field(default_factory=list)
    evidence: set[str] = field(default_factory=set)  # EVIDENCE keys seen anywhere, kept or cut
    # H's results come from its stdout alone: its stderr is kept apart (the end of it, for diagnostics),
    # so that nothing written there can add or break a result line.
    stdout_only: bool = False
    stderr_tail: bytes = b""
    on_line: object = None  # called with each complete stdout line, as it arrives (H's restart requests)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, sock) -> None:
        """Read sock's output from now on; close() closes it even if that never happens."""
        if sock not in self.socks:
            self.socks.append(sock)
        thread = threading.Thread(target=self.read, args=(sock,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def read(self, sock) -> None:
        tail, partial = b"", b""
        try:
            for stream, chunk in frames_iter(sock, tty=False):
                if self.stdout_only and stream != STDOUT:
                    self.stderr_tail = (self.stderr_tail + chunk)[-2000:]
                    continue
                with self.lock:
                    self.total += len(chunk)
                    # Keep draining past the limit: a client that stops reading would block the container.
                    if len(self.data) < self.limit:
                        self.data += chunk[: self.limit - len(self.data)]
                window = tail + chunk  # the tail catches a phrase split between two chunks
                self.evidence |= {code for code, pattern in EVIDENCE.items() if pattern.search(window)}
                tail = window[-64:]
                if self.on_line is not None:
                    *lines, partial = (partial + chunk).split(b"\n")
                    for line in lines:
                        self.on_line(line)
        except (OSError, ValueError):
            pass  # the connection closes when the container is killed or removed

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def close(self) -> None:
        """Close every layer of each attach connection: the file wrapper, the socket, the HTTP response."""
        for thread in self.threads:
            thread.join(timeout=5)
        for sock in self.socks:
            # The response first: closing it flushes the file wrapper, which must still be open.
            for layer in (getattr(sock, "_response", None), sock, getattr(sock, "_sock", None)):
                if layer is not None:
                    with contextlib.suppress(OSError, ValueError):
                        layer.close()


def _host_config(api, box, *, network_mode: str, gpu_ids: list[str] | None, log_bytes: int) -> dict:
    mem = f"{box.memory_mb}m"
    devices = None
    if box.gpu:
        devices = [
            DeviceRequest(device_ids=gpu_ids or None, count=None if gpu_ids else -1, capabilities=[["gpu"]])
        ]
    return api.create_host_config(
        network_mode=network_mode,
        mem_limit=mem,
        memswap_limit=mem,  # equal: no swap
        nano_cpus=int(box.cpus * 1e9),
        pids_limit=box.pids,
        read_only=True,
        # Docker mounts tmpfs noexec,nosuid,nodev: Python only reads .py files, while a compiled
        # .so dropped into /tmp cannot be loaded.
        tmpfs={"/tmp": f"size={box.disk_mb}m,mode=1777"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        ulimits=[Ulimit(name="nofile", soft=1024, hard=1024), Ulimit(name="core", soft=0, hard=0)],
        # We read output from the attach stream; the log file only needs a cap so a flood cannot fill
        # the host's disk.
        log_config=LogConfig(type="json-file", config={"max-size": f"{log_bytes // 1024}k", "max-file": "1"}),
        device_requests=devices,
    )


def _environment(box) -> dict[str, str]:
    threads = str(max(1, int(box.cpus)))
    return {
        "HOME": "/tmp",
        "MPLCONFIGDIR": "/tmp",
        "MPLBACKEND": "Agg",  # no screen: plt.show() does nothing, savefig works
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def launch(api, container_id: str, data: bytes, *, gpu: bool, sink: "_Stream | None" = None):
    """Attach stdin and output, start the container and send data; return the attach socket, whose
    stdin stays open (finish() closes it)."""
    sock = api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    if sink is not None:
        sink.socks.append(sock)  # closed with the sink, whatever happens next
    try:
        api.start(container_id)
    except docker.errors.APIError as exc:
        if gpu and GPU_UNSUPPORTED.search(str(exc)):
            raise SandboxUnavailable(
                "gpu_unavailable",
                f"this Docker engine has no GPU support (install the NVIDIA Container Toolkit): {exc}",
            ) from exc
        raise
    with contextlib.suppress(OSError):  # the container died before reading everything: its exit tells
        getattr(sock, "_sock", sock).sendall(data)
    return sock


def finish(sock, sink: _Stream, data: bytes = b"", *, close_stdin: bool = True) -> None:
    """Send the rest of stdin, close it, and read the container's output into sink from now on.

    close_stdin False for a parked pair: without StdinOnce, the engine ends the whole attach stream,
    output included, when its stdin ends; the harness reads one frame and needs no end of file."""
    raw = getattr(sock, "_sock", sock)
    if sock not in sink.socks:
        sink.socks.append(sock)
    try:
        if data:
            raw.sendall(data)
        if close_stdin:
            raw.shutdown(socket.SHUT_WR)  # end of stdin; the read side keeps carrying output
    except OSError:
        pass  # the container died before reading everything; its exit tells the story
    sink.attach(sock)


def frame(data: bytes) -> bytes:
    """One frame of a pooled container's stdin (sandbox/harness/warm.py): the length, then the bytes."""
    return len(data).to_bytes(8, "big") + data


def _start(api, container_id: str, archive: bytes, sink: _Stream, *, gpu: bool) -> None:
    """Attach stdin and output, start, stream the tar in, and close stdin."""
    finish(launch(api, container_id, archive, gpu=gpu, sink=sink), sink)


def create(
    api,
    image: str,
    box,
    *,
    settings: Settings,
    role: str,
    entry: list[str],
    workdir: str,
    network_mode: str,
    labels: dict[str, str],
    gpu_ids: list[str] | None = None,
    pooled_env: dict[str, str] | None = None,
    stdin_once: bool = True,
) -> str:
    """Create one sandbox container (H: role tests, S: role student); pooled_env makes it a pooled one.

    stdin_once False (a parked pair, grader.parked): stdin stays open when its first client leaves."""
    log_bytes = max(2 * settings.output_limit_bytes, 2**20)
    host = _host_config(api, box, network_mode=network_mode, gpu_ids=gpu_ids, log_bytes=log_bytes)
    env = {**_environment(box), "SANDBOX_WORKDIR": workdir, **(pooled_env or {})}
    command = ["python3", "-I", "-c", BOOT]
    if pooled_env is not None:
        command = ["python3", "-I", "-u", "-c", POOLED_BOOT]
    # With detach left False, stdin_open also sets StdinOnce: stdin closes after our tar.
    container = api.create_container(
        image,
        [*command, *entry],
        user="1000:1000" if role == "tests" else "1001:1001",
        working_dir="/tmp",
        environment=env,
        labels={**labels, "grader.role": role},
        host_config=host,
        stdin_open=True,
        detach=not stdin_once,  # docker-py sets StdinOnce for an attached (not detached) container
    )
    return container["Id"]


TESTS_ENTRY = ["tests_side.py", "/tmp/grade/spec.json"]


def student_entry(generation: int) -> list[str]:
    return ["student_side.py", "127.0.0.1", str(STUDENT_PORT + generation), "/tmp/student.json"]


def _fork_refusals(api, container_id: str) -> int:
    """How often the pids limit refused a fork, from the container's cgroup; 0 where we cannot see it."""
    try:
        pid = api.inspect_container(container_id)["State"]["Pid"]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            # The id check matters when the worker runs in a container: its /proc is not the host's.
            if controllers in ("pids", "") and container_id in path:
                base = "/sys/fs/cgroup/pids" if controllers else "/sys/fs/cgroup"
                rows = Path(base + path, "pids.events").read_text().splitlines()
                return int(dict(row.split() for row in rows).get("max", 0))
    except (OSError, ValueError, docker.errors.APIError, requests.RequestException):
        pass
    return 0


def _pids_hit(api, container_id: str, limit: int) -> bool:
    """Whether S is at its pids limit now, or was refused a fork before."""
    if _fork_refusals(api, container_id):
        return True
    try:
        stats = api.stats(container_id, stream=False, one_shot=True)
        return (stats.get("pids_stats") or {}).get("current", 0) >= limit
    except (docker.errors.APIError, requests.RequestException, AttributeError):
        return False


class _PidsWatch(threading.Thread):
    """Samples S's process count while H runs: a fork bomb pins it at the limit only for a while.

    A thread of its own because one stats call takes up to a second on Docker 20.10; in the wait
    loop it made every grading notice H's exit late. It watches the newest student container.
    """

    def __init__(self, api, students: list[str], limit: int):
        super().__init__(daemon=True, name=f"pids-{students[0][:12]}")
        self.api, self.students, self.limit = api, students, limit
        self.hit = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and not self.hit:
            try:
                self.hit = _pids_hit(self.api, self.students[-1], self.limit)
            except Exception:  # noqa: BLE001 - a sampler must never take the grading down
                return
            self.done.wait(0.5)


def _stop(api, tests_id: str, students: list[str], limit_s: float, pids: int) -> tuple[bool, bool]:
    """Wait for H to exit, then kill all; return whether the clock ran out and S hit its pids limit."""
    watch = _PidsWatch(api, students, pids)
    watch.start()
    timed_out = True
    try:
        api.wait(tests_id, timeout=max(limit_s, 0.1))
        timed_out = False
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        pass
    watch.done.set()
    # Once more before the kill, from the cgroup (cheap): a fork bomb's children often outlive the call.
    pids_hit = watch.hit or any(_fork_refusals(api, student_id) for student_id in list(students))
    for container_id in (tests_id, *students):
        _kill(api, container_id)
    return timed_out, pids_hit


def grade(
    assignment: Assignment,
    unpacked: Unpacked,
    *,
    settings: Settings,
    labels: dict[str, str] | None = None,
    gpu_ids: list[str] | None = None,
    scramble_args: bool = False,
) -> GradeResult:
    """Run the assignment's tests against the submission in a fresh sandbox and return the result.

    The sandbox is a pair from this process's warm pool (grader.pool) when there is one for the
    assignment, else started now; either way its containers serve this submission only, and are removed
    after the result is read (in the background: grader.engine.remove_later).

    scramble_args (for checking a reference solution only): the student side spoils every array argument
    after each call, so that tests which read their arguments after the call fail.
    """
    from grader import pool as warm_pool

    started = time.monotonic()
    box = assignment.sandbox
    image = images.for_assignment(assignment, settings=settings)
    harness_dir = config.HARNESS_DIR  # read at call time so tests can point it at a stand-in
    labels = {"grader.submission": uuid.uuid4().hex, **(labels or {}), "grader.sandbox": uuid.uuid4().hex}
    client = _client(settings)
    api = client.api
    created: list[str] = []
    tests_out = _Stream(HARNESS_OUTPUT_LIMIT, stdout_only=True)
    student_out = _Stream(settings.output_limit_bytes)
    sinks = (tests_out, student_out)
    pool = warm_pool.active() if not box.gpu else None
    if pool is not None:
        pool.begin()  # no pair starts in this process while a grading runs here
    recipe = None
    try:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(
                "image", f"sandbox image {image} is missing; build it with sandbox/build-offline.sh"
            ) from exc
        if pool is not None:
            recipe = warm_pool.Recipe.of(assignment, image=image, settings=settings, harness_dir=harness_dir)
        # A module of the upload named like a preloaded library would shadow it in a fresh sandbox only.
        pair = None
        if recipe is not None and not module_names(unpacked.files) & recipe.preloaded_tops:
            pair = pool.take(recipe.key, api)
        students: list[str] = []
        failures: list[BaseException] = []

        def start_student(generation: int) -> None:
            """A student container for H to connect to: the first, or a fresh one after a crash or hang."""
            if generation != len(students) or generation > MAX_RESTARTS:
                return  # one container per generation, and no more than the harness may ask for
            if students:
                _kill(api, students[-1])
            student_id = create(
                api,
                image,
                box,
                settings=settings,
                role="student",
                entry=student_entry(generation),
                workdir="/tmp/work",
                network_mode=f"container:{tests_id}",
                labels=labels,
                gpu_ids=gpu_ids,
            )
            created.append(student_id)
            students.append(student_id)
            try:
                _start(api, student_id, student_tar, student_out, gpu=box.gpu)
            except docker.errors.APIError:
                # S cannot join the network of an H that has already exited; H's own exit says why.
                if api.inspect_container(tests_id)["State"]["Running"]:
                    raise

        def on_line(line: bytes) -> None:
            if not line.startswith(RESULT_PREFIX.encode()) or b'"restart"' not in line:
                return
            try:
                event = json.loads(line[len(RESULT_PREFIX) :])
                if event.get("event") == "restart" and type(event.get("generation")) is int:
                    start_student(event["generation"])
            except (ValueError, AttributeError):
                return
            except Exception as exc:  # noqa: BLE001 - the engine failed: reported after the run, as ours
                failures.append(exc)

        tests_out.on_line = on_line
        student_tar = _student_tar(assignment, unpacked, harness_dir, scramble_args=scramble_args)
        spec = _spec_file(assignment, unpacked)
        if pair is not None:
            tests_id = pair.tests_id
            created += [pair.tests_id, pair.student_id]
            students.append(pair.student_id)
            # The submission's part only: the pair has the harness (and H the tests) already.
            close = not pair.parked
            finish(pair.tests_sock, tests_out, frame(build_tar(spec, uid=1000)), close_stdin=close)
            mine = _student_tar(assignment, unpacked, None, scramble_args=scramble_args)
            finish(pair.student_sock, student_out, frame(mine), close_stdin=close)
        else:
            tests_id = create(
                api,
                image,
                box,
                settings=settings,
                role="tests",
                entry=TESTS_ENTRY,
                workdir="/tmp/grade",
                network_mode="none",
                labels=labels,
                gpu_ids=gpu_ids,
            )
            created.append(tests_id)
            tests_tar = build_tar(_tests_files(assignment, harness_dir) | spec, uid=1000)
            _start(api, tests_id, tests_tar, tests_out, gpu=box.gpu)
            start_student(0)
        timed_out, pids_hit = _stop(api, tests_id, students, box.timeout_s + STARTUP_GRACE_S, box.pids)
        for sink in sinks:
            sink.close()
        if failures:
            raise SandboxUnavailable(
                "engine", f"the Docker engine failed to restart the student side: {failures[0]}"
            )
        # Only S's memory is the student's fault; H running out means the tests need a bigger limit.
        oom = any(api.inspect_container(student_id)["State"].get("OOMKilled") for student_id in students)
        tests_exit = sandbox_result.exit_description(api.inspect_container(tests_id)["State"])
        return sandbox_result.result(
            box,
            tests_out,
            student_out,
            timed_out=timed_out,
            oom=oom,
            pids_hit=pids_hit,
            tests_exit=tests_exit,
            duration_s=time.monotonic() - started,
        )
    except (docker.errors.APIError, requests.RequestException) as exc:
        raise SandboxUnavailable("engine", f"the Docker engine failed while grading: {exc}") from exc
    finally:
        # Off the result path; S first: it uses H's network namespace.
        remove_later(settings, list(reversed(created)))
        for sink in sinks:
            sink.close()
        client.close()
        if pool is not None:
            pool.end(recipe)  # the next pair for this assignment starts once no grading runs here

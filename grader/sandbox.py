"""Grade one submission in Docker: the only module that talks to the engine.

One sandbox is two containers. H runs the trusted harness and the hidden tests; S runs the student's
code. S joins H's network namespace, so the tests reach the student's code over loopback while neither
container has any other network. Files go in as a tar on stdin, never through bind mounts, so a worker
that itself runs in a container works. Both containers are removed whatever happens.
"""

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
from grader.engine import SandboxUnavailable, remove_orphans  # noqa: F401 - grader.sandbox's interface too
from grader.engine import client as _client
from grader.engine import kill as _kill
from grader.engine import remove as _remove
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
        for name in sorted(folders, key=lambda folder: folder.count("/")):
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


def _tests_tar(assignment: Assignment, unpacked: Unpacked, harness_dir: Path) -> bytes:
    files = _tree(harness_dir, "harness") | _tree(assignment.tests_dir, "grade/tests")
    if assignment.public_tests_dir.is_dir():
        files |= _tree(assignment.public_tests_dir, "grade/public_tests")
    files |= {f"grade/{name}": content for name, content in assignment.data_files().items()}
    files["grade/spec.json"] = json.dumps(_spec(assignment, unpacked)).encode()
    return build_tar(files, uid=1000)


def _student_tar(
    assignment: Assignment, unpacked: Unpacked, harness_dir: Path, *, scramble_args: bool
) -> bytes:
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
    ours = _tree(harness_dir, "harness") | {"student.json": json.dumps(config).encode()}
    return build_tar(ours | files, uid=1001)


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


def _start(api, container_id: str, archive: bytes, sink: _Stream, *, gpu: bool) -> None:
    """Attach stdin and output, start, stream the tar in, and close stdin."""
    sock = api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    sink.socks.append(sock)  # closed with the sink, whatever happens next
    raw = getattr(sock, "_sock", sock)
    try:
        api.start(container_id)
    except docker.errors.APIError as exc:
        if gpu and GPU_UNSUPPORTED.search(str(exc)):
            raise SandboxUnavailable(
                "gpu_unavailable",
                f"this Docker engine has no GPU support (install the NVIDIA Container Toolkit): {exc}",
            ) from exc
        raise
    try:
        raw.sendall(archive)
        raw.shutdown(socket.SHUT_WR)  # end of the tar; the read side keeps carrying output
    except OSError:
        pass  # the container died before reading everything; its exit tells the story
    sink.attach(sock)


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

    scramble_args (for checking a reference solution only): the student side spoils every array argument
    after each call, so that tests which read their arguments after the call fail.
    """
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
    try:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(
                "image", f"sandbox image {image} is missing; build it with sandbox/build-offline.sh"
            ) from exc

        def create(role: str, entry: list[str], user: str, workdir: str, network_mode: str) -> str:
            log_bytes = max(2 * settings.output_limit_bytes, 2**20)
            host = _host_config(api, box, network_mode=network_mode, gpu_ids=gpu_ids, log_bytes=log_bytes)
            env = {**_environment(box), "SANDBOX_WORKDIR": workdir}
            # With detach left False, stdin_open also sets StdinOnce: stdin closes after our tar.
            container = api.create_container(
                image,
                ["python3", "-I", "-c", BOOT, *entry],
                user=user,
                working_dir="/tmp",
                environment=env,
                labels={**labels, "grader.role": role},
                host_config=host,
                stdin_open=True,
            )
            created.append(container["Id"])
            return container["Id"]

        tests_id = create(
            "tests", ["tests_side.py", "/tmp/grade/spec.json"], "1000:1000", "/tmp/grade", "none"
        )
        students: list[str] = []
        student_tar = _student_tar(assignment, unpacked, harness_dir, scramble_args=scramble_args)
        failures: list[BaseException] = []

        def start_student(generation: int) -> None:
            """A student container for H to connect to: the first, or a fresh one after a crash or hang."""
            if generation != len(students) or generation > MAX_RESTARTS:
                return  # one container per generation, and no more than the harness may ask for
            if students:
                _kill(api, students[-1])
            args = ["student_side.py", "127.0.0.1", str(STUDENT_PORT + generation), "/tmp/student.json"]
            student_id = create("student", args, "1001:1001", "/tmp/work", f"container:{tests_id}")
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
        _start(api, tests_id, _tests_tar(assignment, unpacked, harness_dir), tests_out, gpu=box.gpu)
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
        for container_id in reversed(created):  # S first: it uses H's network namespace
            _remove(api, container_id)
        for sink in sinks:
            sink.close()
        client.close()

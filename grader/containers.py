"""One sandbox container's life: created locked down, started with its files streamed in on stdin, its
output read live as it runs, watched for its pids limit, and killed."""

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import docker
import requests
from docker.types import DeviceRequest, LogConfig, Ulimit
from docker.utils.socket import frames_iter

from grader.config import Settings
from grader.engine import SandboxUnavailable
from grader.engine import kill as _kill
from grader.sandbox_result import EVIDENCE

STUDENT_PORT = 7431  # the first student side's; each restart listens on the next port
STDOUT = 1  # the stream number of stdout in Docker's attach protocol

# The end of both commands below: run the harness named by argv[1] in this same interpreter (a second
# one would cost each container 12 ms; a pooled one keeps what it imported while it waited).
_RUN_HARNESS = """\
sys.argv = ["/tmp/harness/" + sys.argv[1], *sys.argv[2:]]
sys.dont_write_bytecode = True
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# Runs as the container's command: unpack the tar from stdin into /tmp, then run the harness.
# Docker would create a working_dir under /tmp owned by root, where the tar could not go; so the
# container starts in /tmp and BOOT moves into SANDBOX_WORKDIR once the files are there.
# -u because -I ignores PYTHONUNBUFFERED, and output still in a buffer is lost when we kill on timeout.
BOOT = (
    """\
import os, runpy, sys, tarfile
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
"""
    + _RUN_HARNESS
)

# A pooled container's command (grader.pool): unpack the first frame on stdin (what is the same for
# every submission: the harness, and on the tests side the tests), then run the harness, which imports
# ahead while it waits for the submission's frame. -I implies -P on Python 3.11: nothing of the
# working directory is on sys.path. Frames: sandbox/harness/warm.py.
POOLED_BOOT = (
    """\
import io, runpy, sys, tarfile
size = int.from_bytes(sys.stdin.buffer.read(8), "big")
with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read(size)), mode="r:") as archive:
    archive.extractall("/tmp")
"""
    + _RUN_HARNESS
)

# H's network. Docker's "none" network gives a namespace with loopback only, but sets it up by
# executing dockerd's binary twice per container (a prestart hook and an IPv6 switch): 0.14 core-s of
# the machine, half of what Docker costs a container (bench/README.md section 11). With networking
# disabled, runc gives H a fresh namespace with loopback only instead (S joins it either way). Docker
# then writes no /etc/hosts (the container's own layer shadows the image's with an empty file), so
# only an image whose labels say `localhost` resolves without it (our sandbox images: nss-myhostname)
# goes that way; any other keeps "none", whose /etc/hosts Docker writes.
LOCALHOST_LABEL = "grader.localhost"
OWN_LOOPBACK = "loopback"


def tests_network(image_labels: dict | None) -> str:
    """The network_mode for H in an image with these labels: OWN_LOOPBACK or "none"."""
    return OWN_LOOPBACK if (image_labels or {}).get(LOCALHOST_LABEL) == "nss-myhostname" else "none"


GPU_UNSUPPORTED = re.compile(r"could not select device driver|nvidia-container|unknown runtime", re.I)


@dataclass
class Stream:
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
        # With networking disabled Docker ignores the mode; an engine that did not would give "none".
        network_mode="none" if network_mode == OWN_LOOPBACK else network_mode,
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


def launch(api, container_id: str, data: bytes, *, gpu: bool, sink: Stream | None = None):
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


def finish(sock, sink: Stream, data: bytes = b"", *, close_stdin: bool = True) -> None:
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


def start(api, container_id: str, archive: bytes, sink: Stream, *, gpu: bool) -> None:
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
    command = ["python3", "-I", "-u", "-c", BOOT if pooled_env is None else POOLED_BOOT]
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
        network_disabled=network_mode == OWN_LOOPBACK,
        detach=not stdin_once,  # docker-py sets StdinOnce for an attached (not detached) container
    )
    return container["Id"]


TESTS_ENTRY = ["tests_side.py", "/tmp/grade/spec.json"]


def student_entry(generation: int) -> list[str]:
    return ["student_side.py", "127.0.0.1", str(STUDENT_PORT + generation), "/tmp/student.json"]


def _pids_cgroup(api, container_id: str) -> Path | None:
    """The folder of the container's pids cgroup (v1 or v2) as this process sees it; None where it
    cannot (the worker in a container of its own: its /proc is not the host's)."""
    try:
        pid = api.inspect_container(container_id)["State"]["Pid"]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers in ("pids", "") and container_id in path:
                return Path(("/sys/fs/cgroup/pids" if controllers else "/sys/fs/cgroup") + path)
    except (OSError, ValueError, docker.errors.APIError, requests.RequestException):
        pass
    return None


def _fork_refusals(folder: Path | None) -> int:
    """How often the pids limit refused a fork; 0 where the cgroup cannot be seen."""
    try:
        rows = (folder / "pids.events").read_text().splitlines() if folder else []
        return int(dict(row.split() for row in rows).get("max", 0))
    except (OSError, ValueError):
        return 0


def _pids_hit(api, container_id: str, limit: int, folder: Path | None) -> bool:
    """Whether S is at its pids limit now, or was refused a fork before."""
    if _fork_refusals(folder):
        return True
    try:
        return int((folder / "pids.current").read_text()) >= limit
    except (OSError, TypeError, ValueError):
        pass  # no cgroup to read: Docker's stats, about 30 ms of the engine's CPU and up to a second each
    try:
        stats = api.stats(container_id, stream=False, one_shot=True)
        return (stats.get("pids_stats") or {}).get("current", 0) >= limit
    except (docker.errors.APIError, requests.RequestException, AttributeError):
        return False


class _PidsWatch(threading.Thread):
    """Samples S's process count while H runs: a fork bomb pins it at the limit only for a while.

    A thread of its own because without a readable cgroup the count comes from Docker's stats, which
    take up to a second each (Docker 20.10): in the wait loop they made every grading notice H's exit
    late. It watches the newest student container.
    """

    def __init__(self, api, students: list[str], limit: int):
        super().__init__(daemon=True, name=f"pids-{students[0][:12]}")
        self.api, self.students, self.limit = api, students, limit
        self.folders: dict[str, Path | None] = {}  # each container's cgroup, once found
        self.hit = False
        self.done = threading.Event()

    def folder(self, container_id: str) -> Path | None:
        if self.folders.get(container_id) is None:  # not found yet (not started?): look again
            self.folders[container_id] = _pids_cgroup(self.api, container_id)
        return self.folders[container_id]

    def run(self) -> None:
        while not self.done.is_set() and not self.hit:
            newest = self.students[-1]
            try:
                self.hit = _pids_hit(self.api, newest, self.limit, self.folder(newest))
            except Exception:  # noqa: BLE001 - a sampler must never take the grading down
                return
            self.done.wait(0.5)


def stop(api, tests_id: str, students: list[str], limit_s: float, pids: int) -> tuple[bool, bool]:
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
    pids_hit = watch.hit or any(_fork_refusals(watch.folder(student_id)) for student_id in list(students))
    for container_id in (tests_id, *students):
        _kill(api, container_id)
    return timed_out, pids_hit

"""The Docker engine: a client that fails fast and clearly, and the housekeeping of our containers.

Used by grader.sandbox and grader.containers (grading) and grader.images (building assignment images).
"""

import atexit
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import requests

from grader.config import Settings

# Docker 20.10's API: device requests for GPUs (1.40) and one-shot stats (1.41). Newer engines accept it.
API_VERSION = "1.41"


class SandboxUnavailable(Exception):
    """Our problem, not the student's: the service retries it and never charges the submission."""

    def __init__(self, code: str, message: str):
        self.code = code  # engine, image, gpu_unavailable, harness
        self.message = message
        super().__init__(message)


def client(settings: Settings) -> docker.DockerClient:
    where = settings.docker_url or "the local socket (DOCKER_HOST)"
    # A fixed API version: asking the engine for its version would connect inside the constructor,
    # which leaks the connection when the engine is down.
    if settings.docker_url:
        engine = docker.DockerClient(base_url=settings.docker_url, version=API_VERSION)
    else:
        engine = docker.from_env(version=API_VERSION)
    if engine.api.base_url.startswith("http+docker://"):
        # A socket, not TCP: no proxy can apply, yet requests would look for one in os.environ on
        # every call (a grading makes about 13: 9 ms of the worker's CPU).
        engine.api.trust_env = False
    try:
        engine.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        engine.close()
        raise SandboxUnavailable("engine", f"cannot reach the Docker engine at {where}: {exc}") from exc
    return engine


def kill(api, container_id: str) -> None:
    try:
        api.kill(container_id)
    except docker.errors.APIError:
        pass  # already stopped


def remove(api, container_id: str) -> None:
    try:
        api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.APIError, requests.RequestException):
        pass  # left for remove_orphans, which finds it by its label


class _Remover(threading.Thread):
    """Removes containers in the background, so that a grading's result does not wait for it.

    One per process, with its own client; remove_orphans (the sweeper) stays the backstop for a process
    that dies with containers still queued here."""

    def __init__(self):
        super().__init__(daemon=True, name="container-remover")
        self.queue: queue.Queue = queue.Queue()

    def run(self) -> None:
        engines: dict[str, docker.DockerClient] = {}
        while True:
            settings, container_ids = self.queue.get()
            try:
                if settings.docker_url not in engines:
                    engines[settings.docker_url] = client(settings)
                for container_id in container_ids:
                    remove(engines[settings.docker_url].api, container_id)
            except Exception:  # noqa: BLE001, S110 - an engine that is down: the sweeper removes them later
                engines.pop(settings.docker_url, None)
            finally:
                self.queue.task_done()


_remover: _Remover | None = None
_remover_lock = threading.Lock()


def remove_later(settings: Settings, container_ids: list[str]) -> None:
    """Remove these containers (in order) in the background; wait_removed() waits for it."""
    global _remover
    if not container_ids:
        return
    with _remover_lock:
        # A forked child (a Celery pool process) has the object but not the thread: a new one.
        if _remover is None or not _remover.is_alive():
            _remover = _Remover()
            _remover.start()
            atexit.register(wait_removed)  # a command that ends leaves no container behind
    _remover.queue.put((settings, list(container_ids)))


def wait_removed() -> None:
    """Until every container handed to remove_later is gone (a command that exits, a test's check)."""
    if _remover is not None and _remover.is_alive():
        _remover.queue.join()


# An exited pooled container may still be read by its grading this long after it exits.
POOL_GRACE_S = 120


def _exited_before(api, container_id: str, seconds: float) -> bool:
    try:
        finished = api.inspect_container(container_id)["State"]["FinishedAt"]
    except (docker.errors.APIError, requests.RequestException, KeyError):
        return False
    try:
        when = datetime.fromisoformat(finished[:26].rstrip("Z") + "+00:00" if "." in finished else finished)
    except ValueError:
        return False
    return (datetime.now(UTC) - when).total_seconds() > seconds


def remove_orphans(
    *, settings: Settings, older_than_s: float = 0, submission_ids: set[str] | None = None
) -> int:
    """Remove grader-labelled containers left behind by a dead worker; return how many went."""
    engine = client(settings)
    removed = 0
    try:
        for info in engine.api.containers(all=True, filters={"label": "grader.submission"}):
            if "grader.pool" in info["Labels"]:
                # A pooled sandbox (grader.pool) is nobody's once it has exited: its worker died (its
                # stdin closed) or it was graded with and its remover did not get to it.
                if info.get("State") != "exited" or not _exited_before(engine.api, info["Id"], POOL_GRACE_S):
                    continue
            elif submission_ids is not None and info["Labels"].get("grader.submission") not in submission_ids:
                continue
            if time.time() - info["Created"] < older_than_s:
                continue
            try:
                engine.api.remove_container(info["Id"], force=True)
                removed += 1
            except docker.errors.NotFound:
                pass
    finally:
        engine.close()
    return removed


def memory_bytes(api, container_id: str) -> int:
    """The memory a running container uses now (its memory cgroup: what its limit counts); 0 if unknown.

    From the cgroup files when they are visible (cheap); else one stats call (up to a second)."""
    try:
        pid = api.inspect_container(container_id)["State"]["Pid"]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            # The id check matters when the worker runs in a container: its /proc is not the host's.
            if container_id not in path:
                continue
            if controllers == "memory":
                return int(Path("/sys/fs/cgroup/memory" + path, "memory.usage_in_bytes").read_text())
            if controllers == "":
                return int(Path("/sys/fs/cgroup" + path, "memory.current").read_text())
    except (OSError, ValueError, KeyError, docker.errors.APIError, requests.RequestException):
        pass
    try:
        stats = api.stats(container_id, stream=False, one_shot=True)
        return int((stats.get("memory_stats") or {}).get("usage") or 0)
    except (docker.errors.APIError, requests.RequestException, ValueError, TypeError):
        return 0

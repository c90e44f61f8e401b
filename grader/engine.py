"""The Docker engine: a client that fails fast and clearly, and the housekeeping of our containers.

Used by grader.sandbox (grading) and grader.images (building assignment images).
"""

import time

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


def remove_orphans(
    *, settings: Settings, older_than_s: float = 0, submission_ids: set[str] | None = None
) -> int:
    """Remove grader-labelled containers left behind by a dead worker; return how many went."""
    engine = client(settings)
    removed = 0
    try:
        for info in engine.api.containers(all=True, filters={"label": "grader.submission"}):
            if submission_ids is not None and info["Labels"].get("grader.submission") not in submission_ids:
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

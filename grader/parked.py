"""Parked sandboxes for `grader grade`: one pair left waiting for the next command of the same assignment.

`grader grade` is a new process each time, so it cannot hold a pool (grader.pool) in memory. With
cli_pool_idle_s > 0, after grading it starts a detached process (`python -m grader.parked`) that parks
one pair: a pooled pair (the same image, limits, tests and harness; torch already imported) whose stdin
stays open after that process leaves (Docker's StdinOnce off), its tests side named by the configuration.
The next command claims it by renaming that container: the engine renames a name once, so two commands
never claim the same pair. It attaches, sends the submission, and grades as in a fresh sandbox; the
containers are used once and removed. A pair nobody claims exits after cli_pool_idle_s (its harness stops
waiting) and is removed by the next park or by the sweeper (engine.remove_orphans).
"""

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import docker
import requests

from grader import config, engine, images, pool
from grader.assignments import load_assignment
from grader.config import Settings, get_settings

log = logging.getLogger(__name__)

PREFIX = "grader-parked-"


def name_for(key: str) -> str:
    return PREFIX + key[:40]


class Parking:
    """What sandbox.grade asks of a pool (take, want), for a command: claim the parked pair, park the next."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.taken = 0
        self.pid = os.getpid()
        self.closed = False
        self.spawned = False

    def take(self, key: str, api) -> pool.Pair | None:
        pair = claim(api, key, settings=self.settings)
        self.taken += pair is not None
        return pair

    def begin(self) -> None:
        pass

    def end(self, recipe: pool.Recipe | None) -> None:
        if recipe is not None:
            self.want(recipe)

    def want(self, recipe: pool.Recipe) -> None:
        """Park a pair for the next command, from a process of its own: this one ends now."""
        if self.spawned:
            return  # one per command (`assignments check` grades twice)
        # Through a shell that leaves it in the background: it outlives this command, and is nobody's child.
        script = '"$0" -m grader.parked "$1" </dev/null >/dev/null 2>&1 &'
        self.spawned = True
        subprocess.run(["sh", "-c", script, sys.executable, recipe.path], start_new_session=True, timeout=30)


def claim(api, key: str, *, settings: Settings) -> pool.Pair | None:
    """The parked pair for key, now this grading's alone; None when there is none (or it died)."""
    claimed = f"grader-claimed-{uuid.uuid4().hex}"
    try:
        api.rename(name_for(key), claimed)
    except docker.errors.NotFound:
        return None
    except (docker.errors.APIError, requests.RequestException):
        return None
    try:
        tests = api.inspect_container(claimed)
        label = tests["Config"]["Labels"]["grader.sandbox"]
        found = api.containers(filters={"label": [f"grader.sandbox={label}", "grader.role=student"]})
        student_id = found[0]["Id"] if found else ""
        pair = pool.Pair(key=key, tests_id=tests["Id"], student_id=student_id, parked=True)
        if not found or not pool.Pool._running(api, pair):
            pool.retire(settings, pair)
            return None
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        pair.tests_sock = api.attach_socket(pair.tests_id, params=params)
        pair.student_sock = api.attach_socket(pair.student_id, params=params)
    except (docker.errors.APIError, requests.RequestException, KeyError, IndexError):
        return None
    return pair


def park(settings: Settings, assignment_dir: Path) -> str | None:
    """Start a parked pair for the assignment unless one is there; the tests side's name, or None."""
    assignment = load_assignment(assignment_dir)
    if assignment.sandbox.gpu:
        return None
    image = images.for_assignment(assignment, settings=settings)
    recipe = pool.Recipe.of(assignment, image=image, settings=settings, harness_dir=config.HARNESS_DIR)
    client = engine.client(settings)
    try:
        api = client.api
        _remove_exited(settings, api)
        try:
            api.inspect_container(name_for(recipe.key))
            return None  # parked already
        except docker.errors.NotFound:
            pass
        pair = pool.start_pair(api, recipe, parked_idle_s=settings.cli_pool_idle_s)
        pair.close_sockets()  # stdin stays open: StdinOnce is off
        try:
            api.rename(pair.tests_id, name_for(recipe.key))  # only now can a command claim it
        except docker.errors.APIError:
            pool.retire(settings, pair)  # another command parked one first
            return None
        return name_for(recipe.key)
    finally:
        engine.wait_removed()
        client.close()


def _remove_exited(settings: Settings, api) -> None:
    """Parked pairs that waited out their time (or whose claimer died) and exited."""
    for info in api.containers(all=True, filters={"label": "grader.pool=parked", "status": "exited"}):
        engine.remove_later(settings, [info["Id"]])


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    try:
        park(get_settings(), Path(sys.argv[1]))
    except Exception:  # noqa: BLE001 - only a head start for the next command: never an error of this one
        log.exception("could not park a sandbox")

"""A warm pool of sandboxes per worker process: pairs started before their submission exists.

A pair is what grader.sandbox.grade starts for one grading, H (the tests side) and S (the student
side), with the same image, limits and network, but started ahead: their interpreters import pytest and
the libraries the tests import (torch, numpy) and then wait on stdin (sandbox/harness/warm.py). A
grading of the same assignment takes one, sends the submission's part (the spec; the student's files)
and runs as in a fresh sandbox. What it saves is the containers' start and those imports: for a
PyTorch homework, torch imported twice on the result path.

Isolation is that of a fresh sandbox. A pair serves one submission and is removed after it; before it,
nothing of any submission was in it and only the harness and the libraries ran in it
(tests/test_pool.py checks both). A pair is made for one configuration (Recipe.key: the image, the
limits, the tests, data and harness, what it preloads) and only a grading with exactly that one takes it.

Cost: the idle pairs' memory (idle_cost(); pool_memory_mb caps it), no CPU while they wait. Pairs are
started in the pool's thread after a grading's result, never on its path. A pair whose worker dies gets
end-of-file on stdin and exits; the sweeper removes such exited containers (engine.remove_orphans).
"""

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import docker
import requests

from grader import containers, engine, sandbox_files
from grader.assignments import Assignment, SandboxSpec
from grader.config import Settings

log = logging.getLogger(__name__)

POOL_LABEL = "grader.pool"  # its value: the owner, host and pid
UNAVAILABLE = (engine.SandboxUnavailable, docker.errors.DockerException, requests.RequestException)
# Seconds between the pool thread's rounds when nothing wakes it (to retire pairs idle too long).
ROUND_S = 30.0


@dataclass(frozen=True)
class Recipe:
    """Everything a pair is made of, for one assignment's configuration."""

    key: str
    slug: str
    path: str  # the assignment's folder
    image: str
    box: SandboxSpec
    settings: Settings
    tests_tar: bytes  # H's first frame: the harness, the tests, the data
    student_tar: bytes  # S's first frame: the harness
    tests_preload: tuple[str, ...]
    student_preload: tuple[str, ...]

    @classmethod
    def of(cls, assignment: Assignment, *, image: str, settings: Settings, harness_dir) -> "Recipe":
        tests_tar = sandbox_files.build_tar(sandbox_files.tests_files(assignment, harness_dir), uid=1000)
        student_tar = sandbox_files.build_tar(sandbox_files.tree(harness_dir, "harness"), uid=1001)
        tests_preload, student_preload = sandbox_files.preloads(assignment)
        digest = hashlib.sha256()
        for part in (
            image,
            assignment.sandbox.model_dump_json(),
            str(settings.output_limit_bytes),
            ",".join(tests_preload),
            ",".join(student_preload),
        ):
            digest.update(part.encode() + b"\0")
        digest.update(hashlib.sha256(tests_tar).digest() + hashlib.sha256(student_tar).digest())
        return cls(
            key=digest.hexdigest(),
            slug=assignment.slug,
            path=str(assignment.path.resolve()),
            image=image,
            box=assignment.sandbox,
            settings=settings,
            tests_tar=tests_tar,
            student_tar=student_tar,
            tests_preload=tuple(tests_preload),
            student_preload=tuple(student_preload),
        )

    @property
    def preloaded_tops(self) -> frozenset[str]:
        """The top-level names already imported in a pair: an upload's module of such a name would
        shadow the library only in a fresh sandbox, so such an upload is not given a pair."""
        return frozenset(name.partition(".")[0] for name in (*self.tests_preload, *self.student_preload))


@dataclass
class Pair:
    key: str
    tests_id: str
    student_id: str
    tests_sock: object = None  # attach sockets, stdin still open: the submission's frame goes there
    student_sock: object = None
    born: float = field(default_factory=time.monotonic)
    parked: bool = False  # a parked pair's stdin must stay open (containers.finish)

    def close_sockets(self) -> None:
        for sock in (self.student_sock, self.tests_sock):
            for layer in (getattr(sock, "_response", None), sock, getattr(sock, "_sock", None)):
                if layer is not None:
                    with contextlib.suppress(OSError, ValueError):
                        layer.close()


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def start_pair(api, recipe: Recipe, *, parked_idle_s: float = 0) -> Pair:
    """Start H and S for recipe, waiting for their submission; remove what started if anything fails.

    parked_idle_s > 0: a parked pair (grader.parked), whose stdin outlives this connection and which
    exits unclaimed after that many seconds."""
    parked = parked_idle_s > 0
    labels = {
        "grader.submission": "pool",
        POOL_LABEL: "parked" if parked else owner(),
        "grader.sandbox": os.urandom(16).hex(),
        "grader.pool.key": recipe.key,
    }
    common = {"settings": recipe.settings, "labels": labels, "stdin_once": not parked}
    idle = {"SANDBOX_IDLE_S": str(parked_idle_s)} if parked else {}
    pair = Pair(key=recipe.key, tests_id="", student_id="")
    try:
        pair.tests_id = containers.create(
            api,
            recipe.image,
            recipe.box,
            role="tests",
            entry=containers.TESTS_ENTRY,
            workdir="/tmp/grade",
            network_mode=containers.tests_network(api.inspect_image(recipe.image)["Config"].get("Labels")),
            pooled_env={"SANDBOX_POOLED": "1", "SANDBOX_PRELOAD": ",".join(recipe.tests_preload), **idle},
            **common,
        )
        pair.tests_sock = containers.launch(api, pair.tests_id, containers.frame(recipe.tests_tar), gpu=False)
        pair.student_id = containers.create(
            api,
            recipe.image,
            recipe.box,
            role="student",
            entry=containers.student_entry(0),
            workdir="/tmp/work",
            network_mode=f"container:{pair.tests_id}",
            pooled_env={"SANDBOX_POOLED": "1", "SANDBOX_PRELOAD": ",".join(recipe.student_preload), **idle},
            **common,
        )
        pair.student_sock = containers.launch(
            api, pair.student_id, containers.frame(recipe.student_tar), gpu=False
        )
    except BaseException:
        retire(recipe.settings, pair)
        raise
    return pair


def retire(settings: Settings, pair: Pair) -> None:
    """Close the pair's stdin (its harness exits) and remove its containers, S first."""
    pair.close_sockets()
    engine.remove_later(settings, [i for i in (pair.student_id, pair.tests_id) if i])


class Pool:
    """The warm pairs of this process, at most size of them (pool_size), for the assignments graded
    most recently: a round-robin share each, the most recent first."""

    def __init__(self, settings: Settings, *, size: int, memory_mb: int = 0, max_idle_s: float = 600):
        self.settings, self.size, self.memory_mb, self.max_idle_s = settings, size, memory_mb, max_idle_s
        self.idle: list[Pair] = []
        self.recipes: dict[str, Recipe] = {}
        self.used: dict[str, float] = {}  # key -> when a grading last wanted it
        self.taken = Counter()  # key -> pairs taken (hits)
        self.running = 0  # gradings in progress in this process (begin/end)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.closed = False
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, daemon=True, name="sandbox-pool")
        self.thread.start()

    # --- used by sandbox.grade ---

    def take(self, key: str, api) -> Pair | None:
        """A started pair for this configuration, now this grading's alone; None when there is none."""
        while True:
            with self.lock:
                pair = next((p for p in self.idle if p.key == key), None)
                if pair is None:
                    return None
                self.idle.remove(pair)
            if self._running(api, pair):
                self.taken[key] += 1
                return pair
            retire(self.settings, pair)  # it died waiting (the engine restarted, say): try the next one

    def begin(self) -> None:
        """A grading starts in this process: starting pairs would take CPU from it, so none starts
        until every grading here has ended (on 2 cores a refill slowed a running grading by seconds)."""
        with self.lock:
            self.running += 1

    def end(self, recipe: Recipe | None) -> None:
        with self.lock:
            self.running -= 1
        if recipe is not None:
            self.want(recipe)
        else:
            self.wake.set()

    def want(self, recipe: Recipe) -> None:
        """A grading of this configuration just finished: keep a pair of it ready for the next one."""
        with self.lock:
            self.recipes[recipe.key] = recipe
            self.used[recipe.key] = time.monotonic()
        self.wake.set()

    # --- the pool's thread ---

    def _targets(self, now: float) -> Counter:
        recent = sorted(
            (key for key, when in self.used.items() if now - when < self.max_idle_s),
            key=lambda key: -self.used[key],
        )[: self.size]
        targets = Counter()
        for i in range(self.size if recent else 0):
            targets[recent[i % len(recent)]] += 1
        return targets

    def _run(self) -> None:
        client = None
        while not self.closed:
            self.wake.wait(ROUND_S)
            self.wake.clear()
            try:
                if client is None:
                    client = engine.client(self.settings)
                self._round(client.api)
            except UNAVAILABLE as exc:
                log.warning("the sandbox pool could not start a pair: %s", exc)
                if client is not None:
                    client.close()
                client = None
                time.sleep(5)
            except Exception:  # noqa: BLE001 - the pool is an optimisation: gradings start their own pairs
                log.exception("the sandbox pool failed a round")
                time.sleep(5)
        if client is not None:
            client.close()

    def _round(self, api) -> None:
        """Retire pairs nobody wants any more, then start the ones missing, one at a time."""
        while not self.closed:
            with self.lock:
                now = time.monotonic()
                targets = self._targets(now)
                have = Counter(pair.key for pair in self.idle)
                extra = next((p for p in self.idle if have[p.key] > targets[p.key]), None)
                if extra is not None:
                    self.idle.remove(extra)
                missing = [key for key in targets if have[key] < targets[key]]
                for key in list(self.used):
                    if key not in targets and not have[key]:
                        self.used.pop(key)
                        self.recipes.pop(key, None)
            if extra is not None:
                retire(self.settings, extra)
                continue
            if not missing or self.running or not self._room(api):
                return  # (while gradings run, end() wakes this thread again)
            pair = start_pair(api, self.recipes[missing[0]])
            with self.lock:
                if self.closed:
                    retire(self.settings, pair)
                    return
                self.idle.append(pair)

    def _room(self, api) -> bool:
        """Whether one more pair fits in pool_memory_mb (0: no cap), judged by what the idle pairs use."""
        if not self.memory_mb:
            return True
        with self.lock:
            pairs = list(self.idle)
        if not pairs:
            return True
        used = [pair_memory(api, pair) for pair in pairs]
        return sum(used) + max(used) <= self.memory_mb * 2**20

    @staticmethod
    def _running(api, pair: Pair) -> bool:
        try:
            return all(api.inspect_container(i)["State"]["Running"] for i in (pair.tests_id, pair.student_id))
        except (docker.errors.APIError, requests.RequestException):
            return False

    # --- reporting and the end ---

    def idle_cost(self, api) -> dict:
        """What the idle pool holds now: pairs, and the memory of each (both containers), in MiB."""
        with self.lock:
            pairs = list(self.idle)
        memory = [pair_memory(api, pair) / 2**20 for pair in pairs]
        return {
            "pairs": len(pairs),
            "memory_mib": [round(m, 1) for m in memory],
            "total_mib": round(sum(memory), 1),
            "taken": sum(self.taken.values()),
        }

    def close(self) -> None:
        """Stop starting pairs and retire the idle ones."""
        with self.lock:
            self.closed = True
            pairs, self.idle = self.idle, []
        self.wake.set()
        self.thread.join(timeout=60)
        for pair in pairs:
            retire(self.settings, pair)


def pair_memory(api, pair: Pair) -> int:
    """Bytes the pair's two containers use now (their memory cgroups)."""
    return sum(engine.memory_bytes(api, i) for i in (pair.tests_id, pair.student_id))


_active: Pool | None = None


def active():
    """This process's pool, if one was started (not one inherited through a fork)."""
    pool = _active
    return pool if pool is not None and pool.pid == os.getpid() and not pool.closed else None


def start(settings: Settings) -> Pool | None:
    """Start this process's pool when the settings ask for one (pool_size > 0)."""
    global _active
    if settings.pool_size <= 0:
        return None
    if active() is None:
        size, memory_mb, idle_s = settings.pool_size, settings.pool_memory_mb, settings.pool_idle_s
        _active = Pool(settings, size=size, memory_mb=memory_mb, max_idle_s=idle_s)
    return _active


def install(chosen) -> None:
    """Make chosen (a Pool, or anything with take() and want(): grader.parked.Parking) this process's."""
    global _active
    _active = chosen


def stop() -> None:
    global _active
    pool, _active = active(), None
    if pool is not None:
        pool.close()

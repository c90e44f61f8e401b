"""The warm pool (grader.pool): pairs started ahead grade like fresh sandboxes and hold nothing of anyone.

A pooled pair has imported the tests' libraries and waits on stdin; these tests grade through it and
check what the submission could see of the container it ran in.
"""

import contextlib
import json
import os
import re
import time
from pathlib import Path

import docker
import pytest

from grader import engine, pool, sandbox
from grader.assignments import load_assignment
from grader.config import Settings
from grader.uploads import Unpacked

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leftover_containers")]

TAMPER = Path(__file__).parent / "fixtures" / "tampering" / "hw-tamper"

# What the student's code sees of its container when it is imported, printed as one JSON line, and a
# file it leaves behind in /tmp for a later submission to find.
SPY = """
import json, os, sys

def _processes():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as file:
                    found.append(file.read().replace(b"\\0", b" ").decode()[:200])
            except OSError:
                pass
    return found

def _network():
    import socket
    try:
        socket.create_connection(("10.255.255.1", 80), timeout=3)
        outside = "reached"
    except OSError as exc:
        outside = str(exc)
    return {
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "localhost": socket.gethostbyname("localhost"),
        "outside": outside,
    }

_SEEN = {
    "tmp": sorted(os.listdir("/tmp")),
    "work": sorted(os.listdir("/tmp/work")),
    "processes": _processes(),
    "student_modules": sorted(
        name for name, module in list(sys.modules.items())
        if (getattr(module, "__file__", None) or "").startswith("/tmp/work")
    ),
    # Docker mounts the container's own /etc/hostname, from a folder named by its id.
    "mounts": open("/proc/self/mountinfo").read(),
    "torch_loaded": "torch" in sys.modules,
    "left_in_environment": sorted(key for key in os.environ if key.startswith("LEFT_BY_")),
    "network": _network(),
}
print("SEEN " + json.dumps(_SEEN))
with open("/tmp/left-by-" + NAME, "w") as file:
    file.write("x")
os.environ["LEFT_BY_" + NAME] = "1"

def add(a, b):
    return a + b

def double(x):
    return 2 * x

def mean(xs):
    return sum(xs) / len(xs)
"""


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "var", output_limit_bytes=64 * 1024, pool_size=1)


@pytest.fixture
def warm(settings):
    """This process's pool, closed (and its idle pair removed) at the end."""
    started = pool.start(settings)
    yield started
    pool.stop()
    engine.wait_removed()


def ready(warm_pool: pool.Pool, key: str, timeout: float = 120) -> None:
    """Wait until the pool has a started pair for key, and its interpreters have had time to import."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        with warm_pool.lock:
            if any(pair.key == key for pair in warm_pool.idle):
                return
        time.sleep(0.2)
    raise AssertionError("the pool never started a pair")


def recipe_of(assignment, settings) -> pool.Recipe:
    image = sandbox.images.for_assignment(assignment, settings=settings)
    return pool.Recipe.of(assignment, image=image, settings=settings, harness_dir=sandbox.config.HARNESS_DIR)


def spy(name: str) -> Unpacked:
    return Unpacked(kind="zip", files={"submission.py": f"NAME = {name!r}\n{SPY}".encode()})


def seen(result) -> dict:
    line = next(line for line in result.output.splitlines() if line.startswith("SEEN "))
    return json.loads(line[len("SEEN ") :])


def container_of(seen_body: dict) -> str:
    return re.search(r"/containers/([0-9a-f]{64})/", seen_body["mounts"]).group(1)


def test_a_pooled_sandbox_has_run_nothing_before_its_submission(warm, settings):
    assignment = load_assignment(TAMPER)
    image = sandbox.images.for_assignment(assignment, settings=settings)
    recipe = pool.Recipe.of(
        assignment, image=image, settings=settings, harness_dir=sandbox.config.HARNESS_DIR
    )
    assert recipe.student_preload == ("numpy", "torch")  # the tests import both: S has them loaded ahead

    first = sandbox.grade(assignment, spy("a"), settings=settings)  # no pair yet: a fresh sandbox
    assert warm.taken[recipe.key] == 0
    results = [first]
    for name in ("b", "c"):
        ready(warm, recipe.key)
        results.append(sandbox.grade(assignment, spy(name), settings=settings))
    assert warm.taken[recipe.key] == 2  # b and c were graded in pooled pairs

    views = [seen(result) for result in results]
    for result, view in zip(results, views, strict=True):
        assert (result.score, result.max_score) == (15, 15), result
        # Only this submission's files, beside the harness and the student side's settings: nothing left
        # by a, b or anyone else, and no submission's module imported before this one.
        assert view["tmp"] == ["harness", "student.json", "work"], view
        assert view["work"] == ["submission.py"], view
        assert view["student_modules"] == ["submission"], view
        # One process: the harness that imports this submission; nothing else ever ran there.
        assert len(view["processes"]) == 1, view
        assert view["left_in_environment"] == [], view
        # Fresh or pooled, H's namespace (which S joins) has loopback only, and localhost resolves.
        assert view["network"]["interfaces"] == ["lo"] and view["network"]["localhost"] == "127.0.0.1", view
        assert "Network is unreachable" in view["network"]["outside"], view
    # The pooled ones had torch loaded before the submission came; the fresh one did not.
    assert [view["torch_loaded"] for view in views] == [False, True, True]
    # Three submissions, three student containers, none of them used twice.
    assert len({container_of(view) for view in views}) == 3


def test_an_upload_that_shadows_a_preloaded_library_gets_a_fresh_sandbox(warm, settings):
    assignment = load_assignment(TAMPER)
    image = sandbox.images.for_assignment(assignment, settings=settings)
    recipe = pool.Recipe.of(
        assignment, image=image, settings=settings, harness_dir=sandbox.config.HARNESS_DIR
    )
    honest = (TAMPER / "solution" / "submission.py").read_bytes()
    sandbox.grade(assignment, Unpacked(kind="zip", files={"submission.py": honest}), settings=settings)
    ready(warm, recipe.key)
    # A numpy.py of the student's own shadows numpy in a fresh sandbox; a pooled one has the real one.
    files = {"submission.py": honest, "numpy.py": b"raise ImportError('the student shadowed numpy')\n"}
    result = sandbox.grade(assignment, Unpacked(kind="zip", files=files), settings=settings)
    assert result.score < 15, result  # the tests' numpy is the student's, as in one process
    assert warm.taken[recipe.key] == 0


def test_an_idle_pair_costs_memory_only_and_goes_when_the_pool_stops(warm, settings, docker_client):
    assignment = load_assignment(TAMPER)
    honest = (TAMPER / "solution" / "submission.py").read_bytes()
    sandbox.grade(assignment, Unpacked(kind="zip", files={"submission.py": honest}), settings=settings)
    image = sandbox.images.for_assignment(assignment, settings=settings)
    key = pool.Recipe.of(
        assignment, image=image, settings=settings, harness_dir=sandbox.config.HARNESS_DIR
    ).key
    ready(warm, key)
    give_up = time.monotonic() + 90
    while (cost := warm.idle_cost(docker_client.api))["total_mib"] < 150 and time.monotonic() < give_up:
        time.sleep(1)  # the interpreters are still importing torch
    assert cost["pairs"] == 1
    # Two interpreters with torch (and pytest on the tests side), under the 2 GiB of the two limits.
    assert 150 < cost["total_mib"] < 2048, cost
    ids = [warm.idle[0].tests_id, warm.idle[0].student_id]
    pool.stop()
    engine.wait_removed()
    left = [c["Id"] for c in docker_client.api.containers(all=True) if c["Id"] in ids]
    assert left == []


# --- parked pairs: `grader grade` leaves one for the next command (grader.parked) ---


def parked_containers(docker_client, key: str) -> list[dict]:
    return docker_client.api.containers(all=True, filters={"label": f"grader.pool.key={key}"})


@pytest.fixture
def no_parking(docker_client):
    """Whatever a test parked (also from the detached process, which the other fixture cannot see) goes."""
    yield
    pool.install(None)
    engine.wait_removed()
    for info in docker_client.api.containers(all=True, filters={"label": "grader.pool=parked"}):
        if info["Labels"].get("grader.pool.key") in PARKED_KEYS:
            with contextlib.suppress(docker.errors.APIError):  # being removed already
                docker_client.api.remove_container(info["Id"], force=True)


PARKED_KEYS: set[str] = set()


def test_the_next_command_claims_the_parked_pair_and_it_is_fresh(tmp_path, docker_client, no_parking):
    from grader import cli, parked

    settings = Settings(data_dir=tmp_path / "var", output_limit_bytes=64 * 1024, cli_pool_idle_s=120)
    assignment = load_assignment(TAMPER)
    key = recipe_of(assignment, settings).key
    PARKED_KEYS.add(key)
    assert parked.park(settings, TAMPER) == parked.name_for(key)  # what a command's detached process does
    assert parked.park(settings, TAMPER) is None  # one per configuration

    parking = parked.Parking(settings)
    parking.want = lambda recipe: None  # this test parks no more
    pool.install(parking)
    first = sandbox.grade(assignment, spy("x"), settings=settings)
    assert parking.taken == 1, "the parked pair was not claimed"
    view = seen(first)
    assert (first.score, view["tmp"], view["work"], view["torch_loaded"]) == (
        15,
        ["harness", "student.json", "work"],
        ["submission.py"],
        True,
    ), view
    assert len(view["processes"]) == 1, view
    # Claimed means renamed: nobody else can take it, and the next grading starts a fresh sandbox.
    assert parked.claim(docker_client.api, key, settings=settings) is None
    second = sandbox.grade(assignment, spy("y"), settings=settings)
    assert parking.taken == 1 and seen(second)["torch_loaded"] is False
    engine.wait_removed()
    assert parked_containers(docker_client, key) == []

    # Through the command's own path: `grader grade` parks one for the next (a detached process).
    monkeypatch_env = {"GRADER_CLI_POOL_IDLE_S": "120", "GRADER_OUTPUT_LIMIT_BYTES": str(64 * 1024)}
    old = {k: os.environ.get(k) for k in monkeypatch_env}
    os.environ.update(monkeypatch_env)
    cli.get_settings.cache_clear()
    try:
        pool.install(None)
        cli.grade_path(TAMPER, TAMPER / "solution")
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up and len(parked_containers(docker_client, key)) < 2:
            time.sleep(0.5)
        assert len(parked_containers(docker_client, key)) == 2, "grader grade parked no pair"
    finally:
        for name, value in old.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
        cli.get_settings.cache_clear()


def test_a_parked_pair_nobody_claims_exits_by_itself(tmp_path, docker_client, no_parking):
    from grader import parked

    settings = Settings(data_dir=tmp_path / "var", output_limit_bytes=64 * 1024, cli_pool_idle_s=3)
    key = recipe_of(load_assignment(TAMPER), settings).key
    PARKED_KEYS.add(key)
    parked.park(settings, TAMPER)
    give_up = time.monotonic() + 90
    while time.monotonic() < give_up:
        states = {info["State"] for info in parked_containers(docker_client, key)}
        if states == {"exited"}:
            break
        time.sleep(1)
    assert states == {"exited"}, states
    assert parked.claim(docker_client.api, key, settings=settings) is None  # an exited pair is not used

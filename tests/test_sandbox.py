"""Grading in real containers: lifecycle and limits against a stand-in harness, then end to end."""

import gc
import io
import time
import warnings
from pathlib import Path

import docker
import pytest

from grader import config, containers, engine, sandbox
from grader.assignments import load_assignment
from grader.config import Settings
from grader.sandbox import SandboxUnavailable
from grader.uploads import Unpacked

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leftover_containers")]

FAKE_HARNESS = Path(__file__).parent / "fixtures" / "fake_harness"
REAL_HARNESS = config.HARNESS_DIR
MARKER = "HIDDEN-MARKER-7f3a9c"
COURSE = 'code = "DL"\ntitle = "Deep Learning"\nterm = "Fall 2026"\n'
ASSIGNMENT = """title = "Sandbox test"
released = 2026-09-01T09:00:00Z
due = 2026-09-15T23:59:00Z
weight = 1
[sandbox]
timeout_s = {timeout_s}
memory_mb = {memory_mb}
pids = {pids}
disk_mb = {disk_mb}
cpus = 1
gpu = {gpu}
"""
HIDDEN_TEST = f'''
"""{MARKER}"""
def test_hidden():
    assert True
'''


def make_assignment(tmp_path: Path, tests: dict[str, str] | None = None, *, gpu=False, **limits):
    """A tiny assignment folder in tmp_path, loaded through the public format."""
    values = {"timeout_s": 10, "memory_mb": 256, "pids": 64, "disk_mb": 16, **limits}
    (tmp_path / "course.toml").write_text(COURSE)
    folder = tmp_path / "hw-sandbox"
    (folder / "tests").mkdir(parents=True)
    for name, source in (tests or {"test_hidden.py": HIDDEN_TEST}).items():
        (folder / "tests" / name).write_text(source)
    (folder / "solution").mkdir()
    (folder / "solution" / "submission.py").write_text("")
    (folder / "assignment.toml").write_text(ASSIGNMENT.format(gpu=str(gpu).lower(), **values))
    return load_assignment(folder)


def submission(source: str, **extra: bytes) -> Unpacked:
    return Unpacked(kind="zip", files={"submission.py": source.encode(), **extra})


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "var", output_limit_bytes=16 * 1024)


@pytest.fixture
def fake_harness(monkeypatch):
    monkeypatch.setattr(config, "HARNESS_DIR", FAKE_HARNESS)


def by_name(result):
    return {test.name: test for test in result.tests}


# --- lifecycle and limits, against the stand-in harness in tests/fixtures/fake_harness ---


def test_files_go_in_and_results_come_out(fake_harness, tmp_path, settings):
    assignment = make_assignment(tmp_path)
    files = {"helpers/data.txt": b"42"}
    code = "print(open('helpers/data.txt').read(), __import__('os').getuid(), __import__('os').getcwd())"
    result = sandbox.grade(assignment, submission(code, **files), settings=settings, labels={"grader.x": "1"})
    assert result.status == "graded" and result.error is None
    assert (result.score, result.max_score) == (3, 3)
    assert [t.name for t in result.tests] == ["test_setup", "test_student"]
    assert result.output == "42 1001 /tmp/work\n"
    seen = by_name(result)["test_setup"].message
    assert '"tests": ["test_hidden.py"]' in seen and '"uid": 1000' in seen and '"cwd": "/tmp/grade"' in seen


def test_an_infinite_loop_times_out_and_keeps_earlier_points(fake_harness, tmp_path, settings):
    started = time.monotonic()
    result = sandbox.grade(
        make_assignment(tmp_path, timeout_s=5), submission("while True: pass"), settings=settings
    )
    assert time.monotonic() - started < 5 + sandbox.STARTUP_GRACE_S + 5
    assert result.status == "graded" and result.score == 1
    assert result.error.code == "timeout" and result.error.message == "timed out after 5 s"
    assert by_name(result)["test_student"].outcome == "timeout"


def test_a_memory_bomb_is_reported_as_memory(fake_harness, tmp_path, settings):
    code = "import numpy as np\nx = np.ones(2**30)\n"
    result = sandbox.grade(make_assignment(tmp_path, memory_mb=256), submission(code), settings=settings)
    assert result.error.code == "memory"
    assert result.error.message == "your code used more than 256 MiB of memory (the limit)"
    assert result.score == 1  # the test that did not need the student's code keeps its point


def test_a_fork_bomb_hits_the_pids_limit_and_the_host_is_fine(
    fake_harness, tmp_path, settings, docker_client
):
    code = "import os\nwhile True:\n    os.fork()\n"
    result = sandbox.grade(make_assignment(tmp_path, pids=64), submission(code), settings=settings)
    assert result.error.code == "pids" and "(limit 64)" in result.error.message
    # The host can still start processes and the engine still answers.
    assert docker_client.ping()


def test_an_output_flood_is_cut_keeping_the_head(fake_harness, tmp_path, settings):
    code = "print('FIRST LINE')\nwhile True:\n    print('y' * 1000)\n"
    result = sandbox.grade(make_assignment(tmp_path, timeout_s=5), submission(code), settings=settings)
    assert result.output_truncated and len(result.output.encode()) == 16 * 1024
    assert result.output.startswith("FIRST LINE\n")
    assert "output truncated at 16 KiB" in result.error.message


def test_filling_the_disk_is_reported_as_disk(fake_harness, tmp_path, settings):
    code = "open('/tmp/big', 'wb').write(b'0' * 64 * 2**20)\n"
    result = sandbox.grade(make_assignment(tmp_path, disk_mb=16), submission(code), settings=settings)
    assert result.error.code == "disk"
    assert result.error.message == "your code wrote more than 16 MiB to disk (the limit)"


@pytest.mark.parametrize(
    "host, expected", [("10.255.255.1", "Network is unreachable"), ("127.0.0.2", "Connection refused")]
)
def test_there_is_no_network_beyond_the_sandbox(fake_harness, tmp_path, settings, host, expected):
    code = f"import socket\nsocket.create_connection(('{host}', 80), timeout=3)\n"
    result = sandbox.grade(make_assignment(tmp_path), submission(code), settings=settings)
    assert expected in by_name(result)["test_student"].message
    assert result.error is None  # the student's own failure, in the test's message


def test_the_student_cannot_see_the_hidden_tests(fake_harness, tmp_path, settings):
    result = sandbox.grade(make_assignment(tmp_path), submission(SNOOP), settings=settings)
    assert "searched" in result.output
    assert MARKER not in result.output + " ".join(t.message for t in result.tests)


def test_killing_pid_1_or_the_parent_only_ends_the_student_side(fake_harness, tmp_path, settings):
    code = (
        "import os, signal\nos.kill(1, signal.SIGKILL)\nos.kill(os.getppid(), signal.SIGKILL)\nos._exit(0)\n"
    )
    result = sandbox.grade(make_assignment(tmp_path), submission(code), settings=settings)
    assert result.status == "graded" and result.score == 1
    assert by_name(result)["test_student"].outcome == "error"


def test_a_harness_that_reports_nothing_is_our_problem(fake_harness, tmp_path, settings):
    assignment = make_assignment(tmp_path, {"test_a.py": "", "NO_DONE": ""})
    with pytest.raises(SandboxUnavailable) as caught:
        sandbox.grade(assignment, submission(""), settings=settings)
    assert caught.value.code == "harness" and "exit status 3" in caught.value.message


def test_the_local_engine_is_asked_without_looking_for_proxies(settings, monkeypatch):
    # requests would read the proxy variables on each of a grading's dozen calls; none applies to a socket.
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    client = engine.client(settings)
    try:
        assert client.api.trust_env is False and client.ping()
    finally:
        client.close()


def test_a_missing_image_is_our_problem(fake_harness, tmp_path, settings):
    settings.sandbox_image = "grader-sandbox:does-not-exist"
    with pytest.raises(SandboxUnavailable) as caught:
        sandbox.grade(make_assignment(tmp_path), submission(""), settings=settings)
    assert caught.value.code == "image"
    assert caught.value.message == (
        "sandbox image grader-sandbox:does-not-exist is missing; build it with sandbox/build-offline.sh"
    )


def test_an_unreachable_engine_is_our_problem(fake_harness, tmp_path, settings):
    settings.docker_url = f"unix://{tmp_path}/no-docker.sock"
    with warnings.catch_warnings():
        # docker-py's unix connect() drops its socket unclosed when connect fails; collect it here.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            sandbox.grade(make_assignment(tmp_path), submission(""), settings=settings)
        except SandboxUnavailable as exc:
            code, message = exc.code, exc.message
        gc.collect()
    assert code == "engine" and "cannot reach the Docker engine at unix://" in message


@pytest.mark.parametrize("gpu_ids, device_ids, count", [(None, None, -1), (["0"], ["0"], 0)])
def test_gpu_assignments_request_gpus_and_fail_fast_without_support(
    fake_harness, tmp_path, settings, monkeypatch, gpu_ids, device_ids, count
):
    settings.sandbox_gpu_image = settings.sandbox_image  # this engine has no GPU image either
    requests = []
    real_start = docker.APIClient.start

    def start(api, container, *args, **kwargs):
        requests.append(api.inspect_container(container)["HostConfig"]["DeviceRequests"])
        return real_start(api, container, *args, **kwargs)

    monkeypatch.setattr(docker.APIClient, "start", start)
    started = time.monotonic()
    with pytest.raises(SandboxUnavailable) as caught:
        sandbox.grade(make_assignment(tmp_path, gpu=True), submission(""), settings=settings, gpu_ids=gpu_ids)
    assert time.monotonic() - started < 10
    assert caught.value.code == "gpu_unavailable"
    assert (
        "this Docker engine has no GPU support (install the NVIDIA Container Toolkit)" in caught.value.message
    )
    (request,) = requests[0]
    assert request["Capabilities"] == [["gpu"]]
    assert (request["DeviceIDs"] or None) == device_ids and request["Count"] == count


def test_remove_orphans_finds_containers_by_label(docker_client, settings):
    for submission_id in ("orphan-1", "orphan-2"):
        docker_client.containers.create(settings.sandbox_image, labels={"grader.submission": submission_id})
    # Always by id here: other suites may be grading on this engine right now.
    both = {"orphan-1", "orphan-2"}
    assert sandbox.remove_orphans(settings=settings, older_than_s=3600, submission_ids=both) == 0
    assert sandbox.remove_orphans(settings=settings, submission_ids={"orphan-1"}) == 1
    assert sandbox.remove_orphans(settings=settings, submission_ids=both) == 1


# Looks for the marker wherever the student's process could read it: files, other processes, env.
# /usr is only the image; /proc/*/fd is skipped because opening a pipe there blocks.
SNOOP = f"""
import os
marker = {MARKER[:6]!r} + {MARKER[6:]!r}
found = [key for key, value in os.environ.items() if marker in value]
for root, dirs, files in os.walk("/"):
    if root in ("/usr", "/sys", "/dev") or os.path.basename(root) in ("fd", "fdinfo", "task", "map_files"):
        dirs[:] = []
        continue
    if root.startswith("/proc/") and root.count("/") > 3:
        dirs[:] = []
    for name in files:
        path = os.path.join(root, name)
        try:
            with open(path, "rb") as handle:
                if marker.encode() in handle.read(1 << 16):
                    found.append(path)
        except OSError:
            pass
print("searched; found:", found)
"""


# --- end to end, with the real harness in sandbox/harness ---

E2E_TESTS = f'''
"""{MARKER}: the hidden tests."""
import pytest

import submission


@pytest.mark.points(2)
def test_add():
    assert submission.add(2, 3) == 5


@pytest.mark.points(3)
def test_mul():
    assert submission.mul(2, 3) == 6
'''
HONEST = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"


def grade_real(tmp_path, settings, source: str, **limits):
    assignment = make_assignment(tmp_path, {"test_e2e.py": E2E_TESTS}, **limits)
    result = sandbox.grade(assignment, submission(source), settings=settings)
    everything = result.output + " ".join(t.message for t in result.tests) + str(result.error)
    assert MARKER not in everything  # the hidden tests' text never reaches the student
    return result, {name.rpartition("::")[2]: test for name, test in by_name(result).items()}


def test_e2e_an_honest_submission_gets_full_marks(tmp_path, settings):
    result, tests = grade_real(tmp_path, settings, HONEST)
    assert result.status == "graded" and result.error is None, result
    assert (result.score, result.max_score) == (5, 5) and list(tests) == ["test_add", "test_mul"]


def test_e2e_a_partly_wrong_submission_gets_the_right_points(tmp_path, settings):
    result, tests = grade_real(tmp_path, settings, HONEST.replace("a * b", "a + b"))
    assert (result.score, result.max_score) == (2, 5)
    assert tests["test_add"].outcome == "passed" and tests["test_mul"].outcome == "failed"


def test_e2e_an_infinite_loop_times_out_keeping_earlier_points(tmp_path, settings):
    source = HONEST.replace("return a * b", "while True:\n        pass")
    started = time.monotonic()
    result, tests = grade_real(tmp_path, settings, source, timeout_s=8)
    assert time.monotonic() - started < 8 + sandbox.STARTUP_GRACE_S + 2
    assert result.status == "graded" and result.score == 2
    assert tests["test_mul"].outcome == "timeout"
    assert result.error.code == "timeout" and result.error.message == "timed out after 8 s"


@pytest.mark.parametrize(
    "body, code",
    [
        ("import numpy as np\n    np.ones(2**30)", "memory"),
        ("import os\n    while True:\n        os.fork()", "pids"),
        ("open('/tmp/big', 'wb').write(b'0' * 64 * 2**20)", "disk"),
    ],
    ids=["memory", "pids", "disk"],
)
def test_e2e_a_limit_hit_in_a_call_says_which(tmp_path, settings, body, code):
    source = HONEST.replace("return a * b", f"{body}\n    return a * b")
    result, tests = grade_real(tmp_path, settings, source, memory_mb=256, pids=64, disk_mb=16)
    assert result.status == "graded" and result.error.code == code, result
    assert tests["test_add"].points == 2  # the test before the bomb keeps its points


def test_e2e_an_output_flood_is_capped(tmp_path, settings):
    source = "print('HEAD')\nfor _ in range(200_000):\n    print('z' * 100)\n" + HONEST
    result, _ = grade_real(tmp_path, settings, source)
    assert result.output.startswith("HEAD\n") and result.output_truncated
    assert len(result.output.encode()) <= settings.output_limit_bytes
    assert result.score == 5 and result.error.code == "output"
    assert result.error.message == "output truncated at 16 KiB"


@pytest.mark.parametrize("host", ["10.255.255.1", "127.0.0.2"])
def test_e2e_network_attempts_fail_with_the_students_own_error(tmp_path, settings, host):
    connect = f"import socket\n    socket.create_connection(('{host}', 80), timeout=3)"
    result, tests = grade_real(
        tmp_path, settings, HONEST.replace("return a + b", f"{connect}\n    return a + b")
    )
    message = tests["test_add"].message
    assert "Network is unreachable" in message or "Connection refused" in message, message
    assert tests["test_mul"].outcome == "passed"


def test_e2e_the_student_cannot_find_the_hidden_tests(tmp_path, settings):
    result, _ = grade_real(tmp_path, settings, SNOOP + HONEST)
    assert "searched; found: []" in result.output and result.score == 5


@pytest.mark.parametrize(
    "body", ["os.kill(1, signal.SIGKILL)", "os.kill(os.getppid(), signal.SIGKILL)", "os._exit(0)"]
)
def test_e2e_killing_things_only_ends_the_student_side(tmp_path, settings, body):
    source = "import os, signal\n" + HONEST.replace("return a * b", f"{body}\n    return a * b")
    result, tests = grade_real(tmp_path, settings, source)
    assert result.status == "graded" and tests["test_add"].points == 2


def test_the_pids_sampler_reads_the_cgroup_and_asks_docker_only_without_one(tmp_path):
    class Api:
        stats_calls = 0

        def stats(self, container_id, **options):
            Api.stats_calls += 1
            return {"pids_stats": {"current": 64}}

    (tmp_path / "pids.current").write_text("12\n")
    (tmp_path / "pids.events").write_text("max 0\n")
    assert not containers._pids_hit(Api(), "c", 64, tmp_path)
    (tmp_path / "pids.current").write_text("64\n")
    assert containers._pids_hit(Api(), "c", 64, tmp_path)
    (tmp_path / "pids.current").write_text("3\n")
    (tmp_path / "pids.events").write_text("max 5\n")  # forks refused earlier: the bomb went quiet since
    assert containers._pids_hit(Api(), "c", 64, tmp_path)
    assert Api.stats_calls == 0
    assert containers._pids_hit(Api(), "c", 64, None)  # no cgroup to read: Docker's count
    assert Api.stats_calls == 1


LOOPBACK_PROBE = """
import os, socket


def network():
    addresses = {info[4][0] for info in socket.getaddrinfo("localhost", 80)}
    return sorted(addresses), sorted(os.listdir("/sys/class/net"))
"""
LOOPBACK_TESTS = (
    LOOPBACK_PROBE.replace("def network", "def here")
    + """
from submission import network


def test_both_sides_resolve_localhost_and_have_loopback_only():
    assert list(network()) == list(here())
    addresses, interfaces = here()
    assert "127.0.0.1" in addresses and interfaces == ["lo"]
"""
)


@pytest.fixture
def unlabelled_image(docker_client):
    """The sandbox image as an instructor's own image would be: without our localhost label."""
    dockerfile = f"FROM {Settings().sandbox_image}\nLABEL {containers.LOCALHOST_LABEL}=\n"
    tag = "grader-test:unlabelled"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True)
    yield tag
    engine.wait_removed()  # the grading's containers still use it
    docker_client.images.remove(tag)  # the tag only: another tag may name the same image


@pytest.mark.parametrize("labelled", [True, False], ids=["own-loopback", "docker-none"])
def test_localhost_resolves_on_both_sides_with_either_network(
    tmp_path, settings, monkeypatch, request, labelled
):
    # Our images go without Docker's network (H's own loopback, /etc/hosts left empty: nss-myhostname
    # resolves localhost); any other image keeps Docker's "none" network and its /etc/hosts.
    if not labelled:
        settings.sandbox_image = request.getfixturevalue("unlabelled_image")
    modes, create = [], containers.create

    def recording(*args, **kwargs):
        modes.append(kwargs["network_mode"])
        return create(*args, **kwargs)

    monkeypatch.setattr(containers, "create", recording)
    assignment = make_assignment(tmp_path, {"test_loopback.py": LOOPBACK_TESTS})
    result = sandbox.grade(assignment, submission(LOOPBACK_PROBE), settings=settings)
    assert result.score == 1, result
    assert modes[0] == (containers.OWN_LOOPBACK if labelled else "none")
    assert modes[1].startswith("container:")


def test_only_a_labelled_image_goes_without_dockers_network():
    assert containers.tests_network({containers.LOCALHOST_LABEL: "nss-myhostname"}) == containers.OWN_LOOPBACK
    for labels in (None, {}, {containers.LOCALHOST_LABEL: ""}, {"other": "nss-myhostname"}):
        assert containers.tests_network(labels) == "none"

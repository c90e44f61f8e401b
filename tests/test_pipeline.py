"""The service end to end: real API and worker processes, PostgreSQL, Redis, Docker containers.

Every accepted upload is graded exactly once, whatever dies along the way.
"""

import io
import re
import signal
import subprocess
import time
import zipfile

import httpx
import pytest

from tests.fixtures.live import Service, wait_for
from tests.fixtures.services import REDIS_START, redis_up

pytestmark = pytest.mark.docker
PASSES = io.BytesIO()
with zipfile.ZipFile(PASSES, "w") as _archive:
    _archive.writestr("submission.py", "def add(a, b):\n    return a + b\n")
PASSES = PASSES.getvalue()


def submit(service: Service, token: str, assignment: str = "add-one", **fields: str) -> str:
    response = httpx.post(
        f"{service.url}/api/submissions",
        headers={"Authorization": f"Bearer {token}"},
        data={"assignment": assignment, **fields},
        files={"file": ("hw.zip", PASSES)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def fetch(service: Service, token: str, submission_id: str) -> dict:
    response = httpx.get(
        f"{service.url}/api/submissions/{submission_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def containers_of(docker_client, submission_id: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"grader.submission={submission_id}"})


def test_an_upload_is_graded_in_a_container_and_read_back(service, docker_client):
    token = service.run("token", "create", "--student", "s1")
    instructor = service.run("token", "create", "--instructor", "--login", "prof")
    service.start_api()
    service.start("worker", "--queues", "cpu", log="worker.log")
    submission_id = submit(service, token)
    body = wait_for(
        lambda: (b := fetch(service, token, submission_id))["status"] == "graded" and b,
        120,
        "the submission to be graded",
        service,
    )
    assert body["score"] == 1 and body["max_score"] == 1 and body["attempts"] == 1
    assert body["hidden"] == {"score": 1, "max_score": 1} and body["tests"] == []  # hidden = "score"
    full = fetch(service, instructor, submission_id)
    assert [t["name"].split("::")[-1] for t in full["tests"]] == ["test_add"] and full["tests"][0][
        "outcome"
    ] == "passed"
    assert full["worker"].startswith("cpu-")
    assert wait_for(lambda: not containers_of(docker_client, submission_id), 10, "the containers to go")


def test_a_worker_killed_mid_grading_is_replaced_and_the_submission_graded_once(service, docker_client):
    token = service.run("token", "create", "--student", "s1")
    instructor = service.run("token", "create", "--instructor", "--login", "prof")
    service.start_api()
    first = service.start("worker", "--queues", "cpu", log="worker1.log")
    submission_id = submit(service, token, assignment="add-slow")
    wait_for(lambda: len(containers_of(docker_client, submission_id)) == 2, 60, "grading to start", service)
    time.sleep(1)
    service.kill(first, signal.SIGKILL)  # the whole worker: main process and pool process
    assert containers_of(docker_client, submission_id), "the dead worker's containers are still there"
    service.start("worker", "--queues", "cpu", log="worker2.log")
    body = wait_for(
        lambda: (b := fetch(service, instructor, submission_id))["status"] == "graded" and b,
        120,
        "the submission to be graded by the second worker",
        service,
    )
    assert body["score"] == 1 and body["attempts"] == 2
    assert [t["name"].split("::")[-1] for t in body["tests"]] == ["test_add_slowly"]
    wait_for(
        lambda: not containers_of(docker_client, submission_id), 30, "the orphaned containers to go", service
    )
    time.sleep(3)  # a late duplicate delivery must change nothing
    assert fetch(service, instructor, submission_id) == body


def test_a_redis_restart_during_a_burst_loses_no_upload(service, docker_client):
    token = service.run("token", "create", "--student", "s1")
    instructor = service.run("token", "create", "--instructor", "--login", "prof")
    service.start_api()
    service.start("worker", "--queues", "cpu", log="worker.log")
    ids = [submit(service, token) for _ in range(3)]
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], capture_output=True)
    try:
        wait_for(lambda: not redis_up(), 10, "Redis to stop")
        ids += [submit(service, token) for _ in range(3)]  # accepted while the broker is down
    finally:
        subprocess.run(REDIS_START, check=True, capture_output=True)
        wait_for(redis_up, 20, "Redis to start again")
    ids += [submit(service, token) for _ in range(2)]

    def all_graded():
        found = [fetch(service, instructor, i) for i in ids]
        return all(b["status"] == "graded" for b in found) and found

    bodies = wait_for(all_graded, 180, "every upload to be graded", service)
    assert [b["score"] for b in bodies] == [1] * len(ids)
    assert all(b["attempts"] >= 1 for b in bodies)


def test_the_embedded_default_grades_with_sqlite_and_no_broker(tmp_path, course, docker_client):
    service = Service(tmp_path, course)  # no database URL, no broker: SQLite under the data dir
    try:
        service.run("migrate")
        token = service.run("token", "create", "--student", "s1")
        service.start_api("serve")
        submission_id = submit(service, token)
        body = wait_for(
            lambda: (b := fetch(service, token, submission_id))["status"] == "graded" and b,
            120,
            "the submission to be graded in-process",
            service,
        )
        assert body["score"] == 1 and body["queue_note"] is None
        assert (tmp_path / "data" / "grader.db").exists()
    finally:
        service.stop()


def test_serve_with_postgres_and_redis_runs_a_worker_beside_the_api(service, docker_client):
    # `grader serve` with both URLs set: the API plus a cpu worker subprocess on the broker.
    token = service.run("token", "create", "--student", "s1")
    service.start_api("serve")
    submission_id = submit(service, token)
    body = wait_for(
        lambda: (b := fetch(service, token, submission_id))["status"] == "graded" and b,
        120,
        "the submission to be graded by serve's worker",
        service,
    )
    assert body["score"] == 1 and body["attempts"] == 1
    assert not (service.tmp / "data" / "grader.db").exists()  # PostgreSQL, not the embedded SQLite


def test_a_gpu_worker_pins_each_pool_process_to_its_own_gpu(service):
    # No GPU here, so this checks the pinning itself: one process per GPU, each with a different one.
    service.start("worker", "--queues", "gpu", "--gpus", "2", log="gpu-worker.log")
    log = service.tmp / "gpu-worker.log"
    wait_for(
        lambda: len(set(re.findall(r"grades on GPU (\d+)", log.read_text()))) == 2, 60, "both GPUs", service
    )
    pinned = set(re.findall(r"pool process (\d+) grades on GPU (\d+)", log.read_text()))
    assert {gpu for _, gpu in pinned} == {"0", "1"}
    assert len({process for process, _ in pinned}) == 2

"""`grader smoke`: reference solutions and starters through the running service, as CI runs it."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.live import GRADER
from tests.test_assignments import SLUGS

pytestmark = pytest.mark.docker
ASSIGNMENTS = Path(__file__).resolve().parent.parent / "assignments"


def smoke(service, token: str, *folders: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**service.env, "GRADER_URL": service.url, "GRADER_TOKEN": token}
    return subprocess.run(
        [*GRADER, "smoke", *map(str, folders)], env=env, capture_output=True, text=True, timeout=timeout
    )


def start(service) -> str:
    token = service.run("token", "create", "--instructor", "--login", "ci")
    service.start_api()
    service.start("worker", "--queues", "cpu", "--concurrency", "2", log="worker.log")
    return token


def test_smoke_passes_and_is_recorded_for_the_dashboard(service, course):
    token = start(service)
    done = smoke(service, token, course / "add-one")
    assert done.returncode == 0, done.stderr + service.logs()
    assert "solution" in done.stderr and "starter" in done.stderr and "smoke passed" in done.stderr
    listing = service.run("assignments", "list")
    assert "add-one" in listing and "passed" in listing
    # The solution's run is the reference the workers compare submissions with (grader.reference).
    assert len(list((service.tmp / "data" / "reference" / "add-one").glob("*.json"))) == 1


def test_smoke_fails_when_the_solution_loses_points(service, course):
    (course / "add-one" / "solution" / "submission.py").write_text("def add(a, b):\n    return a - b\n")
    token = start(service)
    done = smoke(service, token, course / "add-one")
    assert done.returncode == 1
    assert "solution scored 0/1" in done.stderr and "smoke failed" in done.stderr
    assert "FAILED" in service.run("assignments", "list")


def test_smoke_refuses_an_invalid_folder_without_uploading(service, course, tmp_path):
    # The service refuses to load an invalid course, so the broken folder is a copy beside it.
    broken = tmp_path / "elsewhere"
    shutil.copytree(course, broken)
    (broken / "add-one" / "assignment.toml").write_text('title = "x"\n')
    token = start(service)
    done = smoke(service, token, broken / "add-one")
    assert done.returncode == 1 and "assignment.toml: released" in done.stderr
    assert "never" in service.run("assignments", "list") or "FAILED" in service.run("assignments", "list")


def test_every_shipped_homework_passes_its_smoke_test(tmp_path, committed_pg, redis_broker, docker_client):
    from tests.fixtures.live import Service

    service = Service(tmp_path, ASSIGNMENTS, database_url=committed_pg, broker_url=redis_broker)
    try:
        token = start(service)
        folders = sorted(p.parent for p in ASSIGNMENTS.glob("*/assignment.toml"))
        assert set(SLUGS) <= {folder.name for folder in folders}  # every homework, hw1 to hw9
        done = smoke(service, token, *folders, timeout=1500)
        assert done.returncode == 0, done.stderr + service.logs()
        for folder in folders:
            assert f"{folder.name}" in done.stderr
    finally:
        service.stop()

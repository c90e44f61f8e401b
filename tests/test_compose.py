"""docker-compose.yml: it cannot be started here, so check what it declares."""

import json
import shutil
import subprocess
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def load() -> dict:
    # `docker compose config` resolves anchors and validates the schema when the plugin exists.
    if shutil.which("docker"):
        done = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE), "config", "--format", "json"],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            return json.loads(done.stdout)
    return yaml.safe_load(COMPOSE.read_text())


def test_the_compose_file_declares_the_whole_service():
    services = load()["services"]
    assert {"api", "worker-cpu", "worker-gpu", "redis", "postgres", "flower"} <= set(services)
    for name in ("api", "worker-cpu", "worker-gpu"):
        env = services[name]["environment"]
        assert env["GRADER_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["GRADER_BROKER_URL"].startswith("redis://redis:")
    assert "--queues cpu" in str(services["worker-cpu"]["command"])
    assert "--queues gpu" in str(services["worker-gpu"]["command"])
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    for name in ("worker-cpu", "worker-gpu"):
        assert any("docker.sock" in str(v) for v in services[name]["volumes"])
    assert all(str(p).startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))


def test_the_service_image_installs_the_checkout_in_place():
    # Workers send sandbox/harness/ into each sandbox from the source tree, so the image must hold it.
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    assert load()["services"]["api"]["build"] in (
        ".",
        {"context": str(COMPOSE.parent), "dockerfile": "Dockerfile"},
    )
    for needed in ("COPY grader", "COPY sandbox", "COPY migrations", "pip install --no-cache-dir -e ."):
        assert needed in dockerfile

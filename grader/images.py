"""The image an assignment is graded in, and the derived images that add its requirements.txt.

An assignment with a requirements.txt runs in an image derived from its base image (the default
sandbox image, the GPU one, or `sandbox.image`): the base plus one layer with those packages. They are
installed on this host by pip for the base's Python version, wheels only, as sandbox/build-offline.sh
does, and copied in by a `docker build` that pulls nothing and has no network. Packages the base
already has are held at its versions and left out of the layer. The tag carries a hash of the base
image's id and the file, so an unchanged pair is built once and a rebuilt base or an edited file
gives a new image. `grader assignments check` builds it; the workers only look it up.
"""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import requests

from grader.assignments import Assignment
from grader.config import Settings

# Part of the hash: change it when the way a derived image is built changes, so old ones are not reused.
RECIPE = "1"
LABEL = "grader.requirements"
BUILD_TIMEOUT_S = 3600
# Run in the base image: its Python, where its packages live (pytest is in every sandbox image, for the
# harness) and what it has installed.
PROBE = """\
import importlib.metadata, json, os, sys, pytest
print(json.dumps({
    "python": "%d.%d" % sys.version_info[:2],
    "site": os.path.dirname(os.path.dirname(pytest.__file__)),
    "packages": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
}))
"""


class BuildFailed(Exception):
    """The derived image could not be built; the message says why."""


def base_image(assignment: Assignment, *, settings: Settings) -> str:
    """The image the assignment names, else the GPU or the CPU sandbox image."""
    box = assignment.sandbox
    return box.image or (settings.sandbox_gpu_image if box.gpu else settings.sandbox_image)


def requirements(assignment: Assignment) -> bytes | None:
    """The assignment's requirements.txt, or None when it has none."""
    path = assignment.requirements_file
    return path.read_bytes() if path.is_file() else None


def derived_tag(base: str, base_id: str, wanted: bytes) -> str:
    """The tag of the image that adds `wanted` (a requirements.txt) to the image `base` with id base_id."""
    digest = hashlib.sha256(b"\0".join([RECIPE.encode(), base_id.encode(), wanted])).hexdigest()[:16]
    return f"{_repository(base)}:req-{digest}"


def _repository(image: str) -> str:
    """The name without tag or digest: registry.example:5000/grader-sandbox:cpu -> ...:5000/grader-sandbox."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def for_assignment(assignment: Assignment, *, settings: Settings) -> str:
    """The image to grade the assignment in; asks the engine only when the assignment has requirements."""
    base = base_image(assignment, settings=settings)
    wanted = requirements(assignment)
    if wanted is None:
        return base
    from grader.engine import SandboxUnavailable
    from grader.engine import client as _client

    client = _client(settings)
    try:
        try:
            base_id = client.images.get(base).id
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(
                "image", f"sandbox image {base} is missing; build it with sandbox/build-offline.sh"
            ) from exc
        tag = derived_tag(base, base_id, wanted)
        if not _exists(client, tag):
            raise SandboxUnavailable(
                "image",
                f"sandbox image {tag} ({base} with {assignment.slug}/requirements.txt) is missing; "
                f"build it with `grader assignments check {assignment.path}`",
            )
    except (docker.errors.APIError, requests.RequestException) as exc:
        raise SandboxUnavailable(
            "engine", f"the Docker engine failed while looking up images: {exc}"
        ) from exc
    finally:
        client.close()
    return tag


def build(assignment: Assignment, *, settings: Settings, progress: Callable[[str], None]) -> str | None:
    """Build the assignment's derived image unless it exists; return its tag, None without requirements.txt.

    Raises BuildFailed, or SandboxUnavailable when the engine cannot be reached.
    """
    wanted = requirements(assignment)
    if wanted is None:
        return None
    from grader.engine import client as _client

    base = base_image(assignment, settings=settings)
    client = _client(settings)
    try:
        try:
            base_image_obj = client.images.get(base)
        except docker.errors.ImageNotFound as exc:
            raise BuildFailed(
                f"the base image {base} is missing; build it with sandbox/build-offline.sh"
            ) from exc
        tag = derived_tag(base, base_image_obj.id, wanted)
        if _exists(client, tag):
            progress(f"image {tag} is up to date")
            return tag
        progress(f"building {tag}: {base} plus requirements.txt")
        with tempfile.TemporaryDirectory(prefix="grader-image-") as scratch:
            folder = Path(scratch)
            probe = _probe(client, base_image_obj.id)
            progress(f"[1/3] pip: resolving for Python {probe['python']}, beside the base's packages")
            urls = _resolve(folder, assignment.requirements_file, probe)
            progress(f"[2/3] pip: installing {len(urls)} package(s) the base lacks")
            _install(folder / "context" / "packages", urls, probe)
            progress("[3/3] docker build (nothing pulled, no network)")
            _docker_build(client, folder / "context", base_image_obj, tag, probe, progress)
        size = client.images.get(tag).attrs.get("Size", 0)
        progress(f"built {tag} ({size / 2**20:.0f} MiB with its base)")
        return tag
    except (docker.errors.APIError, requests.RequestException) as exc:
        raise BuildFailed(f"the Docker engine failed while building: {exc}") from exc
    finally:
        client.close()


def _exists(client: docker.DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False


def _probe(client: docker.DockerClient, base_id: str) -> dict:
    try:
        out = client.containers.run(
            base_id, ["python3", "-I", "-c", PROBE], network_mode="none", remove=True, stderr=True
        )
        return json.loads(out.decode().strip().splitlines()[-1])
    except (docker.errors.ContainerError, ValueError, IndexError) as exc:
        raise BuildFailed(f"cannot read the base image's Python and packages: {exc}") from exc


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args, "--quiet", "--progress-bar", "off"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BuildFailed(f"pip failed ({' '.join(args[:2])} ...):\n{tail}")


def _target(probe: dict) -> list[str]:
    return ["--python-version", probe["python"], "--only-binary=:all:"]


def _resolve(folder: Path, requirements_file: Path, probe: dict) -> list[str]:
    """The wheels (URLs) requirements.txt needs beyond the base's packages, which stay at its versions."""
    base = {_canonical(name): version for name, version in probe["packages"].items()}
    # A local label (torch 2.13.0+cpu) is not on the index; the version it labels is, and is only resolved.
    constraints = folder / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version.split('+')[0]}\n" for name, version in base.items()))
    report = folder / "report.json"
    dry_run = ["--dry-run", "--ignore-installed", "--report", str(report), "--target", str(folder / "dry")]
    _pip("install", *dry_run, *_target(probe), "-r", str(requirements_file), "-c", str(constraints))
    chosen = json.loads(report.read_text())["install"]
    return [
        item["download_info"]["url"] for item in chosen if _canonical(item["metadata"]["name"]) not in base
    ]


def _install(packages: Path, urls: list[str], probe: dict) -> None:
    packages.mkdir(parents=True)
    if urls:
        _pip("install", "--no-deps", "--no-compile", "--target", str(packages), *_target(probe), *urls)
    shutil.rmtree(packages / "bin", ignore_errors=True)  # console scripts, with this host's Python in them


def _docker_build(
    client, context: Path, base, tag: str, probe: dict, progress: Callable[[str], None]
) -> None:
    site = probe["site"]
    added = sorted(path.name for path in (context / "packages").iterdir())
    lines = [f"FROM {base.id}"]
    if added:
        # Byte-compiled in the image: the root filesystem is read-only when grading.
        compile_args = json.dumps(
            ["python3", "-m", "compileall", "-q", "-j", "0", *(f"{site}/{n}" for n in added)]
        )
        user = base.attrs["Config"].get("User") or "root"
        lines += [f"COPY packages/ {site}/", "USER root", f"RUN {compile_args}", f"USER {user}"]
    digest = tag.rpartition(":req-")[2]
    lines.append(f"LABEL {LABEL}={digest} grader.base={base.id}")
    (context / "Dockerfile").write_text("\n".join(lines) + "\n")
    stream = client.api.build(
        path=str(context),
        tag=tag,
        network_mode="none",
        pull=False,
        rm=True,
        forcerm=True,
        decode=True,
        timeout=BUILD_TIMEOUT_S,
    )
    for event in stream:
        if "error" in event:
            raise BuildFailed(f"docker build failed: {event['error'].strip()}")
        line = str(event.get("stream", "")).strip()
        if line.startswith("Step "):
            progress(f"      {line}")

"""The image an assignment is graded in: the tag of a derived image, the choice, and a real build."""

from pathlib import Path

import docker
import pytest

from grader import engine, images, sandbox
from grader.assignments import load_assignment
from grader.config import Settings
from grader.sandbox import SandboxUnavailable
from grader.uploads import Unpacked

COURSE = 'code = "DL"\ntitle = "Deep Learning"\nterm = "Fall 2026"\n'
ASSIGNMENT = """title = "Images test"
released = 2026-09-01T09:00:00Z
due = 2026-09-15T23:59:00Z
weight = 1
[sandbox]
timeout_s = 60
memory_mb = 512
"""
BASE_ID = "sha256:" + "ab" * 32


def make_assignment(tmp_path: Path, *, requirements: str | None = None, sandbox: str = "", tests=None):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "course.toml").write_text(COURSE)
    folder = tmp_path / "hw-images"
    (folder / "tests").mkdir(parents=True)
    for name, source in (tests or {"test_a.py": "def test_a():\n    assert True\n"}).items():
        (folder / "tests" / name).write_text(source)
    (folder / "solution").mkdir()
    (folder / "solution" / "submission.py").write_text("")
    (folder / "assignment.toml").write_text(ASSIGNMENT + sandbox)
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return load_assignment(folder)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "var")


# --- without Docker ---


def test_the_tag_is_a_hash_of_the_base_image_id_and_the_requirements():
    tag = images.derived_tag("grader-sandbox:cpu", BASE_ID, b"six==1.17.0\n")
    assert tag.startswith("grader-sandbox:req-") and len(tag.rpartition("-")[2]) == 16
    assert tag == images.derived_tag("grader-sandbox:cpu", BASE_ID, b"six==1.17.0\n")
    assert tag != images.derived_tag("grader-sandbox:cpu", BASE_ID, b"six==1.16.0\n")
    assert tag != images.derived_tag("grader-sandbox:cpu", "sha256:" + "cd" * 32, b"six==1.17.0\n")
    # The same base under another name: the same content, so the same hash.
    assert tag.rpartition(":")[2] == images.derived_tag("other", BASE_ID, b"six==1.17.0\n").rpartition(":")[2]


@pytest.mark.parametrize(
    ("base", "repository"),
    [
        ("grader-sandbox:cpu", "grader-sandbox"),
        ("grader-sandbox", "grader-sandbox"),
        ("registry.example:5000/course/sandbox:gpu", "registry.example:5000/course/sandbox"),
        ("registry.example:5000/sandbox", "registry.example:5000/sandbox"),
        ("sandbox@sha256:" + "ef" * 32, "sandbox"),
    ],
)
def test_the_derived_tag_keeps_the_base_repository(base, repository):
    assert images.derived_tag(base, BASE_ID, b"").rpartition(":req-")[0] == repository


def test_the_base_image_is_the_assignments_own_else_gpu_else_cpu(tmp_path, settings):
    assert images.base_image(make_assignment(tmp_path / "a"), settings=settings) == settings.sandbox_image
    gpu = make_assignment(tmp_path / "b", sandbox="gpu = true\n")
    assert images.base_image(gpu, settings=settings) == settings.sandbox_gpu_image
    own = make_assignment(tmp_path / "c", sandbox='gpu = true\nimage = "course/sandbox:2"\n')
    assert images.base_image(own, settings=settings) == "course/sandbox:2"


def test_without_requirements_the_base_image_is_chosen_without_asking_the_engine(
    tmp_path, settings, monkeypatch
):
    def no_engine(settings):
        raise AssertionError("the engine was asked")

    monkeypatch.setattr(engine, "client", no_engine)
    assert images.for_assignment(make_assignment(tmp_path), settings=settings) == "grader-sandbox:cpu"


class FakeImages:
    def __init__(self, present: dict[str, str]):
        self.present = present  # name -> id

    def get(self, name):
        if name not in self.present:
            raise docker.errors.ImageNotFound(name)
        return type("Image", (), {"id": self.present[name]})()


class FakeClient:
    def __init__(self, present: dict[str, str]):
        self.images = FakeImages(present)
        self.closed = False

    def close(self):
        self.closed = True


def test_with_requirements_the_derived_image_is_chosen(tmp_path, settings, monkeypatch):
    assignment = make_assignment(tmp_path, requirements="six==1.17.0\n")
    tag = images.derived_tag("grader-sandbox:cpu", BASE_ID, b"six==1.17.0\n")
    client = FakeClient({"grader-sandbox:cpu": BASE_ID, tag: "sha256:" + "01" * 32})
    monkeypatch.setattr(engine, "client", lambda settings: client)
    assert images.for_assignment(assignment, settings=settings) == tag
    assert client.closed


def test_a_missing_derived_image_is_our_problem_and_says_how_to_build_it(tmp_path, settings, monkeypatch):
    assignment = make_assignment(tmp_path, requirements="six==1.17.0\n")
    monkeypatch.setattr(engine, "client", lambda settings: FakeClient({"grader-sandbox:cpu": BASE_ID}))
    with pytest.raises(SandboxUnavailable) as caught:
        images.for_assignment(assignment, settings=settings)
    tag = images.derived_tag("grader-sandbox:cpu", BASE_ID, b"six==1.17.0\n")
    assert caught.value.code == "image"
    assert caught.value.message == (
        f"sandbox image {tag} (grader-sandbox:cpu with hw-images/requirements.txt) is missing; "
        f"build it with `grader assignments check {assignment.path}`"
    )


def test_a_missing_base_image_with_requirements_says_to_build_the_base(tmp_path, settings, monkeypatch):
    assignment = make_assignment(tmp_path, requirements="six==1.17.0\n")
    monkeypatch.setattr(engine, "client", lambda settings: FakeClient({}))
    with pytest.raises(SandboxUnavailable, match="build it with sandbox/build-offline.sh") as caught:
        images.for_assignment(assignment, settings=settings)
    assert caught.value.code == "image"


# --- with Docker: a real derived image ---

SIX_TESTS = {
    "test_six.py": """
import six

import submission


def test_the_student_and_the_tests_import_six():
    assert submission.six_version() == six.__version__ == "1.17.0"
""",
}
USES_SIX = "import six\n\n\ndef six_version():\n    return six.__version__\n"


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftover_containers")
def test_a_derived_image_is_built_once_and_grades_code_that_imports_its_packages(
    docker_client, tmp_path, settings
):
    # pytest is in the base image: held at its version and not installed again.
    assignment = make_assignment(tmp_path, requirements="six==1.17.0\npytest\n", tests=SIX_TESTS)
    base_id = docker_client.images.get(settings.sandbox_image).id
    tag = images.derived_tag(settings.sandbox_image, base_id, assignment.requirements_file.read_bytes())
    try:
        docker_client.images.remove(tag)
    except docker.errors.ImageNotFound:
        pass
    try:
        lines: list[str] = []
        assert images.build(assignment, settings=settings, progress=lines.append) == tag
        assert lines[0].startswith(f"building {tag}") and lines[-1].startswith(f"built {tag}")
        assert "[2/3] pip: installing 1 package(s) the base lacks" in lines
        derived = docker_client.images.get(tag)
        assert derived.labels["grader.base"] == base_id
        added = derived.attrs["Size"] - docker_client.images.get(base_id).attrs["Size"]
        assert 0 < added < 2 * 2**20  # six and its byte code, nothing of the base again

        again: list[str] = []
        assert images.build(assignment, settings=settings, progress=again.append) == tag
        assert again == [f"image {tag} is up to date"]

        result = sandbox.grade(
            assignment, Unpacked(kind="zip", files={"submission.py": USES_SIX.encode()}), settings=settings
        )
        assert result.status == "graded" and result.error is None, result
        assert (result.score, result.max_score) == (1, 1)
    finally:
        engine.wait_removed()  # the grading's containers go in the background; the image outlives them
        docker_client.images.remove(tag)

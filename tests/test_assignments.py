"""The homeworks in assignments/: they load, and their fixture submissions get the recorded scores.

tests/fixtures/submissions/<slug>/expected.toml holds, per assignment, the score of the reference
solution, of the starter, and of each wrong solution (<case>.py) with the tests it fails.
"""

import tomllib
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from grader import reference, sandbox
from grader.assignments import load_all, submission_source
from grader.config import Settings
from grader.uploads import Unpacked, unpack_path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "assignments"
FIXTURES = Path(__file__).parent / "fixtures" / "submissions"
SLUGS = [
    "hw1-mlp",
    "hw2-cnn",
    "hw3-rnn",
    "hw4-attention",
    "hw5-lm",
    "hw6-vit-clip",
    "hw7-vae-diffusion",
    "hw8-ssl",
    "hw9-rl",
]


def expected(slug: str) -> dict:
    return tomllib.loads((FIXTURES / slug / "expected.toml").read_text("utf-8"))


def cases() -> list[tuple[str, str]]:
    found = []
    for slug in SLUGS:
        found += [(slug, "solution"), (slug, "starter")]
        found += [(slug, case) for case in expected(slug)["cases"]]
    return found


def test_the_homeworks_load_with_the_course_defaults():
    assignments = load_all(ASSIGNMENTS)
    assert set(SLUGS) <= set(assignments)
    for assignment in (a for a in assignments.values() if a.config.kind == "homework"):
        course = assignment.course
        assert (course.code, course.term, course.timezone, course.assignments_share) == (
            "CENG 501",
            "Spring 2027",
            "Europe/Istanbul",
            45,
        )
        zone = ZoneInfo(course.timezone)
        for instant in (assignment.config.released, assignment.due, assignment.late.cutoff):
            # The offset written in the file is the one Istanbul has on that date (+03:00 all year).
            assert instant.utcoffset() == instant.astimezone(zone).utcoffset(), instant
        # Released 9 days before the due date at 09:00, the cutoff 5 days after it (tests/test_course.py).
        assert assignment.late.cutoff - assignment.due == timedelta(days=5)
        # The course's penalty, which an assignment setting only its cutoff keeps.
        assert (assignment.late.penalty_percent, assignment.late.max_penalty_percent) == (10, 50)
        assert assignment.sandbox.timeout_s >= 60 and not assignment.sandbox.gpu
        assert (assignment.starter_dir / f"{assignment.slug}.ipynb").exists()


def test_every_fixture_case_has_a_recorded_score_and_a_file():
    for slug in SLUGS:
        recorded = expected(slug)
        files = {path.stem for path in (FIXTURES / slug).glob("*.py")}
        assert files == set(recorded["cases"]), slug
        assert recorded["solution"] == recorded["max_score"]
        for case in recorded["cases"].values():
            assert 0 <= case["score"] < recorded["max_score"] and case["fails"]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "var")


def upload(slug: str, case: str, settings: Settings) -> Unpacked:
    assignment = load_all(ASSIGNMENTS)[slug]
    if case in ("solution", "starter"):
        folder = assignment.solution_dir if case == "solution" else assignment.starter_dir
        return unpack_path(
            submission_source(folder),
            assignment,
            max_bytes=settings.max_unpacked_bytes,
            max_files=settings.max_upload_files,
        )
    # The wrong solutions are plain submission.py files, graded as a zip holding just that file.
    return Unpacked(kind="zip", files={"submission.py": (FIXTURES / slug / f"{case}.py").read_bytes()})


@pytest.mark.docker
@pytest.mark.parametrize(("slug", "case"), cases(), ids=[f"{s}/{c}" for s, c in cases()])
def test_fixture_submissions_get_the_recorded_scores(docker_client, settings, slug, case):
    assignment = load_all(ASSIGNMENTS)[slug]
    recorded = expected(slug)
    result = sandbox.grade(assignment, upload(slug, case, settings), settings=settings)
    assert result.status == "graded", result.error
    assert result.max_score == recorded["max_score"]
    lost = sorted(test.name for test in result.tests if test.points < test.max_points)
    if case == "solution":
        assert result.error is None and result.score == recorded["max_score"], lost
    elif case == "starter":
        assert result.score == recorded["starter"], lost
    else:
        assert result.score == recorded["cases"][case]["score"], lost
        assert lost == sorted(recorded["cases"][case]["fails"])
    changed = sorted(test.name for test in result.tests if test.mutated_args)
    # Where the task itself is an in-place update (BYOL's EMA), the solution changes its arguments too.
    by_design = recorded.get("solution_changes_arguments", []) if case == "solution" else []
    assert changed == sorted(recorded["cases"].get(case, {}).get("changes_arguments", by_design))
    # The budget: a whole run well inside the sandbox's clock, even on a slow runner.
    assert result.duration_s < assignment.sandbox.timeout_s / 2


@pytest.mark.docker
def test_zeroing_dout_in_place_is_flagged_where_the_solution_does_not(docker_client, settings):
    assignment = load_all(ASSIGNMENTS)["hw1-mlp"]
    case = "zeroes_dout_in_place"
    result = sandbox.grade(assignment, upload("hw1-mlp", case, settings), settings=settings)
    # The first need computes the reference (one more run, of the solution) and caches it.
    flagged = reference.flag_mutations(result, assignment, settings=settings)
    changed = expected("hw1-mlp")["cases"][case]["changes_arguments"]
    assert flagged.flags == [
        f"changes its arguments in place in {name}, where the reference solution does not"
        for name in sorted(changed, key=[test.name for test in result.tests].index)
    ]
    assert flagged.score == result.score  # a flag never changes the score
    stored = reference.cached(assignment.path, settings=settings)
    assert stored == dict.fromkeys((test.name for test in result.tests), False)

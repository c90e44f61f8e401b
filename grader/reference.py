"""The reference solution's own run of the current tests: in which tests it changes its arguments.

A test that reads its arguments after calling the student's code can be beaten by code that changes
them in place (zeroing `dout` zeroes the numerical gradient it is compared with). So a submission that
changes its arguments in a test where the reference solution does not is flagged for the instructor.
What the reference does comes from a real run of solution/ with the current tests, cached under
data_dir per assignment and per hash of tests/, public_tests/ and solution/: `grader assignments check`
and `grader smoke` record it where they grade the solution anyway, a worker computes it on first need.
"""

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from grader.assignments import Assignment, submission_source
from grader.config import Settings
from grader.results import GradeResult
from grader.uploads import unpack_path

log = logging.getLogger(__name__)

FOLDERS = ("tests", "public_tests", "solution")


def fingerprint(folder: Path) -> str:
    """A hash of an assignment folder's tests/, public_tests/ and solution/: names and contents."""
    digest = hashlib.sha256()
    for name in FOLDERS:
        root = folder / name
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file() and "__pycache__" not in path.parts:
                data = path.read_bytes()
                digest.update(f"{path.relative_to(folder).as_posix()}\0{len(data)}\0".encode())
                digest.update(data)
    return digest.hexdigest()


def cache_file(folder: Path, *, settings: Settings) -> Path:
    return settings.data_dir / "reference" / folder.name / f"{fingerprint(folder)}.json"


def record(folder: Path, result: GradeResult, *, settings: Settings) -> dict[str, bool] | None:
    """Store what a run of the folder's solution says: for each test it passed, whether it changed its
    arguments in place. None (nothing stored) when the run was not graded."""
    if result.status != "graded":
        return None
    mutated = {test.name: test.mutated_args for test in result.tests if test.outcome == "passed"}
    path = cache_file(folder, settings=settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: two workers may compute it at once, and a reader must never see half a file.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as out:
        json.dump({"assignment": folder.name, "mutated_args": mutated}, out)
    os.replace(name, path)
    return mutated


def cached(folder: Path, *, settings: Settings) -> dict[str, bool] | None:
    """The recorded answer for the folder's current tests and solution, if there is one."""
    try:
        stored = json.loads(cache_file(folder, settings=settings).read_text())
        return {str(name): bool(value) for name, value in stored["mutated_args"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def compute(
    assignment: Assignment,
    *,
    settings: Settings,
    labels: dict[str, str] | None = None,
    gpu_ids: list[str] | None = None,
) -> dict[str, bool] | None:
    """Grade the reference solution in the sandbox and record the answer (raises what the sandbox does)."""
    from grader import sandbox  # Docker's client, only where a run is needed

    unpacked = unpack_path(
        submission_source(assignment.solution_dir),
        assignment,
        max_bytes=settings.max_unpacked_bytes,
        max_files=settings.max_upload_files,
    )
    result = sandbox.grade(assignment, unpacked, settings=settings, labels=labels, gpu_ids=gpu_ids)
    return record(assignment.path, result, settings=settings)


def mutation_flags(result: GradeResult, reference: dict[str, bool]) -> list[str]:
    """A flag for each test where the submission changed its arguments and the reference did not."""
    return [
        f"changes its arguments in place in {test.name}, where the reference solution does not"
        for test in result.tests
        if test.mutated_args and reference.get(test.name) is False
    ]


def flag_mutations(
    result: GradeResult,
    assignment: Assignment,
    *,
    settings: Settings,
    labels: dict[str, str] | None = None,
    gpu_ids: list[str] | None = None,
) -> GradeResult:
    """The result with mutation_flags added. The reference is looked up (or computed, one run) only when
    a test changed its arguments; when it cannot be had, the result is returned as it is."""
    if not any(test.mutated_args for test in result.tests):
        return result
    reference = cached(assignment.path, settings=settings)
    if reference is None:
        try:
            reference = compute(assignment, settings=settings, labels=labels, gpu_ids=gpu_ids)
        except Exception:  # noqa: BLE001 - the student's grade must never depend on the reference's run
            log.exception("%s: the reference solution's run failed; no mutation flags", assignment.slug)
            return result
        if reference is None:
            log.warning("%s: the reference solution was not graded; no mutation flags", assignment.slug)
            return result
    flags = [flag for flag in mutation_flags(result, reference) if flag not in result.flags]
    return result.model_copy(update={"flags": [*result.flags, *flags]}) if flags else result


def reads_after_call(normal: GradeResult, scrambled: GradeResult) -> list[str]:
    """Warnings for the tests that read their arguments after calling the student's code: they pass with
    the reference solution, which leaves its arguments alone there, and fail when those arguments are
    spoiled after each call (sandbox.grade(scramble_args=True))."""
    spoiled = {test.name: test for test in scrambled.tests}
    warnings = []
    for test in normal.tests:
        after = spoiled.get(test.name)
        if test.outcome != "passed" or test.mutated_args or after is None or after.outcome == "passed":
            continue
        warnings.append(
            f"{test.name} reads its arguments after calling the student's code (it fails when they are "
            "spoiled after each call), so code that changes them in place can change what it is compared "
            "with: compute expected values before calling the student's code, or pass it a copy "
            "(if the test checks on purpose that they are left unchanged, ignore this)"
        )
    return warnings

"""The shape of a grading result: what `grader grade --json` prints and the API returns."""

from collections.abc import Iterable
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, Field

Outcome = Literal["passed", "failed", "error", "timeout", "not_run"]

# Student errors are the student's to fix; infrastructure errors are ours, retried and never charged.
ErrorKind = Literal["student", "infrastructure"]


class TestResult(BaseModel):
    __test__ = False  # not a pytest test class

    name: str
    points: float
    max_points: float
    outcome: Outcome
    message: str = ""
    visibility: Literal["hidden", "public"] = "hidden"
    duration_s: float = 0.0
    # The student's code changed an argument in place during this test (copied back, as in one process).
    mutated_args: bool = False


class GradeError(BaseModel):
    kind: ErrorKind
    # Machine-readable reason: syntax, import, timeout, memory, pids, output, disk, missing_file, start,
    # bad_upload, tampering, gpu_unavailable, engine, image, harness.
    code: str
    message: str


class CellError(BaseModel):
    """A notebook cell that raised while the notebook ran; the cells after it still ran."""

    cell: int
    message: str


class GradeResult(BaseModel):
    # "graded": the score is final (it may be partial, with `error` saying why points were lost).
    # "error": no score could be given; error.kind says whose problem it is.
    status: Literal["graded", "error"]
    score: float = 0.0
    max_score: float | None = None
    tests: list[TestResult] = []
    error: GradeError | None = None
    output: str = Field(default="", description="the submission's own stdout and stderr, capped")
    output_truncated: bool = False
    cell_errors: list[CellError] = Field(default=[], description="notebook cells that raised, in order")
    # Signs of tampering seen while grading; they flag the submission to the instructor.
    flags: list[str] = []
    duration_s: float = 0.0

    @property
    def full_marks(self) -> bool:
        return self.status == "graded" and self.max_score is not None and self.score >= self.max_score


def exact_sum(points: Iterable[float]) -> float:
    """A sum of points without float drift: three tests of 2/3 make 2, not 1.9999999999999998.

    Points are written as decimals or simple fractions, so each is taken as the nearest fraction with a
    small denominator before adding.
    """
    return float(sum((Fraction(p).limit_denominator(10_000) for p in points), Fraction(0)))


def ungraded(kind: ErrorKind, code: str, message: str) -> GradeResult:
    """A result with no score: the upload could not be graded (student) or the sandbox failed (ours)."""
    return GradeResult(status="error", error=GradeError(kind=kind, code=code, message=message))

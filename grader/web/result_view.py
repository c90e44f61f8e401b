"""A result as its student sees it: hidden tests as the assignment's feedback.hidden allows
(grader.feedback decides), and what the result means in plain words."""

from dataclasses import dataclass, field

from grader import feedback
from grader.results import CellError, GradeError, GradeResult, TestResult
from grader.schemas import HiddenTotal


@dataclass
class StudentResult:
    """A result as its student may see it (grader.feedback decides what of the hidden tests)."""

    status: str
    score: float
    max_score: float | None
    tests: list[TestResult]
    hidden_total: HiddenTotal | None  # shown when hidden tests appear only as a total
    error: GradeError | None
    output: str
    output_truncated: bool
    cell_errors: list[CellError]
    statements: list[str] = field(default_factory=list)  # what the result means, in plain words


NOT_IMPLEMENTED = "NotImplementedError"


def plain_statements(result: GradeResult) -> list[str]:
    """What a result means, said plainly: nothing implemented yet, or a notebook that failed to import.

    Read from every test, hidden ones included, but they say nothing of any single hidden test."""
    error = result.error
    if error is not None and error.kind == "student" and error.code in ("import", "syntax"):
        return [
            "Your notebook failed to import, so the tests could not use any of it: every test scored 0. "
            "Fix the error below (run the notebook top to bottom in a fresh kernel to see it), then "
            "upload again."
        ]
    if result.status != "graded" or not result.tests:
        return []
    unfinished = [t for t in result.tests if t.points < t.max_points and NOT_IMPLEMENTED in t.message]
    lost = [t for t in result.tests if t.points < t.max_points]
    if unfinished and len(unfinished) == len(lost) == len(result.tests):
        return [
            "Nothing is implemented yet: every test stopped at a `raise NotImplementedError` left from "
            "the starter. Replace those lines with your code."
        ]
    if unfinished:
        return [
            "Some tests stopped at a `raise NotImplementedError` left from the starter: part of the "
            "assignment is not implemented yet."
        ]
    if result.cell_errors:
        return [
            "Some notebook cells raised an error (listed below); what they would have defined is missing."
        ]
    return []


def student_result(result: GradeResult, hidden: str, shown=None) -> StudentResult:
    """The result with hidden tests shown as the assignment's feedback.hidden allows (and, given
    `shown`, as each test's visibility allows now: grader.release)."""
    tests, total, error = feedback.for_student(result, hidden=hidden, shown=shown)
    return StudentResult(
        status=result.status,
        score=result.score,
        max_score=result.max_score,
        tests=list(tests),
        hidden_total=total if hidden == "score" else None,
        error=error,
        output=result.output,
        output_truncated=result.output_truncated,
        cell_errors=result.cell_errors,
        statements=plain_statements(result),
    )

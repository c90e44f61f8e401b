"""What a student may see of a result: hidden tests as the assignment's feedback.hidden allows."""

from grader.results import GradeError, GradeResult, TestResult, exact_sum
from grader.schemas import HiddenTotal

INFRASTRUCTURE_NOTE = "the grader failed on our side; this attempt is not charged to you"


def for_student(
    result: GradeResult, *, hidden: str
) -> tuple[list[TestResult], HiddenTotal | None, GradeError | None]:
    """The tests, the hidden total and the error a student sees under feedback.hidden = score|names|full."""
    secret = [test for test in result.tests if test.visibility == "hidden"]
    public = [test for test in result.tests if test.visibility != "hidden"]
    total = HiddenTotal(
        score=exact_sum(t.points for t in secret), max_score=exact_sum(t.max_points for t in secret)
    )
    if hidden == "full":
        tests = result.tests
    elif hidden == "names":
        tests = [
            test if test.visibility != "hidden" else test.model_copy(update={"message": ""})
            for test in result.tests
        ]
    else:
        tests = public
    error = result.error
    if error is not None and error.kind == "infrastructure":
        # Our messages can quote harness output, which may name hidden tests.
        error = error.model_copy(update={"message": INFRASTRUCTURE_NOTE})
    return tests, total if secret else None, error

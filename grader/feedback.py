"""What a student may see of a result: the details of each test as its visibility allows (grader.release),
the others as the assignment's feedback.hidden shows withheld tests (in a total, or by name)."""

from collections.abc import Callable

from grader.results import GradeError, GradeResult, TestResult, exact_sum
from grader.schemas import HiddenTotal

INFRASTRUCTURE_NOTE = "the grader failed on our side; this attempt is not charged to you"


def for_student(
    result: GradeResult, *, hidden: str, shown: Callable[[TestResult], bool] | None = None
) -> tuple[list[TestResult], HiddenTotal | None, GradeError | None]:
    """The tests, the withheld tests' total and the error a student sees. `shown(test)` says whether the
    test's details may be shown now (default: public tests, or every test under hidden = "full");
    withheld tests appear under feedback.hidden = score (only their total) or names (no message)."""
    if shown is None:

        def shown(test: TestResult) -> bool:
            return test.visibility != "hidden" or hidden == "full"

    withheld = [test for test in result.tests if not shown(test)]
    total = HiddenTotal(
        score=exact_sum(t.points for t in withheld), max_score=exact_sum(t.max_points for t in withheld)
    )
    # In the student's copy, `visibility` says whether the test's details are shown to them now.
    if hidden == "names":
        tests = [
            test.model_copy(update={"visibility": "public"})
            if shown(test)
            else test.model_copy(update={"message": "", "visibility": "hidden"})
            for test in result.tests
        ]
    else:
        tests = [test.model_copy(update={"visibility": "public"}) for test in result.tests if shown(test)]
    error = result.error
    if error is not None and error.kind == "infrastructure":
        # Our messages can quote harness output, which may name hidden tests.
        error = error.model_copy(update={"message": INFRASTRUCTURE_NOTE})
    return tests, total if withheld else None, error

"""A student's late days: how many the course gives, how many the gradebook spent and where.

The spending itself is the gradebook's (grader.gradebook, "Late days"): this module only reads it
back, so what a student is shown ("2 of 5 late days left") is exactly what their grade uses.
"""

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from grader import catalog, gradebook, gradebook_export
from grader.config import Settings
from grader.models import User


@dataclass(frozen=True)
class LateDayStanding:
    budget: int
    used: int
    by_assignment: dict[str, int] = field(default_factory=dict)  # slug -> days spent there (only > 0)

    @property
    def left(self) -> int:
        return self.budget - self.used

    @property
    def text(self) -> str:
        """`2 of 5 late days left`."""
        return f"{self.left} of {self.budget} late day{'s' * (self.budget != 1)} left"


def standing(grades: gradebook.StudentGrades, *, budget: int) -> LateDayStanding:
    """Where one student's late days went, from their gradebook row."""
    spent = {
        slug: cell.counted.late_days
        for slug, cell in grades.cells.items()
        if cell.counted is not None and not cell.excused and cell.counted.late_days
    }
    return LateDayStanding(budget=budget, used=sum(spent.values()), by_assignment=spent)


def for_student(session: Session, *, settings: Settings, user: User) -> LateDayStanding | None:
    """The student's late days as the gradebook spends them now; None when the course gives none."""
    assignments = gradebook.in_order(catalog.current(session=session, settings=settings).values())
    if not assignments or not assignments[0].course.late_days.budget:
        return None
    course = assignments[0].course
    grades = gradebook_export.grades_of(session=session, assignments=assignments, course=course, user=user)
    return standing(grades, budget=course.late_days.budget)

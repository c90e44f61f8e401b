"""The student's side of the grading workflow: their released manual grades and rubric comments on the
assignment page, and the form that asks for a regrade of one question (grader.regrade_requests)."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from grader import accounts, catalog, gradebook, policies, regrade_requests, release, rubrics
from grader.assignments import Assignment, Question
from grader.config import get_settings
from grader.db import utcnow
from grader.deps import SessionDep
from grader.models import ManualGrade, RegradeRequest, User
from grader.web.common import PageError, StudentPageDep, flash_redirect

router = APIRouter(include_in_schema=False)


@dataclass
class StudentPanel:
    """What a student sees of the manual grading of one assignment (nothing before the release)."""

    released: bool
    questions: list[tuple[Question, ManualGrade | None]]
    manual_points: float
    manual_max: float
    requests: list[RegradeRequest]


def student_panel(session: Session, *, user: User, assignment: Assignment) -> StudentPanel | None:
    """For the student's assignment page; None when the assignment has no manually graded questions."""
    if not assignment.questions:
        return None
    if not release.released(session, slug=assignment.slug):
        return StudentPanel(False, [], 0, assignment.manual_max, [])
    grades = rubrics.grades_of(session, user_id=user.id, slug=assignment.slug)
    return StudentPanel(
        True,
        [(q, grades.get(q.id)) for q in assignment.questions],
        rubrics.total_for(session, assignment=assignment, user_id=user.id),
        assignment.manual_max,
        regrade_requests.of_student(session, user_id=user.id, slug=assignment.slug),
    )


def released_manual(session: Session, user: User, assignment: Assignment) -> gradebook.Manual | None:
    """The student's manual points as the gradebook counts them, once released; None before."""
    if not assignment.questions or not release.released(session, slug=assignment.slug):
        return None
    return gradebook.Manual(
        rubrics.total_for(session, assignment=assignment, user_id=user.id), assignment.manual_max
    )


@router.post("/assignments/{slug}/regrade-requests")
def ask_for_regrade(
    request: Request,
    session: SessionDep,
    web: StudentPageDep,
    slug: str,
    question: Annotated[str, Form(max_length=64)] = "",
    message: Annotated[str, Form(max_length=regrade_requests.MAX_MESSAGE)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """A student asks for a review of one question."""
    if not accounts.csrf_matches(web.csrf_token, csrf_token):
        raise PageError(
            403, "Form expired", "This form is stale or came from another site; reload and try again."
        )
    assignment = catalog.current(session=session, settings=get_settings()).get(slug)
    if assignment is None or not policies.released(assignment, utcnow()):
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    try:
        regrade_requests.ask(
            session=session, assignment=assignment, student=web.user, question_id=question, message=message
        )
    except regrade_requests.BadRequest as exc:
        return flash_redirect(request, f"/assignments/{slug}", web, f"Not sent: {exc}", "error")
    return flash_redirect(request, f"/assignments/{slug}", web, "Your regrade request is sent.", "ok")

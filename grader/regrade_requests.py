"""Regrade requests: once an assignment's grades are released, a student asks for a review of one
manually graded question with a message; a grader answers and may change the points (through
grader.rubrics, so the change is in the history); the student sees the answer."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader import release, rubrics
from grader.assignments import Assignment
from grader.db import utcnow
from grader.models import ManualGrade, RegradeRequest, User

MAX_MESSAGE = 2000


class BadRequest(Exception):
    """The request or answer cannot be stored as given; nothing was stored."""


def ask(
    *, session: Session, assignment: Assignment, student: User, question_id: str, message: str
) -> RegradeRequest:
    """Store a student's request for a review of one question, and commit."""
    message = message.strip()
    if not release.released(session, slug=assignment.slug):
        raise BadRequest("grades of this assignment are not released yet")
    if assignment.question(question_id) is None:
        raise BadRequest(f"{assignment.slug} has no question {question_id!r}")
    if not message:
        raise BadRequest("say what should be reviewed")
    if len(message) > MAX_MESSAGE:
        raise BadRequest(f"a message is at most {MAX_MESSAGE} characters")
    waiting = session.scalar(
        select(RegradeRequest.id).where(
            RegradeRequest.user_id == student.id,
            RegradeRequest.assignment == assignment.slug,
            RegradeRequest.question == question_id,
            RegradeRequest.answered_at.is_(None),
        )
    )
    if waiting is not None:
        raise BadRequest("your request on this question is waiting for an answer already")
    request = RegradeRequest(
        user_id=student.id,
        assignment=assignment.slug,
        question=question_id,
        message=message,
        created_at=utcnow(),
    )
    session.add(request)
    session.commit()
    return request


def answer(
    *,
    session: Session,
    assignment: Assignment,
    request: RegradeRequest,
    grader: User,
    text: str,
    adjustment: float | None = None,
) -> RegradeRequest:
    """Answer a request, and commit. With `adjustment`, the question's adjustment becomes that value
    (reason: the answer), through grader.rubrics; BadRequest/BadGrade when it cannot be stored."""
    text = text.strip()
    if not text:
        raise BadRequest("write an answer")
    if len(text) > MAX_MESSAGE:
        raise BadRequest(f"an answer is at most {MAX_MESSAGE} characters")
    student = session.get(User, request.user_id)
    grade = session.scalar(
        select(ManualGrade).where(
            ManualGrade.user_id == request.user_id,
            ManualGrade.assignment == request.assignment,
            ManualGrade.question == request.question,
        )
    )
    before = grade.points if grade else None
    after = before
    if adjustment is not None and (grade is None or adjustment != grade.adjustment):
        saved = rubrics.save(
            session=session,
            assignment=assignment,
            student=student,
            question_id=request.question,
            items=list(grade.items) if grade else [],
            comment=grade.comment if grade else "",
            grader=grader,
            adjustment=adjustment,
            adjustment_reason=f"regrade request: {text}" if adjustment else "",
            source="regrade_request",
        )
        after = saved.points
    request.answer, request.answered_by, request.answered_at = text, grader.id, utcnow()
    request.points_before, request.points_after = before, after
    session.commit()
    return request


def of_student(session: Session, *, user_id: int, slug: str) -> list[RegradeRequest]:
    """One student's requests on one assignment, oldest first."""
    return list(
        session.scalars(
            select(RegradeRequest)
            .where(RegradeRequest.user_id == user_id, RegradeRequest.assignment == slug)
            .order_by(RegradeRequest.id)
        )
    )


def of_assignment(session: Session, *, slug: str) -> list[tuple[RegradeRequest, User]]:
    """Every request on one assignment with its student: unanswered first, then oldest first."""
    rows = session.execute(
        select(RegradeRequest, User)
        .join(User, User.id == RegradeRequest.user_id)
        .where(RegradeRequest.assignment == slug)
        .order_by(RegradeRequest.answered_at.is_not(None), RegradeRequest.id)
    )
    return [(request, user) for request, user in rows]

"""Manually graded questions: a grader picks rubric items, comments, may adjust with a reason; every
change is kept (who, when, before, after). Manual points belong to a student's assignment (not to one
submission): they add to the auto points of the submission that counts (grader.gradebook).

A question's score: `start` (0, or its points) plus the picked items' points, kept between 0 and the
question's points, then the adjustment, kept there too.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grader import teams
from grader.assignments import Assignment, Question
from grader.db import utcnow
from grader.models import BankComment, ManualGrade, ManualGradeChange, User
from grader.results import exact_sum

MAX_COMMENT = 5000


class BadGrade(Exception):
    """The grade cannot be saved as given; nothing was stored."""


def question_score(question: Question, items: Sequence[str], adjustment: float = 0) -> float:
    """The question's points for these rubric items and adjustment."""
    by_label = {item.label: item.points for item in question.rubric}
    start = question.points if question.start == "full" else 0
    picked = exact_sum([start, *(by_label[label] for label in items)])
    clamped = min(max(picked, 0), question.points)
    return min(max(exact_sum([clamped, adjustment]), 0), question.points)


def snapshot(grade: ManualGrade) -> dict:
    """The grade's state, as the history stores it."""
    return {
        "items": list(grade.items),
        "comment": grade.comment,
        "adjustment": grade.adjustment,
        "adjustment_reason": grade.adjustment_reason,
        "points": grade.points,
    }


def save(
    *,
    session: Session,
    assignment: Assignment,
    student: User,
    question_id: str,
    items: Sequence[str],
    comment: str,
    grader: User,
    adjustment: float = 0,
    adjustment_reason: str = "",
    submission_id: str | None = None,
    source: str = "grading",
    add_to_bank: bool = False,
) -> ManualGrade:
    """Store the student's grade on one question with its history entry, and commit. BadGrade when an
    item is not in the rubric, an adjustment has no reason, or the comment is too long."""
    question = assignment.question(question_id)
    if question is None:
        raise BadGrade(f"{assignment.slug} has no question {question_id!r}")
    labels = {item.label for item in question.rubric}
    unknown = [label for label in items if label not in labels]
    if unknown:
        raise BadGrade(f"not in the rubric of {question_id}: {', '.join(map(repr, unknown))}")
    if adjustment and not adjustment_reason.strip():
        raise BadGrade("an adjustment needs a reason")
    if abs(adjustment) > question.points:
        raise BadGrade(f"an adjustment is at most {question.points:g} points either way")
    if len(comment) > MAX_COMMENT:
        raise BadGrade(f"a comment is at most {MAX_COMMENT} characters")
    if student.role != "student":
        raise BadGrade(f"{student.login} is not a student")
    # A team milestone's grade is the team's: every current member gets the same, with its own history.
    students = teams.graded_together(session, student=student) if assignment.is_team else [student]
    grade = None
    for member in students:
        saved = _save_one(
            session=session,
            question=question,
            slug=assignment.slug,
            student=member,
            items=items,
            comment=comment,
            grader=grader,
            adjustment=adjustment,
            adjustment_reason=adjustment_reason,
            submission_id=submission_id,
            source=source,
        )
        if member.id == student.id or grade is None:
            grade = saved
    if add_to_bank and grade.comment:
        add_comment(
            session=session,
            slug=assignment.slug,
            question_id=question_id,
            text=grade.comment,
            by=grader,
            commit=False,
        )
    session.commit()
    return grade


def _save_one(
    *,
    session: Session,
    question: Question,
    slug: str,
    student: User,
    items: Sequence[str],
    comment: str,
    grader: User,
    adjustment: float,
    adjustment_reason: str,
    submission_id: str | None,
    source: str,
) -> ManualGrade:
    grade = session.scalar(
        select(ManualGrade).where(
            ManualGrade.user_id == student.id,
            ManualGrade.assignment == slug,
            ManualGrade.question == question.id,
        )
    )
    before = snapshot(grade) if grade else None
    if grade is None:
        grade = ManualGrade(user_id=student.id, assignment=slug, question=question.id)
        session.add(grade)
    # In the rubric's order, each once.
    grade.items = [item.label for item in question.rubric if item.label in set(items)]
    grade.comment = comment.strip()
    grade.adjustment = float(adjustment)
    grade.adjustment_reason = adjustment_reason.strip() if adjustment else ""
    grade.points = question_score(question, grade.items, adjustment)
    grade.graded_by = grader.id
    grade.graded_at = utcnow()
    if submission_id is not None:
        grade.submission_id = submission_id
    session.flush()
    after = snapshot(grade)
    if after != before:
        session.add(
            ManualGradeChange(
                manual_grade_id=grade.id,
                by=grader.id,
                at=grade.graded_at,
                before=before,
                after=after,
                source=source,
            )
        )
    return grade


def add_comment(
    *, session: Session, slug: str, question_id: str, text: str, by: User, commit: bool = True
) -> None:
    """Put a comment in the question's bank (once)."""
    text = text.strip()
    exists = session.scalar(
        select(BankComment.id).where(
            BankComment.assignment == slug, BankComment.question == question_id, BankComment.text == text
        )
    )
    if text and exists is None:
        try:
            with session.begin_nested():
                session.add(BankComment(assignment=slug, question=question_id, text=text, created_by=by.id))
        except IntegrityError:  # another grader saved the same comment just now
            pass
    if commit:
        session.commit()


def bank(session: Session, *, assignment: Assignment, question_id: str) -> list[str]:
    """The question's comment bank: the assignment's own comments, then the graders', oldest first."""
    question = assignment.question(question_id)
    seeded = list(question.comments) if question else []
    saved = session.scalars(
        select(BankComment.text)
        .where(BankComment.assignment == assignment.slug, BankComment.question == question_id)
        .order_by(BankComment.id)
    )
    return seeded + [text for text in saved if text not in seeded]


def grades_of(session: Session, *, user_id: int, slug: str) -> dict[str, ManualGrade]:
    """One student's manual grades on one assignment, by question id."""
    rows = session.scalars(
        select(ManualGrade).where(ManualGrade.user_id == user_id, ManualGrade.assignment == slug)
    )
    return {grade.question: grade for grade in rows}


def manual_points(session: Session, *, assignment: Assignment) -> dict[tuple[str, str], float]:
    """Every student's points per question of one assignment, by (login, question id); declared
    questions only (a question removed from assignment.toml no longer counts)."""
    declared = {q.id for q in assignment.questions}
    rows = session.execute(
        select(User.login, ManualGrade.question, ManualGrade.points)
        .join(User, User.id == ManualGrade.user_id)
        .where(ManualGrade.assignment == assignment.slug)
    )
    return {(login, question): points for login, question, points in rows if question in declared}


def manual_totals(session: Session, *, assignments: Sequence[Assignment]) -> dict[tuple[str, str], float]:
    """Every student's manual points per assignment, by (login, slug)."""
    points: dict[tuple[str, str], list[float]] = defaultdict(list)
    for assignment in assignments:
        if assignment.questions:
            for (login, _), value in manual_points(session, assignment=assignment).items():
                points[(login, assignment.slug)].append(value)
    return {key: exact_sum(values) for key, values in points.items()}


def total_for(session: Session, *, assignment: Assignment, user_id: int) -> float:
    """One student's manual points on one assignment (declared questions only)."""
    declared = {q.id for q in assignment.questions}
    grades = grades_of(session, user_id=user_id, slug=assignment.slug)
    return exact_sum(g.points for q, g in grades.items() if q in declared)


@dataclass(frozen=True)
class Change:
    question: str
    at: datetime
    by: str  # the grader's login
    before: dict | None
    after: dict
    source: str


def history(session: Session, *, user_id: int, slug: str) -> list[Change]:
    """Every change to one student's manual grades on one assignment, oldest first."""
    rows = session.execute(
        select(ManualGradeChange, ManualGrade.question, User.login)
        .join(ManualGrade, ManualGrade.id == ManualGradeChange.manual_grade_id)
        .outerjoin(User, User.id == ManualGradeChange.by)
        .where(ManualGrade.user_id == user_id, ManualGrade.assignment == slug)
        .order_by(ManualGradeChange.at, ManualGradeChange.id)
    )
    return [
        Change(question, change.at, login or "?", change.before, change.after, change.source)
        for change, question, login in rows
    ]


def graded_counts(session: Session, *, slug: str, user_ids: Sequence[int]) -> dict[str, int]:
    """How many of these students have a grade, per question."""
    if not user_ids:
        return {}
    rows = session.execute(
        select(ManualGrade.question, func.count())
        .where(ManualGrade.assignment == slug, ManualGrade.user_id.in_(list(user_ids)))
        .group_by(ManualGrade.question)
    )
    return {question: count for question, count in rows}


def graded_user_ids(session: Session, *, slug: str, question_id: str) -> set[int]:
    """The students with a grade on this question."""
    return set(
        session.scalars(
            select(ManualGrade.user_id).where(
                ManualGrade.assignment == slug, ManualGrade.question == question_id
            )
        )
    )

"""Who there is to grade by hand: per student with a finished submission, the submission that counts
(pinned, else best or last, as the gradebook picks it), in login order; progress per question, and the
next ungraded student for grade-by-question."""

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from grader import extensions, gradebook, rubrics
from grader.assignments import Assignment
from grader.models import Submission, User


@dataclass(frozen=True)
class Entry:
    student: User
    submission: Submission


def entries(session: Session, *, assignment: Assignment) -> list[Entry]:
    """Each student with a finished submission and the one that counts, by login."""
    by_student: dict[int, list[Submission]] = defaultdict(list)
    users: dict[int, User] = {}
    rows = session.execute(
        select(Submission, User)
        .join(User, User.id == Submission.user_id)
        .where(Submission.assignment == assignment.slug, User.role == "student")
        # The result JSON is the heavy column, and picking the counted submission does not need it.
        .options(defer(Submission.result))
    )
    for sub, user in rows:
        by_student[user.id].append(sub)
        users[user.id] = user
    granted = {ext.user_id: ext for ext, _ in extensions.stored(session, slugs=[assignment.slug])}
    found = []
    for user_id, subs in by_student.items():
        deadline = extensions.deadline_with(assignment, granted.get(user_id))
        rows = [
            gradebook.SubmissionRow(
                id=s.id,
                student_id=users[user_id].login,
                assignment=s.assignment,
                submitted_at=s.submitted_at,
                status=s.graded_status or s.status,
                score=s.score,
                max_score=s.max_score,
                pinned=s.pinned,
            )
            for s in subs
        ]
        chosen = gradebook.counted_submission(rows, deadline, assignment.submissions.counts)
        if chosen is not None:
            sub = next(s for s in subs if s.id == chosen.submission.id)
            found.append(Entry(student=users[user_id], submission=sub))
    return sorted(found, key=lambda entry: entry.student.login)


@dataclass(frozen=True)
class Progress:
    question: str
    title: str
    graded: int
    total: int


def progress(session: Session, *, assignment: Assignment, found: list[Entry] | None = None) -> list[Progress]:
    """Graded / total per question, over the students with a finished submission."""
    found = entries(session, assignment=assignment) if found is None else found
    counts = rubrics.graded_counts(session, slug=assignment.slug, user_ids=[e.student.id for e in found])
    return [Progress(q.id, q.title, counts.get(q.id, 0), len(found)) for q in assignment.questions]


def next_ungraded(
    session: Session, *, assignment: Assignment, question_id: str, after: str | None = None
) -> Entry | None:
    """The first student after `after` (a login; else the first) without a grade on this question,
    wrapping around; None when every one is graded."""
    found = entries(session, assignment=assignment)
    graded = rubrics.graded_user_ids(session, slug=assignment.slug, question_id=question_id)
    start = next((i + 1 for i, e in enumerate(found) if e.student.login == after), 0) if after else 0
    for entry in found[start:] + found[:start]:
        if entry.student.id not in graded:
            return entry
    return None


def neighbour(found: list[Entry], login: str, step: int) -> Entry | None:
    """The student `step` places from `login` in the list (j/k), or None past either end."""
    index = next((i for i, e in enumerate(found) if e.student.login == login), None)
    if index is None or not 0 <= index + step < len(found):
        return None
    return found[index + step]

"""Work coming in: an upload accepted, or submissions to grade again; each committed, then sent to the
graders by id. The one place the API and the pages enqueue.

Not in grader.submissions: grader.grading imports that module, and dispatch reaches grading (through
the embedded threads), so enqueueing from there would be an import cycle.
"""

from sqlalchemy.orm import Session

from grader import dispatch, submissions
from grader.assignments import Assignment
from grader.config import Settings
from grader.models import Submission, User


def accept(
    *,
    session: Session,
    settings: Settings,
    assignment: Assignment,
    student: User,
    filename: str,
    data: bytes,
    by_instructor: bool = False,
) -> Submission:
    """Check, store, insert and commit the upload, then queue it; raises submissions.Refused (nothing
    stored) when a rule refuses it."""
    submission = submissions.create_submission(
        session=session,
        settings=settings,
        assignment=assignment,
        student=student,
        filename=filename,
        data=data,
        by_instructor=by_instructor,
    )
    # Committed: now it may be sent. If the broker is down the sweeper sends it later.
    dispatch.enqueue(session=session, settings=settings, submissions=[(submission.id, submission.queue)])
    session.refresh(submission)
    return submission


def regrade(
    *,
    session: Session,
    settings: Settings,
    slug: str | None = None,
    user_id: int | None = None,
    submission_id: str | None = None,
) -> int:
    """Queue one submission, or those of an assignment (of one student), to be graded again; how many."""
    if submission_id is not None:
        chosen = [submission_id]
    else:
        chosen = submissions.ids(session, slug=slug, user_id=user_id)
    return dispatch.regrade(session=session, settings=settings, submission_ids=chosen)

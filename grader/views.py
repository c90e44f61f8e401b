"""Shape stored rows into API responses for a given viewer."""

from grader import dispatch, extensions, feedback, policies, regrades, release
from grader.assignments import Assignment
from grader.config import Settings
from grader.models import Submission, User
from grader.results import GradeResult
from grader.schemas import AssignmentOut, SubmissionOut


def _never(test) -> bool:
    return test.visibility == "public"


QUEUE_NOTES = {
    "gpu": "waiting for a GPU worker; none is running",
    "cpu": "waiting for a worker; none is running",
}


def submission_out(
    *,
    session,
    settings: Settings,
    submission: Submission,
    student: User,
    viewer: User,
    assignment: Assignment | None,
    due: policies.Deadline | None = None,
) -> SubmissionOut:
    """The submission as `viewer` may see it (`due`: the student's deadline, if already looked up)."""
    out = SubmissionOut(
        id=submission.id,
        assignment=submission.assignment,
        student=student.login,
        status=submission.status,
        filename=submission.filename,
        format=submission.format,
        submitted_at=submission.submitted_at,
        started_at=submission.started_at,
        finished_at=submission.finished_at,
        attempts=submission.attempts,
        score=submission.score,
        max_score=submission.max_score,
    )
    if assignment is not None:
        if due is None:
            due = extensions.deadline(session=session, assignment=assignment, user_id=student.id)
        out.late_seconds = max(0, int((submission.submitted_at - due.due).total_seconds()))
        out.penalty_percent = float(policies.penalty_percent(due, submission.submitted_at))
    if submission.status == "queued" and not settings.embedded:
        if not dispatch.serving(session=session, settings=settings, queue=submission.queue):
            out.queue_note = QUEUE_NOTES.get(submission.queue)
    result = GradeResult.model_validate(submission.result) if submission.result else None
    # Never graded (graded_status unset, as for every upload being answered): no grading to look up.
    regraded = None
    if submission.graded_status is not None:
        regraded = regrades.last_regrade(session, submission_id=submission.id)
    if regraded is not None:
        out.regraded_at, out.regraded_from = regraded.current_since, regraded.replaced_score
    if viewer.is_staff:
        out.flags, out.flagged, out.pinned, out.worker = (
            result.flags if result else [],
            submission.flagged,
            submission.pinned,
            submission.worker,
        )
        if result:
            out.cell_errors = result.cell_errors
            out.tests, out.error, out.output, out.output_truncated = (
                result.tests,
                result.error,
                result.output,
                result.output_truncated,
            )
    elif result:
        if assignment is None:  # a missing assignment folder: the strictest policy
            out.tests, out.hidden, out.error = feedback.for_student(result, hidden="score", shown=_never)
        else:  # each test as its visibility allows now (grader.release)
            out.tests, out.hidden, out.error = release.for_student(
                session, assignment=assignment, user_id=student.id, result=result
            )
        out.output, out.output_truncated = result.output, result.output_truncated
        out.cell_errors = result.cell_errors
    return out


def assignment_out(assignment: Assignment) -> AssignmentOut:
    policy = assignment.submissions
    return AssignmentOut(
        slug=assignment.slug,
        title=assignment.title,
        released=assignment.config.released,
        due=assignment.due,
        cutoff=assignment.late.cutoff,
        formats=list(assignment.config.formats),
        max_submissions=policy.max,
        per_hour=policy.per_hour,
        counts=policy.counts,
        weight=assignment.config.weight,
        gpu=assignment.sandbox.gpu,
        feedback_hidden=assignment.config.feedback.hidden,
        kind=assignment.config.kind,
        max_upload_mb=assignment.config.max_upload_mb,
    )

"""POST and GET submissions."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from starlette.datastructures import UploadFile

from grader import accounts, catalog, submissions, views
from grader.deps import AssignmentsDep, CurrentUser, SessionDep, SettingsDep
from grader.routes.forms import BadForm, TooLarge, arrival, in_hand, in_turn, receive_form
from grader.routes.spread import spread_next_upload
from grader.schemas import SubmissionOut
from grader.submissions import Refused

router = APIRouter(prefix="/api/submissions", tags=["submissions"])

REFUSED_STATUS = {
    "bad_format": status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    "not_released": status.HTTP_404_NOT_FOUND,
    "closed": status.HTTP_403_FORBIDDEN,
    "no_team": status.HTTP_403_FORBIDDEN,
    "too_large": status.HTTP_413_CONTENT_TOO_LARGE,
    "max_submissions": status.HTTP_429_TOO_MANY_REQUESTS,
    "rate_limited": status.HTTP_429_TOO_MANY_REQUESTS,
}

UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["assignment", "file"],
                    "properties": {
                        "assignment": {"type": "string", "description": "the assignment's slug"},
                        "file": {"type": "string", "format": "binary", "description": "a .ipynb or a .zip"},
                        "student": {
                            "type": "string",
                            "description": "instructors: submit for this student id",
                        },
                    },
                }
            }
        },
    }
}


# Every refusal stores nothing; `detail` says what to fix.
REFUSALS = {
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "after the (student's) cutoff, or a student submitting for someone else"},
    404: {"description": "unknown assignment or student; for students, an assignment not released yet"},
    413: {"description": "the upload is over GRADER_MAX_UPLOAD_BYTES"},
    415: {"description": "a format the assignment does not accept"},
    422: {"description": "not a valid notebook or zip, or a required file is missing"},
    429: {"description": "over the assignment's submission limit or hourly rate (with Retry-After)"},
    503: {"description": "the database is unavailable (with Retry-After)"},
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmissionOut,
    openapi_extra=UPLOAD_FORM,
    responses=REFUSALS,
)
async def submit(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> SubmissionOut:
    """Upload a notebook or zip for grading; answered as soon as it is stored and queued."""
    # Each step in turn is taken in the order the uploads came (the token's read too, when it was not
    # remembered), not behind everyone who came while this one's body streamed.
    arrived = arrival(request)
    try:
        form = await receive_form(request, max_file_bytes=settings.max_upload_bytes)
    except TooLarge as exc:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"uploads are limited to {settings.max_upload_bytes} bytes",
        ) from exc
    except BadForm as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    try:
        slug, upload, on_behalf = form.get("assignment"), form.get("file"), form.get("student")
        if not isinstance(slug, str) or not isinstance(upload, UploadFile):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "send the fields `assignment` and `file`"
            )
        data, filename = await upload.read(), upload.filename or "upload"
    finally:
        await form.close()
    answer = await in_turn(
        accept_upload, session, settings, user, slug, on_behalf, filename, data, arrived=arrived
    )
    spread_next_upload(response.headers, settings, in_hand())
    return answer


def accept_upload(session, settings, user, slug, on_behalf, filename, data) -> SubmissionOut:
    """The upload's work, all of it in one worker thread: FastAPI runs each sync dependency in a thread
    of its own, and in a deadline burst those hops cost the event loop more than the statements they
    run (bench/README.md section 12)."""
    try:
        assignment = catalog.current(session=session, settings=settings).get(slug)
        if assignment is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no assignment {slug!r}")
        return _accept(session, settings, user, assignment, on_behalf, filename, data)
    finally:
        session.close()  # here, not in a thread hop of its own when the request's session closes


def _accept(session, settings, user, assignment, on_behalf, filename, data) -> SubmissionOut:
    student = user
    if on_behalf and accounts.normalize_login(on_behalf) != user.login:
        if not user.is_instructor:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only instructors may submit for another student")
        student = accounts.find(session, login=on_behalf)
        if student is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no student {on_behalf!r}")
    try:
        submission, due = submissions.accept(
            session=session,
            settings=settings,
            assignment=assignment,
            student=student,
            filename=filename,
            data=data,
            by_instructor=user.is_instructor,
        )
    except Refused as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        code = REFUSED_STATUS.get(exc.reason, status.HTTP_422_UNPROCESSABLE_CONTENT)
        raise HTTPException(code, exc.message, headers=headers) from exc
    return views.submission_out(
        session=session,
        settings=settings,
        submission=submission,
        student=student,
        viewer=user,
        assignment=assignment,
        due=due,
    )


@router.get("", response_model=list[SubmissionOut])
def list_submissions(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    assignments: AssignmentsDep,
    assignment: str | None = None,
    student: Annotated[str | None, Query(description="instructors and TAs: this student's only")] = None,
) -> list[SubmissionOut]:
    """Your submissions, newest first (instructors and TAs: everyone's, or one student's)."""
    rows = submissions.listing(
        session,
        user_id=None if user.is_staff else user.id,
        login=accounts.normalize_login(student) if user.is_staff and student else None,
        slug=assignment,
    )
    return [
        views.submission_out(
            session=session,
            settings=settings,
            submission=sub,
            student=owner,
            viewer=user,
            assignment=assignments.get(sub.assignment),
        )
        for sub, owner in rows
    ]


@router.get("/{submission_id}", response_model=SubmissionOut)
def get_submission(
    submission_id: str,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    assignments: AssignmentsDep,
) -> SubmissionOut:
    """One submission: status, score, tests (as much as you may see), timestamps and lateness."""
    row = submissions.with_owner(session, submission_id=submission_id)
    # Someone else's submission is reported as missing, not as forbidden: ids are not to be probed.
    mine = user.is_staff or submissions.owned(session, submission_id=submission_id, user_id=user.id)
    if row is None or not mine:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such submission")
    submission, owner = row
    return views.submission_out(
        session=session,
        settings=settings,
        submission=submission,
        student=owner,
        viewer=user,
        assignment=assignments.get(submission.assignment),
    )

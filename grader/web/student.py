"""The student's pages: their assignments, the upload form, their submissions and results.

A student only ever reaches their own rows: every read here is of their user id.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from grader import (
    accounts,
    catalog,
    extensions,
    gradebook,
    late_days,
    policies,
    regrades,
    release,
    submissions,
)
from grader.assignments import Assignment, LatePolicy
from grader.config import Settings, get_settings
from grader.db import utcnow
from grader.deps import SessionDep
from grader.models import Grading, Submission, User
from grader.results import GradeResult
from grader.routes import forms, spread
from grader.smoke import packaged
from grader.storage import upload_path
from grader.web import grading_student
from grader.web.common import (
    PageError,
    SignedInDep,
    StudentPageDep,
    clock_time,
    counted,
    counted_text,
    lateness_text,
    local_time,
    redirect,
    render,
    score_text,
    submission_row,
)
from grader.web.result_view import StudentResult, student_result

router = APIRouter(include_in_schema=False)

# "submitted": a project milestone's upload, stored for manual grading: nothing more will happen here.
DONE = ("graded", "error", "submitted")
# A refused upload's status on the form (a closed assignment: 403, as on the API); anything else is 400.
REFUSED_STATUS = {"not_released": 404, "closed": 403, "rate_limited": 429}


def time_left(due: datetime, now: datetime) -> str:
    """`2 days 3 hours left`, `40 minutes left`, or `due 5 hours ago`."""
    delta = due - now
    seconds = abs(int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = f"{days} day{'s' * (days != 1)}" + (f" {hours} hour{'s' * (hours != 1)}" if hours else "")
    elif hours:
        text = f"{hours} hour{'s' * (hours != 1)}" + (f" {minutes} min" if minutes else "")
    else:
        text = f"{minutes} minute{'s' * (minutes != 1)}"
    return f"due {text} ago" if delta < timedelta(0) else f"{text} left"


def late_policy_text(policy: LatePolicy, timezone: str, cutoff: datetime | None = None) -> str:
    """The late policy in one sentence for students; `cutoff`: the student's own (an extension moves it),
    else the policy's."""
    if policy.penalty_percent == 0:
        text = "Late submissions are not penalised"
    else:
        text = (
            f"{policy.penalty_percent:g}% off per {policy.unit} (or part of one) late, "
            f"at most {policy.max_penalty_percent:g}%"
        )
        if policy.grace_minutes:
            text += f", after a grace period of {policy.grace_minutes} minutes"
    cutoff = cutoff or policy.cutoff
    if cutoff:
        text += f"; no uploads after {local_time(cutoff, timezone)}"
    return text + "."


def charged(sub: Submission) -> bool:
    """Counts against the submission limits: everything but what our infrastructure lost and what could
    not be graded at all (submissions.check_limits)."""
    return sub.error_kind != "infrastructure" and not sub.ungradable


@dataclass
class AssignmentRow:
    assignment: Assignment
    deadline: policies.Deadline
    extended: bool
    due_text: str
    time_left: str
    late_text: str
    used: int
    allowed: int | None
    per_hour: int | None
    counted: gradebook.Scored | None
    open: bool
    cutoff_text: str
    has_starter: bool = False

    @property
    def counted_text(self) -> str:
        return counted_text(self.counted)


@dataclass
class SubmissionItem:
    submission: Submission
    submitted_text: str
    late_units: int
    penalty: Decimal
    counts: bool
    lateness: str = ""


@dataclass
class AssignmentPage:
    row: AssignmentRow
    submissions: list[SubmissionItem] = field(default_factory=list)
    refusal: str | None = None  # why an upload would be refused right now


def _row(
    session: Session,
    user: User,
    assignment: Assignment,
    subs: list[Submission],
    now: datetime,
    late_days_spent: int = 0,
):
    tz = assignment.course.timezone
    extension = extensions.find(session, user_id=user.id, slug=assignment.slug)
    deadline = extensions.deadline_with(assignment, extension)
    policy = assignment.submissions
    return AssignmentRow(
        assignment=assignment,
        deadline=deadline,
        extended=extension is not None,
        due_text=local_time(deadline.due, tz),
        time_left=time_left(deadline.due, now),
        late_text=late_policy_text(deadline.policy, tz, deadline.cutoff),
        used=sum(charged(s) for s in subs),
        allowed=policy.max,
        per_hour=policy.per_hour,
        # After the release, the manual points count in the student's standing too.
        # With late days, the days the gradebook spends here (late_days.for_student) lower the penalty.
        counted=counted(
            subs,
            user.login,
            deadline,
            assignment,
            grading_student.released_manual(session, user, assignment),
            late_days_left=late_days_spent,
        ),
        open=deadline.cutoff is None or now <= deadline.cutoff,
        cutoff_text=local_time(deadline.cutoff, tz) if deadline.cutoff else "",
        has_starter=assignment.starter_dir.is_dir(),
    )


def assignment_rows(
    session: Session, *, user: User, settings: Settings, standing: late_days.LateDayStanding | None = None
) -> list[AssignmentRow]:
    """The released assignments, open ones first, each group soonest due first, with this student's
    standing on each (`standing`: their late days, late_days.for_student, which the counted scores spend)."""
    now = utcnow()
    spent = standing.by_assignment if standing else {}
    rows = [
        _row(
            session,
            user,
            a,
            submissions.of_student(session, user_id=user.id, slug=a.slug),
            now,
            spent.get(a.slug, 0),
        )
        for a in catalog.current(session=session, settings=settings).values()
        if policies.released(a, now)
    ]
    return sorted(rows, key=lambda row: (not row.open, row.deadline.due))


def refusal_text(
    session: Session, exc: submissions.Refused, assignment: Assignment, user: User, now: datetime
) -> str:
    """The API's refusal said for a person: times in the course's zone, not UTC or seconds."""
    tz = assignment.course.timezone
    policy = assignment.submissions
    if exc.reason == "rate_limited" and exc.retry_after is not None:
        at = clock_time(now + timedelta(seconds=exc.retry_after), tz, now)
        allowed = f"{policy.per_hour} submission{'s' * (policy.per_hour != 1)}"
        return f"You have used the {allowed} allowed per hour: try again at {at}."
    if exc.reason == "closed":
        cutoff = extensions.deadline(session=session, assignment=assignment, user_id=user.id).cutoff
        when = local_time(cutoff, tz) if cutoff else "its cutoff"
        return f"{assignment.title} closed at {when}; uploads are no longer accepted."
    if exc.reason == "max_submissions":
        return f"You have used all {policy.max} submissions for {assignment.title}."
    return exc.message


def refusal_reason(session: Session, assignment: Assignment, user: User, now: datetime) -> str | None:
    """Why this student cannot upload now (cutoff, submission limits): the API's own check."""
    try:
        submissions.check_limits(session=session, assignment=assignment, user_id=user.id, now=now)
    except submissions.Refused as exc:
        return refusal_text(session, exc, assignment, user, now)
    return None


def assignment_page(
    session: Session,
    *,
    user: User,
    slug: str,
    settings: Settings,
    standing: late_days.LateDayStanding | None = None,
) -> AssignmentPage | None:
    """One released assignment: the student's standing, their submissions, and whether they may upload
    (`standing`: their late days, as for assignment_rows)."""
    assignment = catalog.current(session=session, settings=settings).get(slug)
    now = utcnow()
    if assignment is None or not policies.released(assignment, now):
        return None
    subs = submissions.of_student(session, user_id=user.id, slug=slug)
    spent = standing.by_assignment.get(slug, 0) if standing else 0
    row = _row(session, user, assignment, subs, now, spent)
    counted_id = row.counted.submission.id if row.counted else None
    tz = assignment.course.timezone
    items = [
        SubmissionItem(
            submission=s,
            submitted_text=local_time(s.submitted_at, tz),
            late_units=policies.late_units(row.deadline, s.submitted_at),
            penalty=policies.penalty_percent(row.deadline, s.submitted_at),
            counts=s.id == counted_id,
            lateness=lateness_text(row.deadline, s.submitted_at),
        )
        for s in subs
    ]
    return AssignmentPage(row=row, submissions=items, refusal=refusal_reason(session, assignment, user, now))


@dataclass
class SubmissionView:
    assignment: Assignment
    submission: Submission
    submitted_text: str
    result: StudentResult | None
    late_units: int
    penalty: Decimal
    final_score: Decimal | None
    counts: bool
    state: dict
    lateness: str = ""
    score: str = ""  # before the late penalty
    final_text: str = ""  # after it
    regraded: Grading | None = None  # the current grading, when a regrade replaced an earlier one


def _state(sub: Submission) -> dict:
    notes = {
        "queued": "Waiting for a grading worker ...",
        "running": "Running the tests in the sandbox ...",
        "graded": "Graded.",
        "error": "Could not be graded.",
        "submitted": "Received; it is graded by hand.",
    }
    return {"id": sub.id, "status": sub.status, "done": sub.status in DONE, "note": notes.get(sub.status, "")}


def submission_view(session: Session, *, user: User, submission_id: str, settings: Settings):
    """One of the student's submissions: result, lateness, whether it counts; None if not theirs."""
    sub = submissions.owned(session, submission_id=submission_id, user_id=user.id)
    if sub is None:
        return None
    assignment = catalog.current(session=session, settings=settings).get(sub.assignment)
    if assignment is None:
        return None
    deadline = extensions.deadline(session=session, assignment=assignment, user_id=user.id)
    result = None
    # A submission being regraded keeps its current grading until the new one is in (graded_status).
    if (sub.status in DONE or sub.graded_status) and sub.result:
        shown = release.shown_for(
            assignment,
            now=utcnow(),
            due=deadline.due,
            released=release.released(session, slug=assignment.slug),
        )
        result = student_result(
            GradeResult.model_validate(sub.result), assignment.config.feedback.hidden, shown
        )
    scored = gradebook.score(submission_row(sub, user.login), deadline)
    chosen = counted(
        submissions.of_student(session, user_id=user.id, slug=sub.assignment),
        user.login,
        deadline,
        assignment,
    )
    final = None
    current = sub.graded_status or sub.status  # a regrade shows the current grading until the new one is in
    if current == "graded" and sub.max_score:
        final = gradebook.rounded(Decimal(repr(sub.score or 0)) * (100 - scored.penalty) / 100)
    return SubmissionView(
        assignment=assignment,
        submission=sub,
        submitted_text=local_time(sub.submitted_at, assignment.course.timezone),
        result=result,
        late_units=scored.late_units,
        penalty=scored.penalty,
        final_score=final,
        counts=chosen is not None and chosen.submission.id == sub.id,
        state=_state(sub),
        lateness=lateness_text(deadline, sub.submitted_at),
        score=score_text(sub.score, sub.max_score) if current == "graded" else "",
        final_text=score_text(final, sub.max_score) if final is not None else "",
        regraded=regrades.last_regrade(session, submission_id=sub.id),
    )


# ---- the pages ---------------------------------------------------------------------------------------


@router.get("/assignments", response_class=HTMLResponse)
def assignment_list(request: Request, session: SessionDep, web: StudentPageDep) -> Response:
    """The released assignments with the student's standing on each."""
    settings = get_settings()
    # One gradebook computation of the late days serves the rows' scores and the line that shows them.
    standing = late_days.for_student(session, settings=settings, user=web.user)
    rows = assignment_rows(session, user=web.user, settings=settings, standing=standing)
    return render(
        request,
        "student_assignments.html",
        web=web,
        title="Assignments",
        nav="assignments",
        rows=rows,
        late_days=standing,
    )


def _assignment_page(request: Request, session, web, slug: str, *, error: str = "", status: int = 200):
    settings = get_settings()
    standing = late_days.for_student(session, settings=settings, user=web.user)
    page = assignment_page(session, user=web.user, slug=slug, settings=settings, standing=standing)
    if page is None:
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    return render(
        request,
        "student_assignment.html",
        web=web,
        status_code=status,
        title=page.row.assignment.title,
        nav="assignments",
        page=page,
        error=error,
        max_upload_bytes=settings.max_upload_bytes,
        late_days=standing,
        grading_panel=grading_student.student_panel(session, user=web.user, assignment=page.row.assignment),
    )


@router.get("/assignments/{slug}", response_class=HTMLResponse)
def assignment_detail(request: Request, session: SessionDep, web: StudentPageDep, slug: str) -> Response:
    """One assignment: the upload form and the student's submissions."""
    return _assignment_page(request, session, web, slug)


@router.post("/assignments/{slug}/submit")
async def submit(request: Request, session: SessionDep, web: StudentPageDep, slug: str) -> Response:
    """Accept an upload from the form (or from its script, which asks for JSON). Async only to read the
    form as it streams: the database work runs in worker threads, never on the event loop, and as for
    the API's uploads it is one step in turn (grader.routes.submissions); the sign-in was read, if it
    was not remembered, in a turn before it, in a session of its own (accounts.read_sign_ins)."""
    settings, arrived = get_settings(), forms.arrival(request)  # its steps in turn go in arrival order
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        filename, data = await _read_upload(request, web, settings)
    except _Unread as exc:
        return await forms.in_turn(
            _refuse, request, session, web, slug, wants_json, *exc.args, arrived=arrived
        )
    answer = await forms.in_turn(
        _accept_form, request, session, web, settings, slug, filename, data, wants_json, arrived=arrived
    )
    spread.spread_next_upload(answer.headers, settings, forms.in_hand())
    return answer


class _Unread(Exception):
    """No upload could be taken from the form: the message for the student, and the status."""


async def _read_upload(request: Request, web, settings: Settings) -> tuple[str, bytes]:
    try:
        form = await forms.receive_form(request, max_file_bytes=settings.max_upload_bytes)
    except forms.TooLarge as exc:
        limit = settings.max_upload_bytes // 2**20
        raise _Unread(f"The file is larger than the limit of {limit} MiB.", 413) from exc
    except forms.BadForm as exc:
        raise _Unread(f"The upload could not be read: {exc}", 400) from exc
    try:
        if not accounts.csrf_matches(web.csrf_token, str(form.get("csrf_token") or "")):
            raise _Unread("This form is stale or came from another site; reload the page and try again.", 403)
        upload = form.get("file")
        if upload is None or isinstance(upload, str) or not upload.filename:
            raise _Unread("Choose a file to upload.", 400)
        return upload.filename, await upload.read()
    finally:
        await form.close()


def _refuse(request: Request, session: Session, web, slug: str, wants_json: bool, message: str, status: int):
    if wants_json:
        return JSONResponse({"detail": message}, status_code=status)
    return _assignment_page(request, session, web, slug, error=message, status=status)


def _accept_form(request, session, web, settings, slug, filename, data, wants_json) -> Response:
    assignment = catalog.current(session=session, settings=settings).get(slug)
    if assignment is None or not policies.released(assignment, utcnow()):
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    try:
        submission, _ = submissions.accept(
            session=session,
            settings=settings,
            assignment=assignment,
            student=web.user,
            filename=filename,
            data=data,
        )
    except submissions.Refused as exc:
        message = refusal_text(session, exc, assignment, web.user, utcnow())
        status = REFUSED_STATUS.get(exc.reason, 400)
        return _refuse(request, session, web, assignment.slug, wants_json, message, status)
    url = f"/submissions/{submission.id}"
    return JSONResponse({"url": url}, status_code=201) if wants_json else redirect(url)


@router.get("/assignments/{slug}/starter")
def starter_download(session: SessionDep, web: StudentPageDep, slug: str) -> Response:
    """The assignment's starter: its notebook as is, or its files zipped."""
    assignment = catalog.current(session=session, settings=get_settings()).get(slug)
    if (
        assignment is None
        or not policies.released(assignment, utcnow())
        or not assignment.starter_dir.is_dir()
    ):
        raise PageError(404, "No starter", f"There is no starter for {slug!r}.")
    name, data = packaged(assignment.starter_dir)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{slug}-{name}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/submissions/{submission_id}/download")
def submission_download(session: SessionDep, web: StudentPageDep, submission_id: str) -> Response:
    """The student's own upload, exactly as they sent it."""
    sub = submissions.owned(session, submission_id=submission_id, user_id=web.user.id)
    path = upload_path(get_settings(), sub.sha256) if sub else None
    if sub is None or not path.is_file():
        raise PageError(404, "No such submission", "There is no such submission among yours.")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=sub.filename,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"},
    )


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
def submission_detail(
    request: Request, session: SessionDep, web: SignedInDep, submission_id: str
) -> Response:
    """One of the student's submissions with its result (staff go to their own view of it)."""
    if web.user.is_instructor:
        return redirect(f"/instructor/submissions/{submission_id}")
    if web.user.role != "student":
        raise PageError(403, "Students only", "These pages are for students.")
    view = submission_view(session, user=web.user, submission_id=submission_id, settings=get_settings())
    if view is None:
        # Someone else's submission reads exactly like one that does not exist.
        raise PageError(404, "No such submission", "There is no such submission among yours.")
    return render(
        request,
        "submission.html",
        web=web,
        title=f"Submission to {view.assignment.title}",
        nav="assignments",
        view=view,
    )


@router.get("/submissions/{submission_id}/status.json")
def submission_status(session: SessionDep, web: StudentPageDep, submission_id: str) -> JSONResponse:
    """The small JSON the submission page polls until grading is done."""
    sub = submissions.owned(session, submission_id=submission_id, user_id=web.user.id)
    if sub is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return JSONResponse(_state(sub), headers={"Cache-Control": "no-store"})

"""The grading workflow's API: manual grades (staff), the release switch and regrade previews
(instructors), regrade requests (students ask, staff answer), and what a student sees of it."""

from fastapi import APIRouter, HTTPException, status

from grader import accounts, grading_queue, regrade_requests, regrades, release, rubrics
from grader.assignments import Assignment
from grader.deps import AssignmentsDep, CurrentUser, InstructorDep, SessionDep, SettingsDep, StaffDep
from grader.models import ManualGrade, RegradeRequest, RegradeRun, User
from grader.schemas import (
    AppliedOut,
    GradingOut,
    ManualChangeOut,
    ManualGradeIn,
    ManualGradeOut,
    MyGradingOut,
    PerTestShiftOut,
    ProgressOut,
    RegradeAnswerIn,
    RegradePreviewOut,
    RegradeRequestIn,
    RegradeRequestOut,
    ReleaseIn,
    ReleaseOut,
    ScoreChangeOut,
    StudentGradingOut,
)

router = APIRouter(prefix="/api/grading", tags=["grading"])


def _assignment(assignments: dict[str, Assignment], slug: str) -> Assignment:
    if slug not in assignments:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no assignment {slug!r}")
    return assignments[slug]


def _student(session, login: str) -> User:
    student = accounts.find(session, login=login, role="student")
    if student is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no student {login!r}")
    return student


def _grade_out(assignment: Assignment, grade: ManualGrade) -> ManualGradeOut:
    question = assignment.question(grade.question)
    return ManualGradeOut(
        question=grade.question,
        points=grade.points,
        max_points=question.points if question else 0,
        items=list(grade.items),
        comment=grade.comment,
        adjustment=grade.adjustment,
        adjustment_reason=grade.adjustment_reason,
        graded_at=grade.graded_at,
    )


def _request_out(request: RegradeRequest) -> RegradeRequestOut:
    return RegradeRequestOut(
        id=request.id,
        question=request.question,
        message=request.message,
        created_at=request.created_at,
        answer=request.answer,
        answered_at=request.answered_at,
        points_before=request.points_before,
        points_after=request.points_after,
    )


def _student_grading(session, assignment: Assignment, student: User) -> StudentGradingOut:
    grades = rubrics.grades_of(session, user_id=student.id, slug=assignment.slug)
    return StudentGradingOut(
        assignment=assignment.slug,
        student=student.login,
        released=release.released(session, slug=assignment.slug),
        manual_points=rubrics.total_for(session, assignment=assignment, user_id=student.id),
        manual_max=assignment.manual_max,
        grades=[_grade_out(assignment, g) for q, g in grades.items() if assignment.question(q)],
        history=[
            ManualChangeOut(
                question=c.question, at=c.at, by=c.by, before=c.before, after=c.after, source=c.source
            )
            for c in rubrics.history(session, user_id=student.id, slug=assignment.slug)
        ],
    )


@router.get("/{slug}/progress", response_model=list[ProgressOut])
def progress(slug: str, session: SessionDep, _: StaffDep, assignments: AssignmentsDep) -> list[ProgressOut]:
    """Graded / total per manually graded question."""
    found = grading_queue.progress(session, assignment=_assignment(assignments, slug))
    return [ProgressOut(question=p.question, title=p.title, graded=p.graded, total=p.total) for p in found]


@router.get("/{slug}/students/{login}", response_model=StudentGradingOut)
def student_grading(
    slug: str, login: str, session: SessionDep, _: StaffDep, assignments: AssignmentsDep
) -> StudentGradingOut:
    """One student's manual grades and their history (who, when, before, after)."""
    return _student_grading(session, _assignment(assignments, slug), _student(session, login))


@router.put("/{slug}/students/{login}/questions/{question}", response_model=StudentGradingOut)
def grade_question(
    slug: str,
    login: str,
    question: str,
    body: ManualGradeIn,
    session: SessionDep,
    grader: StaffDep,
    assignments: AssignmentsDep,
) -> StudentGradingOut:
    """Grade one question of one student: rubric items, a comment, an adjustment with its reason."""
    assignment = _assignment(assignments, slug)
    student = _student(session, login)
    try:
        rubrics.save(
            session=session,
            assignment=assignment,
            student=student,
            question_id=question,
            items=body.items,
            comment=body.comment,
            grader=grader,
            adjustment=body.adjustment,
            adjustment_reason=body.adjustment_reason,
            add_to_bank=body.add_to_bank,
        )
    except rubrics.BadGrade as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _student_grading(session, assignment, student)


@router.get("/{slug}/questions/{question}/comments", response_model=list[str])
def comment_bank(
    slug: str, question: str, session: SessionDep, _: StaffDep, assignments: AssignmentsDep
) -> list[str]:
    """The question's comment bank."""
    return rubrics.bank(session, assignment=_assignment(assignments, slug), question_id=question)


@router.get("/{slug}/mine", response_model=MyGradingOut)
def my_grading(
    slug: str, session: SessionDep, user: CurrentUser, assignments: AssignmentsDep
) -> MyGradingOut:
    """Your manual grades and regrade requests: after the release only."""
    assignment = _assignment(assignments, slug)
    if not release.released(session, slug=slug):
        return MyGradingOut(assignment=slug, released=False)
    grades = rubrics.grades_of(session, user_id=user.id, slug=slug)
    return MyGradingOut(
        assignment=slug,
        released=True,
        manual_points=rubrics.total_for(session, assignment=assignment, user_id=user.id),
        manual_max=assignment.manual_max,
        grades=[_grade_out(assignment, g) for q, g in grades.items() if assignment.question(q)],
        requests=[_request_out(r) for r in regrade_requests.of_student(session, user_id=user.id, slug=slug)],
    )


@router.put("/{slug}/release", response_model=ReleaseOut)
def set_release(
    slug: str, body: ReleaseIn, session: SessionDep, instructor: InstructorDep, assignments: AssignmentsDep
) -> ReleaseOut:
    """Release the assignment's grades to students (or take the release back)."""
    _assignment(assignments, slug)
    release.set_released(session=session, slug=slug, by=instructor, release=body.released)
    found = release.state(session, slug=slug)
    return ReleaseOut(assignment=slug, released=found.released, released_at=found.released_at)


def _preview_out(session, run: RegradeRun) -> RegradePreviewOut:
    found = regrades.preview(session, run=run)
    return RegradePreviewOut(
        id=run.id,
        assignment=run.assignment,
        state=run.state,
        total=run.total,
        pending=found.pending,
        up=len(found.up),
        down=len(found.down),
        unchanged=found.unchanged,
        changes=[
            ScoreChangeOut(
                student=c.login,
                submission=c.submission_id,
                before=c.before,
                after=c.after,
                before_status=c.before_status,
                after_status=c.after_status,
                delta=c.delta,
                stale=c.stale,
            )
            for c in found.changes
        ],
        tests=[PerTestShiftOut(name=t.name, now_pass=t.now_pass, now_fail=t.now_fail) for t in found.tests],
    )


@router.post(
    "/{slug}/regrade-preview", response_model=RegradePreviewOut, status_code=status.HTTP_202_ACCEPTED
)
def start_preview(
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    instructor: InstructorDep,
    assignments: AssignmentsDep,
) -> RegradePreviewOut:
    """Regrade every finished submission into gradings that are not current yet; poll the preview."""
    _assignment(assignments, slug)
    try:
        run = regrades.start_preview(session=session, settings=settings, slug=slug, by=instructor)
    except regrades.RegradeConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return _preview_out(session, run)


def _run(session, run_id: int) -> RegradeRun:
    run = session.get(RegradeRun, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such regrade preview")
    return run


@router.get("/regrades/{run_id}", response_model=RegradePreviewOut)
def get_preview(run_id: int, session: SessionDep, _: InstructorDep) -> RegradePreviewOut:
    """What applying would change: scores up and down, by how much, per test, students named."""
    return _preview_out(session, _run(session, run_id))


@router.post("/regrades/{run_id}/apply", response_model=AppliedOut)
def apply_preview(run_id: int, session: SessionDep, instructor: InstructorDep) -> AppliedOut:
    """Make the preview's gradings current."""
    try:
        done = regrades.apply(session=session, run=_run(session, run_id), by=instructor)
    except regrades.RegradeConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return AppliedOut(applied=done.applied, skipped=done.skipped)


@router.post("/regrades/{run_id}/discard", response_model=AppliedOut)
def discard_preview(run_id: int, session: SessionDep, instructor: InstructorDep) -> AppliedOut:
    """Close the preview without applying it."""
    try:
        left = regrades.discard(session=session, run=_run(session, run_id), by=instructor)
    except regrades.RegradeConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return AppliedOut(applied=0, skipped=left)


@router.get("/submissions/{submission_id}/gradings", response_model=list[GradingOut])
def gradings(submission_id: str, session: SessionDep, _: StaffDep) -> list[GradingOut]:
    """Every grading of one submission, newest first; the current one marked."""
    return [
        GradingOut(
            id=g.id,
            created_at=g.created_at,
            status=g.status,
            score=g.score,
            max_score=g.max_score,
            current=g.current,
            current_since=g.current_since,
            regrade_run=g.regrade_run_id,
        )
        for g in regrades.history(session, submission_id=submission_id)
    ]


@router.post("/{slug}/requests", response_model=RegradeRequestOut, status_code=status.HTTP_201_CREATED)
def ask_for_regrade(
    slug: str, body: RegradeRequestIn, session: SessionDep, user: CurrentUser, assignments: AssignmentsDep
) -> RegradeRequestOut:
    """A student asks for a review of one question (after the release)."""
    if user.role != "student":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "students ask for regrades")
    try:
        request = regrade_requests.ask(
            session=session,
            assignment=_assignment(assignments, slug),
            student=user,
            question_id=body.question,
            message=body.message,
        )
    except regrade_requests.BadRequest as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _request_out(request)


@router.get("/{slug}/requests", response_model=list[RegradeRequestOut])
def list_requests(slug: str, session: SessionDep, _: StaffDep) -> list[RegradeRequestOut]:
    """Every regrade request on one assignment, unanswered first."""
    return [_request_out(r) for r, _ in regrade_requests.of_assignment(session, slug=slug)]


@router.post("/requests/{request_id}/answer", response_model=RegradeRequestOut)
def answer_request(
    request_id: int, body: RegradeAnswerIn, session: SessionDep, grader: StaffDep, assignments: AssignmentsDep
) -> RegradeRequestOut:
    """Answer a regrade request; with `adjustment`, change the question's points."""
    request = session.get(RegradeRequest, request_id)
    if request is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such regrade request")
    try:
        regrade_requests.answer(
            session=session,
            assignment=_assignment(assignments, request.assignment),
            request=request,
            grader=grader,
            text=body.answer,
            adjustment=body.adjustment,
        )
    except (regrade_requests.BadRequest, rubrics.BadGrade) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _request_out(request)

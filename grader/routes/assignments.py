"""Assignments and regrading."""

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, status

from grader import accounts, catalog, policies, submissions, views
from grader.deps import AssignmentsDep, CurrentUser, InstructorDep, SessionDep, SettingsDep
from grader.schemas import AssignmentOut, RegradeOut, SmokeIn, SmokeOut

router = APIRouter(prefix="/api", tags=["assignments"])


@router.get("/assignments", response_model=list[AssignmentOut])
def list_assignments(user: CurrentUser, assignments: AssignmentsDep) -> list[AssignmentOut]:
    """The assignments (students see released ones only)."""
    now = datetime.now(UTC)
    return [
        views.assignment_out(a) for a in assignments.values() if user.is_staff or policies.released(a, now)
    ]


@router.post("/assignments/{slug}/regrade", response_model=RegradeOut, status_code=status.HTTP_202_ACCEPTED)
def regrade(
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    _: InstructorDep,
    assignments: AssignmentsDep,
    student: str | None = None,
) -> RegradeOut:
    """Queue every submission of the assignment (or of one student) to be graded again."""
    if slug not in assignments:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no assignment {slug!r}")
    owner = None
    if student is not None:
        owner = accounts.find(session, login=student)
        if owner is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no student {student!r}")
    queued = submissions.regrade(
        session=session, settings=settings, slug=slug, user_id=owner.id if owner else None
    )
    return RegradeOut(queued=queued)


@router.post("/assignments/{slug}/smoke", response_model=SmokeOut, status_code=status.HTTP_201_CREATED)
def record_smoke(
    slug: str, body: SmokeIn, session: SessionDep, _: InstructorDep, assignments: AssignmentsDep
) -> SmokeOut:
    """Record the outcome of a smoke run (`grader smoke`) for the dashboard."""
    if slug not in assignments:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no assignment {slug!r}")
    run = catalog.record_smoke(session=session, slug=slug, passed=body.passed, detail=body.detail)
    return SmokeOut(assignment=run.assignment, at=run.at, passed=run.passed, detail=run.detail)

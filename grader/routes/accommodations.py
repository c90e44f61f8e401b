"""Extensions and excusals for scripts: one at a time, or a CSV of accommodations at once."""

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from grader import accommodations, accounts, extensions
from grader.deps import AssignmentsDep, InstructorDep, SessionDep
from grader.models import User

router = APIRouter(prefix="/api", tags=["accommodations"])
MAX_CSV_BYTES = 2 * 2**20


class ExtensionIn(BaseModel):
    due: str = Field(
        description="2027-03-05T23:59 (the course's time zone unless an offset is given), or +2d / +36h"
    )
    cutoff: str = Field("", description="the same forms; empty: the assignment's, moved with the due date")
    reason: str = Field("", max_length=extensions.MAX_REASON)


class ExtensionOut(BaseModel):
    student: str
    assignment: str
    due: datetime
    cutoff: datetime | None
    reason: str


class ExcusalIn(BaseModel):
    reason: str = Field("", max_length=extensions.MAX_REASON)


class ExcusalOut(BaseModel):
    student: str
    assignment: str
    reason: str


class AccommodationsOut(BaseModel):
    extensions: int
    excusals: int
    dry_run: bool


def _target(session, assignments, slug: str, student: str) -> tuple[User, object]:
    assignment = assignments.get(slug)
    if assignment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no assignment {slug!r}")
    user = accounts.find(session, login=student, role="student")
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no student {student!r}")
    return user, assignment


@router.get("/extensions", response_model=list[ExtensionOut])
def list_extensions(
    session: SessionDep, _: InstructorDep, assignment: str | None = None
) -> list[ExtensionOut]:
    """Every extension (of one assignment)."""
    rows = extensions.stored(session, slugs=[assignment] if assignment else None)
    return [
        ExtensionOut(student=login, assignment=e.assignment, due=e.due, cutoff=e.cutoff, reason=e.reason)
        for e, login in rows
    ]


@router.put("/extensions/{slug}/{student}", response_model=ExtensionOut)
def put_extension(
    slug: str,
    student: str,
    body: ExtensionIn,
    session: SessionDep,
    _: InstructorDep,
    assignments: AssignmentsDep,
) -> ExtensionOut:
    """Grant or change one student's extension on one assignment."""
    user, assignment = _target(session, assignments, slug, student)
    try:
        ext = extensions.grant(
            session=session,
            user=user,
            assignment=assignment,
            due=body.due,
            cutoff=body.cutoff,
            reason=body.reason,
        )
    except extensions.BadExtension as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return ExtensionOut(
        student=user.login, assignment=slug, due=ext.due, cutoff=ext.cutoff, reason=ext.reason
    )


@router.delete("/extensions/{slug}/{student}", status_code=status.HTTP_204_NO_CONTENT)
def delete_extension(
    slug: str, student: str, session: SessionDep, _: InstructorDep, assignments: AssignmentsDep
) -> Response:
    """Take back one student's extension (404 if there is none)."""
    user, _assignment = _target(session, assignments, slug, student)
    if not extensions.remove(session=session, user=user, slug=slug):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{user.login} has no extension on {slug}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/excusals", response_model=list[ExcusalOut])
def list_excusals(session: SessionDep, _: InstructorDep, assignment: str | None = None) -> list[ExcusalOut]:
    """Every excusal (from one assignment)."""
    rows = extensions.excusals(session, slugs=[assignment] if assignment else None)
    return [ExcusalOut(student=login, assignment=e.assignment, reason=e.reason) for e, login in rows]


@router.put("/excusals/{slug}/{student}", response_model=ExcusalOut)
def put_excusal(
    slug: str,
    student: str,
    body: ExcusalIn,
    session: SessionDep,
    _: InstructorDep,
    assignments: AssignmentsDep,
) -> ExcusalOut:
    """Excuse one student from one assignment: it is left out of their total."""
    user, _assignment = _target(session, assignments, slug, student)
    excusal = extensions.excuse(session=session, user=user, slug=slug, reason=body.reason)
    return ExcusalOut(student=user.login, assignment=slug, reason=excusal.reason)


@router.delete("/excusals/{slug}/{student}", status_code=status.HTTP_204_NO_CONTENT)
def delete_excusal(
    slug: str, student: str, session: SessionDep, _: InstructorDep, assignments: AssignmentsDep
) -> Response:
    """Take back one student's excusal (404 if there is none)."""
    user, _assignment = _target(session, assignments, slug, student)
    if not extensions.unexcuse(session=session, user=user, slug=slug):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{user.login} is not excused from {slug}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/accommodations",
    response_model=AccommodationsOut,
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
    responses={422: {"description": "the file was refused as a whole: `detail` lists every problem by line"}},
)
async def post_accommodations(
    request: Request,
    session: SessionDep,
    _: InstructorDep,
    assignments: AssignmentsDep,
    dry_run: bool = False,
) -> AccommodationsOut:
    """A CSV of extensions and excusals (grader.accommodations): all rows are stored, or none."""
    body = await request.body()
    if len(body) > MAX_CSV_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the CSV is limited to {MAX_CSV_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, ["the CSV is not UTF-8 text"]) from exc
    try:
        rows = accommodations.parse(
            text, assignments=assignments, students=accommodations.student_ids(session)
        )
    except accommodations.BadAccommodations as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.problems) from exc
    if dry_run:
        done = accommodations.Applied(
            extensions=sum(r.kind == "extension" for r in rows),
            excusals=sum(r.kind == "excusal" for r in rows),
        )
    else:
        done = accommodations.apply(session, rows)
    return AccommodationsOut(extensions=done.extensions, excusals=done.excusals, dry_run=dry_run)

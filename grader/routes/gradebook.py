"""The instructor's gradebook exports, streamed as CSV."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import StreamingResponse

from grader import gradebook, gradebook_export
from grader.assignments import course_file, load_course
from grader.deps import AssignmentsDep, ExporterDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api", tags=["gradebook"])


def _csv(lines, filename: str) -> StreamingResponse:
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )


def _course(assignments, settings):
    if assignments:
        return next(iter(assignments.values())).course
    return load_course(course_file(settings.assignments_dir / "any"))


@router.get("/gradebook.csv", response_class=StreamingResponse)
def gradebook_csv(
    session: SessionDep,
    settings: SettingsDep,
    _: ExporterDep,
    assignments: AssignmentsDep,
    extra: Annotated[list[gradebook.Extra], Query()] = [],  # noqa: B006
) -> StreamingResponse:
    """One row per student on the roster: percent after penalty per assignment, then the total."""
    ordered = gradebook.in_order(assignments.values())
    lines = gradebook_export.export_csv(
        session=session, assignments=ordered, course=_course(assignments, settings), extra=extra
    )
    return _csv(lines, "gradebook.csv")


@router.get("/gradebook/moodle.csv", response_class=StreamingResponse)
def moodle_csv(
    session: SessionDep, settings: SettingsDep, _: ExporterDep, assignments: AssignmentsDep
) -> StreamingResponse:
    """The gradebook in Moodle's grade-import CSV format (map users by "ID number")."""
    ordered = gradebook.in_order(assignments.values())
    course = _course(assignments, settings)
    return _csv(
        gradebook_export.export_moodle_csv(session=session, assignments=ordered, course=course),
        "moodle-grades.csv",
    )


@router.get("/assignments/{slug}/tests.csv", response_class=StreamingResponse)
def per_test_csv(
    slug: str, session: SessionDep, _: ExporterDep, assignments: AssignmentsDep
) -> StreamingResponse:
    """Which tests each student's counted submission passed, for one assignment."""
    if slug not in assignments:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no assignment {slug!r}")
    return _csv(
        gradebook_export.export_per_test_csv(session=session, assignment=assignments[slug]),
        f"{slug}-tests.csv",
    )

"""The gradebook's CSV files for a signed-in instructor (the API serves the same to a Bearer token).

Downloaded from a page, they usually open in Excel, which reads a CSV as the system's ANSI code page
unless it starts with a UTF-8 byte order mark: with it, "Zoë Ångström" stays Zoë Ångström. Moodle's
grade import skips the mark too, so every file here carries one.
"""

from collections.abc import Iterable, Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from grader import catalog, gradebook, gradebook_export
from grader.config import Settings, get_settings
from grader.deps import SessionDep
from grader.web.common import InstructorPageDep, PageError

router = APIRouter(prefix="/instructor", include_in_schema=False)

BOM = "\ufeff"


def with_bom(lines: Iterable[str]) -> Iterator[str]:
    """The CSV's lines, the first one behind a UTF-8 byte order mark."""
    yield BOM
    yield from lines


def _ordered(session: Session, settings: Settings):
    return gradebook.in_order(catalog.current(session=session, settings=settings).values())


def gradebook_csv_lines(session: Session, *, settings: Settings) -> Iterator[str]:
    """The gradebook CSV, exactly what GET /api/gradebook.csv serves, as lines to stream."""
    assignments = _ordered(session, settings)
    if not assignments:
        return iter(())
    return gradebook_export.export_csv(session=session, assignments=assignments, course=assignments[0].course)


def _download(lines: Iterable[str], filename: str) -> StreamingResponse:
    return StreamingResponse(
        with_bom(lines),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@router.get("/gradebook.csv")
def gradebook_csv(session: SessionDep, web: InstructorPageDep) -> StreamingResponse:
    """The gradebook CSV, as the API serves it."""
    return _download(gradebook_csv_lines(session, settings=get_settings()), "gradebook.csv")


@router.get("/gradebook/moodle.csv")
def moodle_csv(session: SessionDep, web: InstructorPageDep) -> StreamingResponse:
    """The gradebook in Moodle's grade-import format (map users by "ID number")."""
    assignments = _ordered(session, get_settings())
    if not assignments:
        raise PageError(404, "No assignments", "There are no assignments to export yet.")
    lines = gradebook_export.export_moodle_csv(
        session=session, assignments=assignments, course=assignments[0].course
    )
    return _download(lines, "moodle-grades.csv")


@router.get("/assignments/{slug}/tests.csv")
def per_test_csv(session: SessionDep, web: InstructorPageDep, slug: str) -> StreamingResponse:
    """Which tests each student's counted submission passed, for one assignment."""
    assignment = catalog.current(session=session, settings=get_settings()).get(slug)
    if assignment is None:
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    lines = gradebook_export.export_per_test_csv(session=session, assignment=assignment)
    return _download(lines, f"{slug}-tests.csv")

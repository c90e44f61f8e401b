"""The instructor's similarity report of an assignment: the most similar pairs, one pair side by side,
the report as HTML or CSV, and the button that builds a new one (grader.similarity_jobs). Instructors
only: students never see a report, nor learn that one exists."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from grader import catalog, similarity, similarity_export, similarity_jobs
from grader.config import get_settings
from grader.deps import SessionDep
from grader.web.common import InstructorPageDep, PageError, redirect, render
from grader.web.instructor import InstructorFormDep

router = APIRouter(prefix="/instructor/assignments/{slug}/similarity", include_in_schema=False)

# Pairs listed on the page; the downloads hold every pair the report kept.
PAIRS_SHOWN = 100


def _assignment(session, slug: str):
    assignment = catalog.current(session=session, settings=get_settings()).get(slug)
    if assignment is None:
        raise PageError(404, "No such assignment", f"There is no assignment {slug!r}.")
    return assignment


def _report(slug: str) -> similarity.Report:
    report = similarity_jobs.load_report(get_settings(), slug)
    if report is None:
        raise PageError(404, "No report yet", f"No similarity report of {slug} yet: build one first.")
    return report


@router.get("", response_class=HTMLResponse)
def page(request: Request, session: SessionDep, web: InstructorPageDep, slug: str) -> Response:
    """The last report's most similar pairs, and the state of the job building the next one."""
    assignment = _assignment(session, slug)
    settings = get_settings()
    report = similarity_jobs.load_report(settings, slug)
    job = similarity_jobs.read_job(settings, slug)
    return render(
        request,
        "similarity.html",
        web=web,
        title=f"Similarity: {assignment.title}",
        nav="overview",
        assignment=assignment,
        report=report,
        pairs=report.pairs[:PAIRS_SHOWN] if report else [],
        labels={doc.key: doc.label for doc in report.documents} if report else {},
        job=job,
        working=job is not None and job.alive(settings),
        archive=similarity_jobs.archive_for(settings, slug),
        min_shared=similarity.MIN_SHARED_CHARS,
    )


@router.post("")
def build(session: SessionDep, web: InstructorFormDep, slug: str) -> Response:
    """Ask for a new report; the page then shows its progress."""
    _assignment(session, slug)
    job = similarity_jobs.request(settings=get_settings(), slug=slug, trigger="instructor")
    if job.status == "failed":
        message = f"Could not start the report: {job.error}"
    else:
        message = "Building the similarity report."
    return redirect(f"/instructor/assignments/{slug}/similarity?ok={message}")


@router.get("/status.json")
def status(session: SessionDep, web: InstructorPageDep, slug: str) -> Response:
    """The job's state, for the page to show progress and reload when it is done."""
    _assignment(session, slug)
    settings = get_settings()
    job = similarity_jobs.read_job(settings, slug)
    if job is None:
        return JSONResponse({"status": None, "working": False}, headers={"Cache-Control": "no-store"})
    return JSONResponse(
        headers={"Cache-Control": "no-store"},
        content={
            "status": job.status,
            "working": job.alive(settings),
            "stage": job.stage,
            "done": job.done,
            "total": job.total,
            "percent": job.percent,
            "error": job.error,
        },
    )


@router.get("/pair", response_class=HTMLResponse)
def pair(
    request: Request,
    session: SessionDep,
    web: InstructorPageDep,
    slug: str,
    a: Annotated[str, Query(max_length=600)],
    b: Annotated[str, Query(max_length=600)],
) -> Response:
    """Two submissions side by side, the code they share highlighted."""
    assignment = _assignment(session, slug)
    report = _report(slug)
    found = report.pair(a, b)
    left, right = report.document(a), report.document(b)
    if found is None or left is None or right is None:
        raise PageError(404, "No such pair", "The report holds no match between these two submissions.")
    swap = found.a != a  # left is a, as asked; the pair may hold them the other way round
    return render(
        request,
        "similarity_pair.html",
        web=web,
        title=f"{left.label} and {right.label}",
        nav="overview",
        assignment=assignment,
        report=report,
        pair=found,
        sides=[
            (
                left,
                found.share_b if swap else found.share_a,
                found.lines_b if swap else found.lines_a,
                similarity.segments(left.code, found.regions_b if swap else found.regions_a),
            ),
            (
                right,
                found.share_a if swap else found.share_b,
                found.lines_a if swap else found.lines_b,
                similarity.segments(right.code, found.regions_a if swap else found.regions_b),
            ),
        ],
    )


@router.get("/report.csv")
def report_csv(session: SessionDep, web: InstructorPageDep, slug: str) -> Response:
    """Every pair the report kept, as CSV."""
    _assignment(session, slug)
    return StreamingResponse(
        similarity_export.csv_lines(_report(slug)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="similarity-{slug}.csv"'},
    )


@router.get("/report.html")
def report_html(session: SessionDep, web: InstructorPageDep, slug: str) -> Response:
    """The report as one HTML file that needs nothing else: the pairs, and the likely copies side by side."""
    _assignment(session, slug)
    return HTMLResponse(
        similarity_export.html(_report(slug)),
        headers={"Content-Disposition": f'attachment; filename="similarity-{slug}.html"'},
    )

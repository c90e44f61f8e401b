"""The `grader` command."""

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from grader.assignments import InvalidAssignment, Problem, load_assignment, submission_source, validate_folder
from grader.cli_accounts import instructor_app, roster_app, token_app
from grader.cli_course import accommodations_app, course_app, excusal_app, extension_app, teams_app
from grader.config import get_settings
from grader.results import GradeResult, ungraded

app = typer.Typer(help="Autograder for deep-learning homeworks.", no_args_is_help=True)
assignments_app = typer.Typer(help="Check and load assignment folders.", no_args_is_help=True)
app.add_typer(assignments_app, name="assignments")
app.add_typer(roster_app, name="roster")
app.add_typer(instructor_app, name="instructor")
app.add_typer(token_app, name="token")
app.add_typer(course_app, name="course")
app.add_typer(extension_app, name="extension")
app.add_typer(excusal_app, name="excusal")
app.add_typer(accommodations_app, name="accommodations")
app.add_typer(teams_app, name="teams")

console = Console(stderr=True)


def print_problems(path: Path, problems: list[Problem]) -> None:
    console.print(f"[red]{path}: {len(problems)} problem(s)[/red]")
    for problem in problems:
        console.print(f"  {problem}", markup=False, highlight=False)


def grade_path(assignment_dir: Path, submission: Path, *, scramble_args: bool = False) -> GradeResult:
    """Grade a file or folder against an assignment; sandbox failures become an infrastructure result.

    scramble_args: spoil the arguments after each call (for checking a reference solution)."""
    from grader import sandbox
    from grader.uploads import BadUpload, unpack_path

    settings = get_settings()
    if settings.cli_pool_idle_s > 0:
        from grader import parked, pool

        if pool.active() is None:
            pool.install(parked.Parking(settings))  # claim a parked pair; park one for the next command
    assignment = load_assignment(assignment_dir)
    try:
        unpacked = unpack_path(
            submission, assignment, max_bytes=settings.max_unpacked_bytes, max_files=settings.max_upload_files
        )
    except BadUpload as exc:
        return ungraded("student", exc.code, exc.message)
    except OSError as exc:
        return ungraded("student", "bad_upload", str(exc))
    try:
        return sandbox.grade(assignment, unpacked, settings=settings, scramble_args=scramble_args)
    except sandbox.SandboxUnavailable as exc:
        return ungraded("infrastructure", exc.code, str(exc))


def result_table(result: GradeResult) -> Table:
    table = Table(title=f"{result.status}: {result.score:g} / {result.max_score or 0:g}")
    for column in ("test", "points", "outcome", "message"):
        table.add_column(column, overflow="fold")
    colours = {"passed": "green", "failed": "red", "error": "red", "timeout": "yellow", "not_run": "dim"}
    for test in result.tests:
        first_line = test.message.strip().splitlines()[0] if test.message.strip() else ""
        table.add_row(
            test.name,
            f"{test.points:g}/{test.max_points:g}",
            f"[{colours[test.outcome]}]{test.outcome}[/]",
            first_line[:200],
        )
    return table


@app.command()
def grade(
    assignment: Path = typer.Argument(..., help="the assignment folder"),
    submission: Path = typer.Argument(..., help="a notebook, a zip, or a folder with submission.py"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
) -> None:
    """Grade one submission in the sandbox and show the result per test."""
    try:
        with console.status(f"grading {submission.name} against {assignment.name} ..."):
            result = grade_path(assignment, submission)
    except InvalidAssignment as exc:
        print_problems(exc.path, exc.problems)
        raise typer.Exit(2) from exc
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        Console().print(result_table(result))
        if result.error:
            console.print(
                f"[yellow]{result.error.kind} error ({result.error.code}):[/] {result.error.message}"
            )
        for failed in result.cell_errors:
            console.print(
                f"[yellow]notebook cell {failed.cell} raised, the next cells still ran:[/] {failed.message}"
            )
        if result.output_truncated:
            console.print("[yellow]the submission's output was truncated[/]")
    raise typer.Exit(0 if result.status == "graded" else 1)


def build_image(assignment) -> str | None:
    """Build the image that adds the assignment's requirements.txt, unless it exists; None, or the problem."""
    from grader import images, sandbox

    def progress(line: str) -> None:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)

    try:
        images.build(assignment, settings=get_settings(), progress=progress)
    except images.BuildFailed as exc:
        return f"requirements.txt: {exc}"
    except sandbox.SandboxUnavailable as exc:
        return f"requirements.txt: cannot build its image: {exc.message}"
    return None


def solution_warnings(assignment, result: GradeResult) -> list[str]:
    """Record the solution's run as the reference (grader.reference), then grade it once more with its
    arguments spoiled after each call: the tests that fail then read their arguments after the call."""
    from grader import reference

    warnings = []
    try:
        reference.record(assignment.path, result, settings=get_settings())
    except OSError as exc:  # only a cache: the worker computes it when it needs it
        warnings.append(f"could not record the solution's run as the reference: {exc}")
    with console.status(f"{assignment.slug}: grading the solution with its arguments spoiled ..."):
        spoiled = grade_path(assignment.path, submission_source(assignment.solution_dir), scramble_args=True)
    if spoiled.status != "graded":
        reason = spoiled.error.message if spoiled.error else spoiled.status
        return [*warnings, f"could not check which tests read their arguments after the call: {reason}"]
    return [*warnings, *reference.reads_after_call(result, spoiled)]


def print_late_policy(assignment) -> None:
    """The late policy that applies, key by key, and whether the value is the assignment's or the course's."""
    from grader.policies import effective_late_policy

    lines = effective_late_policy(assignment)
    width = max(len(line.key) for line in lines)
    console.print(
        "  late policy (the course's [late], with this assignment's keys on top):",
        markup=False,
        highlight=False,
    )
    for line in lines:
        console.print(
            f"    {line.key:<{width}} = {line.value}  ({line.source})", markup=False, highlight=False
        )


def check_folder(path: Path) -> list[str]:
    """Validate an assignment folder and grade its solution (full marks) and starter (not full marks)."""
    problems = validate_folder(path)
    if problems:
        return [str(p) for p in problems]
    assignment = load_assignment(path)
    print_late_policy(assignment)
    if not assignment.autograded:
        questions = assignment.config.questions
        points = sum(q.points for q in questions)
        console.print(
            f"  no automatic check: graded by hand, {len(questions)} question(s), {points:g} points"
        )
        return []
    if (problem := build_image(assignment)) is not None:
        return [problem]
    failures = []
    for label, folder in (("solution", assignment.solution_dir), ("starter", assignment.starter_dir)):
        if not folder.is_dir():
            continue
        with console.status(f"{assignment.slug}: grading the {label} ..."):
            result = grade_path(path, submission_source(folder))
        console.print(f"  {label}: {result.status} {result.score:g}/{result.max_score or 0:g}")
        if label == "solution" and result.status == "graded":
            for warning in solution_warnings(assignment, result):
                console.print(
                    f"  warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True
                )
        if result.status != "graded":
            failures.append(f"{label}/: could not be graded: {result.error.message if result.error else '?'}")
        elif label == "solution" and not result.full_marks:
            lost = [t.name for t in result.tests if t.points < t.max_points]
            failures.append(
                f"solution/: {result.score:g}/{result.max_score:g}, loses points on " + ", ".join(lost)
            )
        elif label == "starter" and result.full_marks:
            failures.append(
                "starter/: gets full marks; the tests do not test anything the student must write"
            )
    return failures


@assignments_app.command("check")
def assignments_check(paths: list[Path] = typer.Argument(..., help="assignment folders")) -> None:
    """Validate assignment folders: every problem at once, then the solution must get full marks.

    Also warns (without failing) about tests that read their arguments after calling the student's code.
    """
    failed = False
    for path in paths:
        console.print(f"[bold]{path}[/]")
        if path.is_file():  # `assignments/*` also names course.toml and README.md beside the folders
            console.print("  skipped: a file, not an assignment folder")
            continue
        failures = check_folder(path.resolve())
        if failures:
            failed = True
            console.print(f"[red]{len(failures)} problem(s)[/red]")
            for failure in failures:
                console.print(f"  {failure}", markup=False, highlight=False)
        else:
            console.print("  [green]ok[/]")
    raise typer.Exit(1 if failed else 0)


@assignments_app.command("list")
def assignments_list() -> None:
    """Each assignment in the database with its due date and last smoke result."""
    from grader import catalog
    from grader.db import session_factory

    settings = get_settings()
    with session_factory(settings)() as session:
        assignments = catalog.current(session=session, settings=settings)
        table = Table(title=f"assignments in {settings.assignments_dir}")
        for column in ("slug", "title", "due", "weight", "gpu", "last smoke"):
            table.add_column(column)
        for slug, assignment in sorted(assignments.items(), key=lambda item: item[1].due):
            run = catalog.last_smoke(session=session, slug=slug)
            smoke = (
                "never" if run is None else f"{'passed' if run.passed else 'FAILED'} {run.at:%Y-%m-%d %H:%M}"
            )
            if run is not None and not run.passed:
                smoke = f"[red]{smoke}[/]: {run.detail[:80]}"
            table.add_row(
                slug,
                assignment.title,
                assignment.due.isoformat(),
                f"{assignment.config.weight:g}",
                "yes" if assignment.sandbox.gpu else "",
                smoke,
            )
    Console().print(table)


@app.command()
def smoke(
    paths: list[Path] = typer.Argument(
        None, help="assignment folders (default: every one in GRADER_ASSIGNMENTS_DIR)"
    ),
    url: str = typer.Option("http://127.0.0.1:8000", envvar="GRADER_URL", help="the running service"),
    token: str = typer.Option(..., envvar="GRADER_TOKEN", help="an instructor token (grader token create)"),
    timeout_s: float = typer.Option(900, "--timeout", help="how long to wait for all grades"),
) -> None:
    """Grade every reference solution (full marks) and starter (not full marks) through the service's API."""
    import httpx
    from rich.progress import Progress

    from grader.smoke import Smoke, SmokeError

    folders = (
        [p.resolve() for p in paths]
        if paths
        else sorted(p.parent for p in get_settings().assignments_dir.glob("*/assignment.toml"))
    )
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    run = Smoke(client)
    problems = {slug: found for slug, found in run.check_folders(folders).items() if found}
    uploads = []
    try:
        for folder in folders:
            if folder.name not in problems:
                sent = run.upload(folder)
                if not sent:  # a project milestone without tests/
                    console.print(f"  {folder.name:<20} graded by hand: nothing to run", highlight=False)
                uploads += sent
    except (SmokeError, httpx.HTTPError) as exc:
        console.print(f"smoke failed while uploading: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from exc
    try:
        with Progress(console=console) as progress:
            bar = progress.add_task(f"grading {len(uploads)} uploads", total=len(uploads))
            run.wait(uploads, timeout_s=timeout_s, on_progress=lambda upload: progress.advance(bar))
    except httpx.HTTPError as exc:
        # The uploads are safe in the service; say which, so they can be looked up later.
        ids = ", ".join(f"{u.slug} {u.label} {u.id}" for u in uploads)
        console.print(
            f"smoke failed while waiting for grades: {exc}; submitted: {ids}",
            style="red",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1) from exc
    for upload in uploads:
        score = f"{upload.body.get('score') or 0:g}/{upload.body.get('max_score') or 0:g}"
        verdict = upload.verdict()
        console.print(
            f"  {upload.slug:<20} {upload.label:<9} {upload.body.get('status', '?'):<8} {score:<10} "
            f"{'[green]ok[/]' if verdict is None else f'[red]{verdict}[/]'}"
        )
        if verdict:
            problems.setdefault(upload.slug, []).append(verdict)
    try:
        run.save_references(folders, uploads, settings=get_settings())
    except (OSError, ValueError) as exc:  # only a cache: the worker computes it when it needs it
        console.print(f"could not record the reference runs: {exc}", style="yellow", markup=False)
    try:
        for folder in folders:
            run.record(folder.name, problems.get(folder.name, []))
    except httpx.HTTPError as exc:
        console.print(f"could not record the smoke results in the service: {exc}", style="red", markup=False)
        problems.setdefault("(recording)", []).append(str(exc))
    for slug, found in problems.items():
        console.print(f"[red]{slug}: {len(found)} problem(s)[/]")
        for problem in found:
            console.print(f"  {problem}", markup=False, highlight=False)
    console.print("[green]smoke passed[/]" if not problems else "[red]smoke failed[/]")
    raise typer.Exit(1 if problems else 0)


# --- Similarity reports (docs/similarity.md) ---


@app.command("similarity")
def similarity_report(
    slug: str = typer.Argument(..., help="the assignment"),
    archive: Path | None = typer.Option(
        None, help="earlier terms' submissions (default: GRADER_SIMILARITY_ARCHIVE_DIR/SLUG when it exists)"
    ),
    html: Path | None = typer.Option(None, "--html", help="also write the report as one HTML file"),
    csv_file: Path | None = typer.Option(None, "--csv", help="also write every pair as CSV"),
    top: int = typer.Option(20, min=0, help="pairs to print"),
) -> None:
    """Compare every student's counted submission to one assignment, starter and solution taken out; the
    report is stored for the instructor's page too."""
    from rich.progress import Progress

    from grader import catalog, similarity, similarity_export, similarity_jobs
    from grader.db import session_factory

    settings = get_settings()
    if archive is not None and not archive.is_dir():
        console.print(f"--archive {archive}: no such folder", markup=False, highlight=False)
        raise typer.Exit(2)
    with session_factory(settings)() as session, Progress(console=console) as progress:
        assignment = catalog.current(session=session, settings=settings).get(slug)
        if assignment is None:
            console.print(f"no assignment {slug!r} in {settings.assignments_dir}", markup=False)
            raise typer.Exit(2)
        bar = progress.add_task("reading submissions", total=None)

        def advance(stage: str, done: int, total: int) -> None:
            progress.update(bar, description=stage, completed=done, total=total or None)

        report = similarity.build(
            session=session,
            settings=settings,
            assignment=assignment,
            archive=archive or similarity_jobs.archive_for(settings, slug),
            trigger="cli",
            progress=advance,
        )
    similarity_jobs.save_report(settings, report)
    labels = {doc.key: doc.label for doc in report.documents}
    table = Table(title=f"{slug}: {len(report.documents)} submissions, {report.compared} pairs")
    for column in ("score", "A", "B", "A in B", "B in A", "lines", ""):
        table.add_column(column)
    for pair in report.pairs[:top]:
        table.add_row(
            f"{100 * pair.score:.0f}%",
            labels[pair.a],
            labels[pair.b],
            f"{100 * pair.share_a:.0f}%",
            f"{100 * pair.share_b:.0f}%",
            f"{pair.lines_a}/{pair.lines_b}",
            "[red]likely copied[/]" if pair.flagged(report.threshold) else "",
        )
    Console().print(table)
    for reason in report.skipped:
        console.print(f"not compared: {reason}", style="yellow", markup=False, highlight=False)
    if html:
        html.write_text(similarity_export.html(report), encoding="utf-8")
    if csv_file:
        csv_file.write_text("".join(similarity_export.csv_lines(report)), encoding="utf-8")
    console.print(
        f"{len(report.flagged)} pair(s) likely copied (score >= {100 * report.threshold:.0f}%); "
        f"{report.duration_s:.1f} s"
    )


# --- The service: database, API and workers (docs/service.md); accounts and tokens: cli_accounts ---


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from grader.db import migrate as upgrade

    url = get_settings().effective_database_url
    upgrade(url)
    console.print(f"[green]schema up to date[/] ({url.split('@')[-1]})")


def _sync_or_exit() -> None:
    from grader import catalog
    from grader.db import session_factory

    settings = get_settings()
    try:
        with session_factory(settings)() as session:
            loaded = catalog.sync(session=session, settings=settings)
    except InvalidAssignment as exc:
        print_problems(exc.path, exc.problems)
        raise typer.Exit(2) from exc
    console.print(
        f"{len(loaded)} assignment(s) from {settings.assignments_dir}: {', '.join(loaded) or 'none'}"
    )


@assignments_app.command("sync")
def assignments_sync() -> None:
    """Load the assignments folder into the service (refused, with every problem, if a folder is invalid)."""
    _sync_or_exit()


def _uvicorn(host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    os.environ["GRADER_API_PROCESSES"] = str(workers)  # read by each process's settings (config.py)
    uvicorn.run("grader.main:app", host=host, port=port, proxy_headers=True, workers=workers)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
) -> None:
    """The whole service in one command: migrate, sync assignments, the API, grading and the sweeper."""
    import subprocess

    from grader import dispatch, sweeper
    from grader.db import migrate as upgrade

    settings = get_settings()
    upgrade(settings.effective_database_url)
    _sync_or_exit()
    worker_process = None
    if settings.embedded:
        name = dispatch.start_threads(settings)
        sweeper.start(settings=settings, worker=name, queues=["cpu", "gpu"])
        console.print(f"embedded: SQLite at {settings.effective_database_url}, grading in this process")
    else:
        worker_process = subprocess.Popen([sys.executable, "-m", "grader.cli", "worker", "--queues", "cpu"])
    try:
        _uvicorn(host, port)
    finally:
        if worker_process:
            worker_process.terminate()
            worker_process.wait(timeout=30)


@app.command()
def api(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    workers: int = typer.Option(1, min=1, help="API processes (uploads are CPU-bound: one per core)"),
) -> None:
    """Only the API (workers run apart: `grader worker`). Run `grader migrate` first."""
    _sync_or_exit()
    _uvicorn(host, port, workers)


@app.command()
def worker(
    queues: str = typer.Option("cpu", help="queues to serve: cpu, gpu, or cpu,gpu"),
    gpus: int = typer.Option(0, help="GPU worker: this many processes, each pinned to one GPU (0..N-1)"),
    concurrency: int | None = typer.Option(None, help="processes (default: --gpus N, else 1)"),
    name: str | None = typer.Option(None, help="the worker's name (default: QUEUES-PID@HOST)"),
) -> None:
    """A Celery worker grading in the sandbox; needs GRADER_BROKER_URL."""
    import os
    import socket

    from grader.worker import QUEUES
    from grader.worker import app as celery

    settings = get_settings()
    if settings.embedded:
        console.print("no broker configured (GRADER_BROKER_URL): `grader serve` grades in its own process")
        raise typer.Exit(2)
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    if not chosen or any(q not in QUEUES for q in chosen):
        console.print(f"--queues must be among {', '.join(QUEUES)}")
        raise typer.Exit(2)
    if gpus and "gpu" not in chosen:
        console.print("--gpus only makes sense with --queues gpu")
        raise typer.Exit(2)
    celery.conf.grader_gpus = gpus
    # The pid in the name tells a restarted worker from the dead one it replaces (containers, heartbeats).
    name = name or f"{'-'.join(chosen)}-{os.getpid()}@{socket.gethostname()}"
    celery.worker_main(
        [
            "worker",
            "--queues",
            ",".join(chosen),
            "--concurrency",
            str(concurrency or gpus or 1),
            "--hostname",
            name,
            "--pool",
            "prefork",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
    )


if __name__ == "__main__":
    app()

"""The `grader` command."""

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from grader.assignments import InvalidAssignment, Problem, load_assignment, submission_source, validate_folder
from grader.config import get_settings
from grader.results import GradeError, GradeResult

app = typer.Typer(help="Autograder for deep-learning homeworks.", no_args_is_help=True)
assignments_app = typer.Typer(help="Check and load assignment folders.", no_args_is_help=True)
app.add_typer(assignments_app, name="assignments")

console = Console(stderr=True)


def print_problems(path: Path, problems: list[Problem]) -> None:
    console.print(f"[red]{path}: {len(problems)} problem(s)[/red]")
    for problem in problems:
        console.print(f"  {problem}", markup=False, highlight=False)


def grade_path(assignment_dir: Path, submission: Path) -> GradeResult:
    """Grade a file or folder against an assignment; sandbox failures become an infrastructure result."""
    from grader import sandbox
    from grader.uploads import BadUpload, unpack_path

    settings = get_settings()
    assignment = load_assignment(assignment_dir)
    try:
        unpacked = unpack_path(
            submission, assignment, max_bytes=settings.max_unpacked_bytes, max_files=settings.max_upload_files
        )
    except BadUpload as exc:
        return GradeResult(status="error", error=GradeError(kind="student", code=exc.code, message=exc.message))
    except OSError as exc:
        return GradeResult(status="error", error=GradeError(kind="student", code="bad_upload", message=str(exc)))
    try:
        return sandbox.grade(assignment, unpacked, settings=settings)
    except sandbox.SandboxUnavailable as exc:
        return GradeResult(status="error", error=GradeError(kind="infrastructure", code=exc.code, message=str(exc)))


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
            console.print(f"[yellow]{result.error.kind} error ({result.error.code}):[/] {result.error.message}")
        if result.output_truncated:
            console.print("[yellow]the submission's output was truncated[/]")
    raise typer.Exit(0 if result.status == "graded" else 1)


def check_folder(path: Path) -> list[str]:
    """Validate an assignment folder and grade its solution (full marks) and starter (not full marks)."""
    problems = validate_folder(path)
    if problems:
        return [str(p) for p in problems]
    assignment = load_assignment(path)
    failures = []
    for label, folder in (("solution", assignment.solution_dir), ("starter", assignment.starter_dir)):
        if not folder.is_dir():
            continue
        with console.status(f"{assignment.slug}: grading the {label} ..."):
            result = grade_path(path, submission_source(folder))
        console.print(f"  {label}: {result.status} {result.score:g}/{result.max_score or 0:g}")
        if result.status != "graded":
            failures.append(f"{label}/: could not be graded: {result.error.message if result.error else '?'}")
        elif label == "solution" and not result.full_marks:
            lost = [t.name for t in result.tests if t.points < t.max_points]
            failures.append(f"solution/: {result.score:g}/{result.max_score:g}, loses points on " + ", ".join(lost))
        elif label == "starter" and result.full_marks:
            failures.append("starter/: gets full marks; the tests do not test anything the student must write")
    return failures


@assignments_app.command("check")
def assignments_check(paths: list[Path] = typer.Argument(..., help="assignment folders")) -> None:
    """Validate assignment folders: every problem at once, then the solution must get full marks."""
    failed = False
    for path in paths:
        console.print(f"[bold]{path}[/]")
        failures = check_folder(path.resolve())
        if failures:
            failed = True
            console.print(f"[red]{len(failures)} problem(s)[/red]")
            for failure in failures:
                console.print(f"  {failure}", markup=False, highlight=False)
        else:
            console.print("  [green]ok[/]")
    raise typer.Exit(1 if failed else 0)

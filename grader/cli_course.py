"""The course as an instructor scripts it: `grader course shift`, `grader extension`, `grader excusal`,
`grader accommodations import` (and `grader teams import`: grader.cli_teams)."""

from datetime import date
from pathlib import Path

import typer
from rich.console import Console

from grader.config import get_settings

course_app = typer.Typer(help="The course file and its dates.", no_args_is_help=True)
extension_app = typer.Typer(help="Extensions: a later due date for one student.", no_args_is_help=True)
excusal_app = typer.Typer(
    help="Excusals: an assignment left out of one student's total.", no_args_is_help=True
)
accommodations_app = typer.Typer(help="Many extensions and excusals from a CSV.", no_args_is_help=True)
console = Console(stderr=True)


def _say(message: str, style: str = "") -> None:
    console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)


@course_app.command("shift")
def course_shift(
    week1: str | None = typer.Option(None, "--week1", help="the new Monday of week 1 (YYYY-MM-DD)"),
    days: int | None = typer.Option(None, "--days", help="or: move every date by this many days"),
    folder: Path | None = typer.Option(
        None, "--dir", help="the course folder (default: GRADER_ASSIGNMENTS_DIR)"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would change, write nothing"),
) -> None:
    """Move every date of the course (course.toml and each assignment.toml) by the same number of days,
    keeping comments and the course's wall-clock times."""
    from grader import course_shift as shifting

    folder = (folder or get_settings().assignments_dir).resolve()
    try:
        new_week1 = date.fromisoformat(week1) if week1 else None
    except ValueError as exc:
        _say(f"--week1 {week1!r} is not a date (YYYY-MM-DD)", "red")
        raise typer.Exit(2) from exc
    try:
        planned = shifting.plan(folder, week1=new_week1, days=days)
    except shifting.CannotShift as exc:
        _say(str(exc), "red")
        raise typer.Exit(2) from exc
    for item in planned:
        _say(f"{item.path.relative_to(folder.parent)}: {item.changes} date(s)")
    if dry_run:
        _say("dry run: nothing written")
        return
    shifting.apply(planned)
    _say("shifted; a running service picks the new dates up after `grader assignments sync`", "green")


def _student_and_assignment(session, student: str, slug: str):
    from grader import accounts, catalog

    user = accounts.find(session, login=student, role="student")
    assignment = catalog.current(session=session, settings=get_settings()).get(slug)
    if user is None or assignment is None:
        _say(f"no student {student!r}" if user is None else f"no assignment {slug!r}", "red")
        raise typer.Exit(1)
    return user, assignment


@extension_app.command("grant")
def extension_grant(
    student: str = typer.Argument(..., help="the student id"),
    slug: str = typer.Argument(..., help="the assignment"),
    due: str = typer.Option(
        ..., "--due", help="2027-03-05T23:59 (course time) or +2d / +36h after the due date"
    ),
    cutoff: str = typer.Option(
        "", "--cutoff", help="the same forms; default: the cutoff moved with the due date"
    ),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Grant (or change) one student's extension on one assignment."""
    from grader import extensions
    from grader.db import session_factory

    with session_factory(get_settings())() as session:
        user, assignment = _student_and_assignment(session, student, slug)
        try:
            ext = extensions.grant(
                session=session, user=user, assignment=assignment, due=due, cutoff=cutoff, reason=reason
            )
        except extensions.BadExtension as exc:
            _say(f"{slug}: {exc}", "red")
            raise typer.Exit(2) from exc
        _say(
            f"{user.login} on {slug}: due {ext.due.isoformat()}"
            + (f", cutoff {ext.cutoff.isoformat()}" if ext.cutoff else "")
        )


@extension_app.command("remove")
def extension_remove(student: str = typer.Argument(...), slug: str = typer.Argument(...)) -> None:
    """Take back one student's extension."""
    from grader import extensions
    from grader.db import session_factory

    with session_factory(get_settings())() as session:
        user, _ = _student_and_assignment(session, student, slug)
        if not extensions.remove(session=session, user=user, slug=slug):
            _say(f"{user.login} has no extension on {slug}", "yellow")
            raise typer.Exit(1)
    _say(f"removed {student}'s extension on {slug}")


@excusal_app.command("add")
def excusal_add(
    student: str = typer.Argument(...),
    slug: str = typer.Argument(...),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Excuse one student from one assignment: it is left out of their total."""
    from grader import extensions
    from grader.db import session_factory

    with session_factory(get_settings())() as session:
        user, _ = _student_and_assignment(session, student, slug)
        extensions.excuse(session=session, user=user, slug=slug, reason=reason)
    _say(f"excused {student} from {slug}")


@excusal_app.command("remove")
def excusal_remove(student: str = typer.Argument(...), slug: str = typer.Argument(...)) -> None:
    """Take back one student's excusal."""
    from grader import extensions
    from grader.db import session_factory

    with session_factory(get_settings())() as session:
        user, _ = _student_and_assignment(session, student, slug)
        if not extensions.unexcuse(session=session, user=user, slug=slug):
            _say(f"{user.login} is not excused from {slug}", "yellow")
            raise typer.Exit(1)
    _say(f"{student} is no longer excused from {slug}")


@accommodations_app.command("import")
def accommodations_import(
    csv_file: Path = typer.Argument(..., help="student_id,assignment,kind,due,cutoff,reason"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check every row, store nothing"),
) -> None:
    """Extensions and excusals from a CSV: every row is checked first; one bad row refuses the file."""
    from grader import accommodations, catalog
    from grader.db import session_factory

    try:
        text = csv_file.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        _say(f"{csv_file}: {exc}", "red")
        raise typer.Exit(2) from exc
    settings = get_settings()
    with session_factory(settings)() as session:
        try:
            rows = accommodations.parse(
                text,
                assignments=catalog.current(session=session, settings=settings),
                students=accommodations.student_ids(session),
            )
        except accommodations.BadAccommodations as exc:
            _say(f"{csv_file}: refused, nothing stored ({len(exc.problems)} problem(s))", "red")
            for problem in exc.problems:
                _say(f"  {problem}")
            raise typer.Exit(1) from exc
        if dry_run:
            _say(f"{len(rows)} row(s) are valid; dry run: nothing stored")
            return
        done = accommodations.apply(session, rows)
    _say(f"stored {done.extensions} extension(s) and {done.excusals} excusal(s)", "green")


teams_app = typer.Typer(help="Project teams from the instructor's team CSV.", no_args_is_help=True)


@teams_app.command("import")
def teams_import(
    csv_file: Path = typer.Argument(..., help="team,student_id: one row per member"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check the file, store nothing"),
) -> None:
    """Make the teams exactly the file's: checked as a whole (unknown students, a student in two teams,
    sizes), stored in one transaction, or refused with every problem and nothing changed."""
    from grader import accommodations, catalog, teams
    from grader.assignments import course_file, load_course
    from grader.db import session_factory

    try:
        text = csv_file.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        _say(f"{csv_file}: {exc}", "red")
        raise typer.Exit(2) from exc
    settings = get_settings()
    with session_factory(settings)() as session:
        loaded = catalog.current(session=session, settings=settings)
        course = (
            next(iter(loaded.values())).course
            if loaded
            else load_course(course_file(settings.assignments_dir / "x"))
        )
        try:
            found = teams.parse(text, students=accommodations.student_ids(session), sizes=course.teams)
            if dry_run:
                _say(f"{len(found)} team(s) are valid; dry run: nothing stored")
                return
            done = teams.store(session, found)
        except teams.BadTeams as exc:
            _say(f"{csv_file}: refused, nothing stored ({len(exc.problems)} problem(s))", "red")
            for problem in exc.problems:
                _say(f"  {problem}")
            raise typer.Exit(1) from exc
    removed = f"; removed {', '.join(done.removed)}" if done.removed else ""
    _say(f"{done.teams} team(s) of {done.students} student(s){removed}", "green")


@teams_app.command("list")
def teams_list() -> None:
    """Every team with its members."""
    from grader import teams
    from grader.db import session_factory

    with session_factory(get_settings())() as session:
        for name, members in teams.listing(session):
            print(f"{name}: {', '.join(members)}")

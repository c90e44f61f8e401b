"""`grader roster import` and `grader instructor create`: accounts for the web pages."""

import sys
from pathlib import Path

import typer
from rich.console import Console

from grader.config import get_settings

roster_app = typer.Typer(help="Students from the LMS's roster export.", no_args_is_help=True)
instructor_app = typer.Typer(help="Instructor accounts.", no_args_is_help=True)
console = Console(stderr=True)


@roster_app.command("import")
def roster_import(
    roster: Path = typer.Argument(..., help="a CSV export from Moodle or Canvas (student id, name, email)"),
    out: Path | None = typer.Option(None, "--out", help="write the new secrets to this CSV (mail merge)"),
) -> None:
    """Create or update students; new ones get a login secret. Existing secrets and submissions are kept."""
    from grader import accounts  # here, not at the top: `grader grade` must start fast
    from grader.db import session_factory

    try:
        rows = accounts.parse_roster(roster.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, accounts.RosterError) as exc:
        console.print(f"[red]{roster}: {exc}[/]", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    with session_factory(get_settings())() as session:
        report = accounts.import_roster(session, rows)
        secrets_file = accounts.secrets_csv(report.created)
        if out is not None:
            # Written before the commit: if writing fails, nobody is left with a secret no one knows.
            out.write_text(secrets_file, encoding="utf-8")
            out.chmod(0o600)
        session.commit()
    for reason in report.skipped:
        console.print(f"[yellow]skipped[/] {reason}", highlight=False)
    console.print(
        f"{len(report.created)} new, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
        f"{len(report.skipped)} skipped"
    )
    if out is not None:
        console.print(f"secrets of the new students: {out}")
    elif report.created:
        sys.stdout.write(secrets_file)


@instructor_app.command("create")
def instructor_create(
    login: str = typer.Option(..., "--login", help="the login to sign in with"),
    name: str = typer.Option(..., "--name", help="the instructor's name"),
    email: str = typer.Option("", "--email"),
) -> None:
    """Add an instructor and print their login secret (shown once; only its hash is stored)."""
    from grader import accounts  # here, not at the top: `grader grade` must start fast
    from grader.db import session_factory

    with session_factory(get_settings())() as session:
        try:
            secret = accounts.create_instructor(session, login=login, name=name, email=email)
        except (accounts.AccountExists, ValueError) as exc:
            console.print(f"[red]{exc}[/]", markup=False, highlight=False)
            raise typer.Exit(1) from exc
        session.commit()
    sys.stdout.write(secret + "\n")


@roster_app.command("reset-secret")
def reset_secret(login: str = typer.Argument(..., help="the student id (or instructor login)")) -> None:
    """Give one account a new login secret (for a student who lost theirs) and sign out its browsers."""
    from grader import accounts  # here, not at the top: `grader grade` must start fast
    from grader.db import session_factory

    with session_factory(get_settings())() as session:
        try:
            secret = accounts.reset_secret(session, login=login)
        except accounts.NoSuchAccount as exc:
            console.print(f"[red]{exc}[/]", markup=False, highlight=False)
            raise typer.Exit(1) from exc
        session.commit()
    sys.stdout.write(secret + "\n")

"""Accounts: `grader roster` (students from the LMS, their secrets) and `grader instructor create` for the
web pages, `grader token` for scripts and the API."""

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.console import Console

from grader.config import get_settings

roster_app = typer.Typer(help="Students from the LMS's roster export.", no_args_is_help=True)
instructor_app = typer.Typer(help="Instructor accounts.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
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
    ta: bool = typer.Option(
        False, "--ta", help="a TA: grades and sees submissions; no settings, roster or exports"
    ),
) -> None:
    """Add an instructor (or a TA) and print their login secret (shown once; only its hash is stored)."""
    from grader import accounts  # here, not at the top: `grader grade` must start fast
    from grader.db import session_factory

    with session_factory(get_settings())() as session:
        try:
            secret = accounts.create_instructor(
                session, login=login, name=name, email=email, role="ta" if ta else "instructor"
            )
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


LIFETIME_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def _lifetime(text: str) -> timedelta:
    """--expires-in: a whole number of days, hours or minutes (90d, 12h, 30m)."""
    amount, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in LIFETIME_UNITS or not amount.isdigit() or int(amount) == 0:
        console.print(f"--expires-in {text!r}: give a whole number of days, hours or minutes: 90d, 12h, 30m")
        raise typer.Exit(2)
    return timedelta(**{LIFETIME_UNITS[unit]: int(amount)})


@token_app.command("create")
def token_create(
    instructor: bool = typer.Option(False, "--instructor", help="a token for an instructor"),
    login: str = typer.Option("instructor", "--login", help="the instructor's login (with --instructor)"),
    student: str | None = typer.Option(None, "--student", help="a token for this student id"),
    name: str = typer.Option("", "--name", help="the person's name, for a new user"),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="valid for 90d, 12h, 30m... (default: GRADER_TOKEN_LIFETIME_DAYS days)"
    ),
) -> None:
    """Create a user if needed and print a new bearer token for them."""
    from grader import auth
    from grader.db import session_factory

    if instructor == (student is not None):
        console.print("give either --instructor [--login NAME] or --student ID")
        raise typer.Exit(2)
    settings = get_settings()
    lifetime = _lifetime(expires_in) if expires_in else timedelta(days=settings.token_lifetime_days)
    with session_factory(settings)() as session:
        try:
            user = auth.get_or_create_user(
                session=session,
                login=login if instructor else student,
                role="instructor" if instructor else "student",
                name=name,
            )
        except ValueError as exc:
            console.print(f"[red]{exc}[/]", markup=False, highlight=False)
            raise typer.Exit(2) from exc
        if instructor and not user.is_instructor:
            console.print(f"[red]{user.login} exists and is a student[/]")
            raise typer.Exit(1)
        token = auth.create_token(session=session, user=user, lifetime=lifetime)
        session.commit()
    console.print(f"a token for {user.login}, valid until {datetime.now(UTC) + lifetime:%Y-%m-%d %H:%M} UTC")
    sys.stdout.write(token + "\n")


@token_app.command("revoke")
def token_revoke(
    token: str | None = typer.Argument(None, help="the token to revoke"),
    login: str | None = typer.Option(None, "--login", help="revoke every token of this student id or login"),
) -> None:
    """Revoke one token, or every token of an account: they stop working at once."""
    from sqlalchemy import select

    from grader import accounts, auth
    from grader.db import session_factory
    from grader.models import User

    if (token is None) == (login is None):
        console.print("give either a TOKEN or --login ID")
        raise typer.Exit(2)
    with session_factory(get_settings())() as session:
        if token is not None:
            revoked = int(auth.revoke_token(session=session, token=token.strip()))
            if not revoked:
                console.print("[red]no such token[/]")
                raise typer.Exit(1)
        else:
            user = session.scalar(select(User).where(User.login == accounts.normalize_login(login)))
            if user is None:
                console.print(f"[red]no account with the login {login!r}[/]", markup=False, highlight=False)
                raise typer.Exit(1)
            revoked = auth.revoke_tokens(session=session, user_id=user.id)
        session.commit()
    console.print(f"revoked {revoked} token(s)")

"""Project teams: the instructor's team CSV, who is in which team, and the team's uploads.

    team,student_id
    vision-transformers,901234567
    vision-transformers,901234568
    diffusion,901234569
    ...

A team is 2-3 students (course.toml `[teams] min_size`, `max_size`); a student is in one team at
most. The file is the whole set of teams: it is checked as a whole (unknown students, a student
listed twice, sizes) and stored in one transaction, or refused with every problem and nothing
changed. A team missing from the file is removed, unless it has uploaded already (its submissions
must keep their team): then the file is refused. Members may move between teams; a team's uploads
count for its members as they are now.
"""

import csv
import io
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from grader import accounts
from grader.assignments import TeamSizes
from grader.models import Submission, Team, TeamMember, User

MAX_NAME = 128


class BadTeams(Exception):
    """The team file was refused as a whole; `problems` lists each one. Nothing changed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class TeamsImported:
    teams: int
    students: int
    removed: list[str]


def parse(text: str, *, students: set[str], sizes: TeamSizes) -> dict[str, list[str]]:
    """The teams by name, each with its student ids in file order; BadTeams lists every problem."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "team" not in header or "student_id" not in header:
        raise BadTeams(["line 1: the columns must be team,student_id"])
    reader.fieldnames = header
    teams: dict[str, list[str]] = defaultdict(list)
    first_seen: dict[str, tuple[int, str]] = {}
    problems = []
    for number, raw in enumerate(reader, start=2):
        name = (raw.get("team") or "").strip()
        student = accounts.normalize_login(raw.get("student_id") or "")
        if not name and not student:
            continue
        if not name or len(name) > MAX_NAME:
            problems.append(f"line {number}: a team name of 1 to {MAX_NAME} characters is needed")
            continue
        if student not in students:
            problems.append(f"line {number}: no student {raw.get('student_id', '')!r} on the roster")
            continue
        if student in first_seen:
            line, other = first_seen[student]
            where = "again" if other == name else f"in two teams: {other!r} (line {line}) and {name!r}"
            problems.append(f"line {number}: {student} is listed {where}")
            continue
        first_seen[student] = (number, name)
        teams[name].append(student)
    for name, members in teams.items():
        if not sizes.min_size <= len(members) <= sizes.max_size:
            problems.append(
                f"team {name!r} has {len(members)} student(s); teams are {sizes.min_size}-{sizes.max_size}"
            )
    if problems:
        raise BadTeams(problems)
    return dict(teams)


def store(session: Session, teams: dict[str, list[str]]) -> TeamsImported:
    """Make the database's teams exactly these, and commit; BadTeams (nothing changed) if a team that
    has uploaded would be removed."""
    existing = {team.name: team for team in session.scalars(select(Team))}
    gone = [team for name, team in existing.items() if name not in teams]
    uploaded = set(
        session.scalars(select(Submission.team_id).where(Submission.team_id.is_not(None)).distinct())
    )
    kept = sorted(team.name for team in gone if team.id in uploaded)
    if kept:
        raise BadTeams([f"team {name!r} has uploaded already: keep it in the file" for name in kept])
    try:
        for team in gone:
            session.delete(team)
        session.execute(delete(TeamMember))
        ids = dict(session.execute(select(User.login, User.id).where(User.role == "student")).all())
        for name, members in teams.items():
            team = existing.get(name) or Team(name=name)
            session.add(team)
            session.flush()
            session.add_all(TeamMember(team_id=team.id, user_id=ids[login]) for login in members)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return TeamsImported(
        teams=len(teams), students=sum(map(len, teams.values())), removed=sorted(t.name for t in gone)
    )


def team_of(session: Session, *, user_id: int) -> Team | None:
    """The student's team, if any."""
    return session.scalar(
        select(Team).join(TeamMember, TeamMember.team_id == Team.id).where(TeamMember.user_id == user_id)
    )


def graded_together(session: Session, *, student: User) -> list[User]:
    """Who a grade given to `student` on a team milestone goes to: every current member of their team
    (the student alone when in none), in login order."""
    team = team_of(session, user_id=student.id)
    if team is None:
        return [student]
    return list(
        session.scalars(
            select(User)
            .join(TeamMember, TeamMember.user_id == User.id)
            .where(TeamMember.team_id == team.id)
            .order_by(User.login)
        )
    )


def teams_of_user(user_id: int):
    """A subquery: the id of the user's team (none or one), for `Submission.team_id.in_(...)`."""
    return select(TeamMember.team_id).where(TeamMember.user_id == user_id)


def listing(session: Session) -> list[tuple[str, list[str]]]:
    """Every team by name with its members' student ids."""
    rows = session.execute(
        select(Team.name, User.login)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .join(User, User.id == TeamMember.user_id)
        .order_by(Team.name, User.login)
    )
    found: dict[str, list[str]] = defaultdict(list)
    for name, login in rows:
        found[name].append(login)
    return list(found.items())

"""A CSV of accommodations: many extensions and excusals at once (`grader accommodations import`,
POST /api/accommodations).

    student_id,assignment,kind,due,cutoff,reason
    901234567,hw2-cnn,extension,+3d,,medical report
    901234568,hw3-rnn,extension,2027-03-20T23:59,2027-03-25T23:59,
    901234569,hw4-attention,excusal,,,documented absence

`kind` is `extension` (a new due date: a date and time in the course's zone, or `+2d` / `+36h` after
the assignment's own; an optional cutoff the same way, else the assignment's moved with the due
date), or `excusal` (left out of the student's total). Every row is checked before anything is
stored: one bad row refuses the whole file, with every problem listed by line, and nothing changes.
A row for a student and assignment that already have one replaces it.
"""

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from grader import accounts, extensions
from grader.assignments import Assignment

COLUMNS = ("student_id", "assignment", "kind", "due", "cutoff", "reason")
REQUIRED = ("student_id", "assignment", "kind")
KINDS = ("extension", "excusal")
MAX_ROWS = 10_000


class BadAccommodations(Exception):
    """The file was refused as a whole; `problems` lists each one ("line 3: ..."). Nothing changed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Accommodation:
    line: int
    student_id: str
    assignment: str
    kind: Literal["extension", "excusal"]
    due: datetime | None = None
    cutoff: datetime | None = None
    reason: str = ""


@dataclass(frozen=True)
class Applied:
    extensions: int
    excusals: int


def parse(text: str, *, assignments: dict[str, Assignment], students: set[str]) -> list[Accommodation]:
    """Check every row against the assignments and the roster's student ids; BadAccommodations lists
    every problem at once."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown:
        problems = [f"line 1: missing column(s) {', '.join(missing)}"] if missing else []
        problems += [f"line 1: unknown column(s) {', '.join(unknown)}"] if unknown else []
        raise BadAccommodations([*problems, f"the columns are: {','.join(COLUMNS)}"])
    reader.fieldnames = header
    rows, problems, seen = [], [], {}
    for number, raw in enumerate(reader, start=2):
        if number - 1 > MAX_ROWS:
            raise BadAccommodations([f"more than {MAX_ROWS} rows: split the file"])
        row = {key: (value or "").strip() for key, value in raw.items() if key is not None}
        if not any(row.values()):
            continue
        student = accounts.normalize_login(row.get("student_id", ""))
        slug, kind = row.get("assignment", ""), row.get("kind", "").lower()
        found = []
        if student not in students:
            found.append(f"no student {row.get('student_id', '')!r} on the roster")
        assignment = assignments.get(slug)
        if assignment is None:
            found.append(f"no assignment {slug!r}")
        if kind not in KINDS:
            found.append(f"kind {row.get('kind', '')!r} must be one of {', '.join(KINDS)}")
        due = cutoff = None
        if kind == "extension" and assignment is not None:
            try:
                due, cutoff = extensions.checked(assignment, row.get("due", ""), row.get("cutoff", ""))
            except extensions.BadExtension as exc:
                found.append(str(exc))
        elif kind == "excusal" and (row.get("due") or row.get("cutoff")):
            found.append("an excusal takes no due date or cutoff")
        key = (student, slug, kind)
        if key in seen:
            found.append(f"repeats line {seen[key]} ({student}, {slug}, {kind})")
        seen.setdefault(key, number)
        problems += [f"line {number}: {message}" for message in found]
        if not found:
            rows.append(Accommodation(number, student, slug, kind, due, cutoff, row.get("reason", "")))
    if problems:
        raise BadAccommodations(problems)
    return rows


def apply(session: Session, rows: list[Accommodation]) -> Applied:
    """Store every row in one transaction and commit: all of them, or (on any error) none."""
    try:
        users = {row.student_id: accounts.find(session, login=row.student_id, role="student") for row in rows}
        for row in rows:
            if row.kind == "extension":
                extensions.put(
                    session,
                    user=users[row.student_id],
                    slug=row.assignment,
                    due=row.due,
                    cutoff=row.cutoff,
                    reason=row.reason,
                )
            else:
                extensions.put_excusal(
                    session, user=users[row.student_id], slug=row.assignment, reason=row.reason
                )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return Applied(
        extensions=sum(row.kind == "extension" for row in rows),
        excusals=sum(row.kind == "excusal" for row in rows),
    )


def student_ids(session: Session) -> set[str]:
    """The roster's student ids, for `parse`."""
    from sqlalchemy import select

    from grader.models import User

    return set(session.scalars(select(User.login).where(User.role == "student")))

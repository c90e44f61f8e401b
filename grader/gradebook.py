"""The gradebook: which submission counts, weights, and the CSVs: pure functions over plain rows.

Numbers are Decimal throughout and rounded once, at output: two decimals, ROUND_HALF_UP.
grader.gradebook_export reads the rows from the database and streams these CSVs.

Moodle ("Grades > Import > CSV file", UTF-8, comma): upload the `moodle_csv` file; under "Identify
user by" choose Map from = "ID number" with Map to = "useridnumber" (the student id must be in each
Moodle profile's ID number), or Map from = "Email address" with Map to = "useremail" (matched case
sensitively). Then map each assignment column to its grade item (maximum grade 100), or only
"Assignments (45)" to one manual item with maximum grade 45, and set the other columns to "Ignore".
Moodle rejects the whole file if one row names no Moodle user. An excused assignment is an empty cell,
which Moodle imports as "no grade".

Late days (course.toml `[late_days] budget = N`): each student has N days for the whole course,
spent automatically before any penalty. The assignments spend them in the order of their due dates
(the course's, not a student's extended one; equal dates by slug), each taking, for its counted
submission, the fewest days that remove the most penalty it can with what is left: a day is spent
only where it raises the grade, so none go to an on-time, errored or zero-scored submission, nor to
an assignment whose [late] sets `late_days = false`. A late day moves the student's due date by 24
hours (grace then follows the last day spent); it never moves the cutoff. Which submission counts
("best") is decided with the days it would use. The spending is greedy, not an optimum over all
assignments: a student cannot save days for later by choice.
"""

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    localcontext,
)
from itertools import groupby
from typing import Literal

from grader import csv_export
from grader.assignments import Assignment, CourseConfig
from grader.policies import (
    Deadline,
    ExtensionRow,
    days_late,
    deadline_for,
    dec,
    late_units,
    moved_by_late_days,
    penalty_percent,
    utc,
)

# Wide enough that sums of weighted percents are exact; fixed so a caller's context cannot change results.
_EXACT = Context(prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero])
CENT = Decimal("0.01")
HUNDRED = Decimal(100)
EXCUSED = "EX"
# What a counted submission may be: graded, or (a milestone graded by hand only) stored with nothing to run.
COUNTABLE = ("graded", "submitted")
EXTRA_COLUMNS = ("raw", "late", "late_days", "penalty", "submission", "manual")
Extra = Literal["raw", "late", "late_days", "penalty", "submission", "manual"]
UNRELEASED = " (not released)"


@dataclass(frozen=True)
class RosterEntry:
    student_id: str
    name: str
    email: str


@dataclass(frozen=True)
class TestRow:
    __test__ = False  # not a pytest test class

    name: str
    passed: bool


@dataclass(frozen=True)
class SubmissionRow:
    id: str | int
    student_id: str
    assignment: str
    submitted_at: datetime
    # "graded" has a score; "error" counts as zero; anything else (queued, running) is not counted yet.
    status: str
    score: float | Decimal | None = None
    max_score: float | Decimal | None = None
    pinned: bool = False
    tests: tuple[TestRow, ...] = ()


@dataclass(frozen=True)
class ExcusalRow:
    student_id: str
    assignment: str


@dataclass(frozen=True)
class Manual:
    """A student's points on an assignment's manually graded questions, and their maximum."""

    points: float | Decimal
    max_points: float | Decimal


@dataclass(frozen=True)
class Scored:
    """One submission with its lateness; percents are unrounded. raw counts the manual points too."""

    submission: SubmissionRow
    raw: Decimal
    late_units: int  # how late, from the student's due date (extension included), before late days
    penalty: Decimal  # after the late days spent
    late_days: int = 0
    manual: Decimal | None = None  # the manual points counted (None: the assignment has no questions)
    out_of: Decimal = Decimal(0)  # the points raw is a percent of: auto max + manual max where counted

    @property
    def final(self) -> Decimal:
        return self.raw * (HUNDRED - self.penalty) / HUNDRED


@dataclass(frozen=True)
class Cell:
    """One student's standing on one assignment: excused, missing (counted is None), or a submission."""

    excused: bool = False
    counted: Scored | None = None

    @property
    def percent(self) -> Decimal | None:
        if self.excused:
            return None
        return self.counted.final if self.counted else Decimal(0)


@dataclass(frozen=True)
class StudentGrades:
    student: RosterEntry
    cells: dict[str, Cell] = field(default_factory=dict)
    # Out of the assignments share; None when every assignment is excused.
    total: Decimal | None = None
    late_days_used: int = 0


def rounded(value: Decimal) -> Decimal:
    """The one rounding rule of the gradebook: two decimals, halves up."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def score(
    submission: SubmissionRow, deadline: Deadline, late_days_left: int = 0, manual: Manual | None = None
) -> Scored:
    """The submission's percent before and after the late penalty, with the fewest of the late days
    left that remove the most penalty; zero unless graded with a score (or, graded by hand only,
    submitted). With manual points: (auto + manual) / (auto max + manual max); ungraded questions count 0."""
    at = submission.submitted_at
    with localcontext(_EXACT):
        auto = submission.status == "graded" and submission.score is not None and submission.max_score
        # A milestone graded by hand only ("submitted": nothing ran) counts its manual points alone.
        hand_only = submission.status == "submitted"
        points, out_of = (
            (dec(submission.score), dec(submission.max_score)) if auto else (Decimal(0), Decimal(0))
        )
        counted_manual = None
        if manual is not None and dec(manual.max_points) > 0:
            counted_manual = dec(manual.points)
            if auto or hand_only:
                points, out_of = points + counted_manual, out_of + dec(manual.max_points)
        raw = points * HUNDRED / out_of if out_of else Decimal(0)
        spent, penalty = 0, penalty_percent(deadline, at)
        if raw and penalty:
            # Ascending, and only a strictly smaller penalty moves: the fewest days for the least penalty.
            for days in range(1, min(days_late(deadline, at), late_days_left) + 1):
                moved = penalty_percent(moved_by_late_days(deadline, days), at)
                if moved < penalty:
                    spent, penalty = days, moved
        return Scored(
            submission=submission,
            raw=raw,
            late_units=late_units(deadline, at),
            penalty=penalty,
            late_days=spent,
            manual=counted_manual,
            out_of=out_of,
        )


def counted_submission(
    submissions: Iterable[SubmissionRow],
    deadline: Deadline,
    counts: Literal["best", "last"],
    late_days_left: int = 0,
    manual: Manual | None = None,
) -> Scored | None:
    """The pinned submission, else the best (or last) graded one, else an errored one as zero, else None;
    each scored with the late days it would spend out of `late_days_left`. Manual points belong to the
    student's assignment, not to a submission: they add to the one counted."""
    # The cutoff only gates uploads; whatever was accepted is graded, so an extension can only help.
    ordered = sorted(submissions, key=lambda s: (s.submitted_at, s.id))
    pinned = [s for s in ordered if s.pinned]
    if pinned:
        return score(pinned[-1], deadline, late_days_left, manual)
    graded = [score(s, deadline, late_days_left, manual) for s in ordered if s.status in COUNTABLE]
    if graded:
        # max() keeps the first of equals, so a tie goes to the earlier submission (fewer late days).
        return graded[-1] if counts == "last" else max(graded, key=lambda s: s.final)
    errors = [s for s in ordered if s.status == "error"]
    return score(errors[-1], deadline, late_days_left, manual) if errors else None


def assignments_total(
    cells: Mapping[str, Cell], weights: Mapping[str, float | Decimal], share: float | Decimal
) -> Decimal | None:
    """sum(weight x percent) / sum(weights) over the assignments not excused, scaled to the share."""
    with localcontext(_EXACT):
        kept = [(dec(weights[slug]), cell.percent) for slug, cell in cells.items() if not cell.excused]
        weight = sum((w for w, _ in kept), Decimal(0))
        if not weight:
            return None
        # The weighted mean first: for full marks it is exactly 1, so the total is exactly the share.
        mean = sum((w * p for w, p in kept), Decimal(0)) / (weight * HUNDRED)
        return mean * dec(share)


def student_grades(
    *,
    roster: Iterable[RosterEntry],
    assignments: Sequence[Assignment],
    submissions: Iterable[SubmissionRow],
    course: CourseConfig,
    extensions: Iterable[ExtensionRow] = (),
    excusals: Iterable[ExcusalRow] = (),
    shared: Mapping[str, Sequence[SubmissionRow]] | None = None,
    manual: Mapping[tuple[str, str], float | Decimal] | None = None,
) -> Iterator[StudentGrades]:
    """Grades for every student on the roster, in roster order, also those who never submitted.
    `manual`: the manual points per (student id, slug); an assignment with questions counts them."""
    # `submissions` may be a stream of any length, but each student's must come together (ORDER BY
    # user): only one student's submissions are held at a time. `shared`: submissions that count for
    # a student without being theirs (their team's, by student id), whatever their student_id says.
    slugs = {a.slug for a in assignments}
    shared = shared or {}
    budget = course.late_days.budget
    spending_order = in_order(assignments)
    extension_of: dict[tuple[str, str], ExtensionRow] = {}
    for ext in extensions:
        key = (ext.student_id, ext.assignment)
        if key not in extension_of or utc(ext.due) > utc(extension_of[key].due):
            extension_of[key] = ext
    excused = {(e.student_id, e.assignment) for e in excusals}

    def cells_for(student_id: str, rows: Iterable[SubmissionRow]) -> dict[str, Cell]:
        by_assignment: dict[str, list[SubmissionRow]] = {slug: [] for slug in slugs}
        for row in (*rows, *shared.get(student_id, ())):
            if row.assignment in slugs:
                by_assignment[row.assignment].append(row)
        cells, left = {}, budget
        for a in spending_order:  # late days go to the earliest due first
            if (student_id, a.slug) in excused:
                cells[a.slug] = Cell(excused=True)
                continue
            deadline = deadline_for(a, extension_of.get((student_id, a.slug)))
            points = (
                Manual((manual or {}).get((student_id, a.slug), 0), a.manual_max) if a.questions else None
            )
            chosen = counted_submission(
                by_assignment[a.slug], deadline, a.submissions.counts, left if a.late.late_days else 0, points
            )
            left -= chosen.late_days if chosen else 0
            cells[a.slug] = Cell(counted=chosen)
        return {a.slug: cells[a.slug] for a in assignments}

    # Per student only the counted submissions stay in memory, never the stream.
    done: dict[str, dict[str, Cell]] = {}
    for student_id, rows in groupby(submissions, key=lambda s: s.student_id):
        if student_id in done:
            raise ValueError(f"submissions of {student_id!r} are not together: order them by student")
        done[student_id] = cells_for(student_id, rows)

    weights = {a.slug: a.config.weight for a in assignments}
    for student in roster:
        cells = done.get(student.student_id) or cells_for(student.student_id, ())
        total = assignments_total(cells, weights, course.assignments_share)
        used = sum(cell.counted.late_days for cell in cells.values() if cell.counted and not cell.excused)
        yield StudentGrades(student=student, cells=cells, total=total, late_days_used=used)


# ---- CSV ------------------------------------------------------------------------------------------


def _fmt(value: Decimal | None) -> str:
    return "" if value is None else str(rounded(value))


def total_header(course: CourseConfig) -> str:
    """'Assignments (45)': the total's column, named after the share it is out of."""
    return f"Assignments ({dec(course.assignments_share).normalize():f})"


def _extra_cells(cell: Cell, extra: Collection[str]) -> list[str]:
    counted = None if cell.excused else cell.counted
    values = {
        "raw": _fmt(counted.raw) if counted else "",
        "late": str(counted.late_units) if counted else "",
        "late_days": str(counted.late_days) if counted else "",
        "penalty": _fmt(counted.penalty) if counted else "",
        "submission": str(counted.submission.id) if counted else "",
        "manual": _fmt(counted.manual) if counted and counted.manual is not None else "",
    }
    return [values[name] for name in EXTRA_COLUMNS if name in extra]


def gradebook_csv(
    grades: Iterable[StudentGrades],
    *,
    assignments: Sequence[Assignment],
    course: CourseConfig,
    extra: Collection[Extra] = (),
    unreleased: Collection[str] = (),
) -> Iterator[str]:
    """The instructor's CSV: identity, percent after penalty per assignment, the total, then extras.
    The column of an assignment in `unreleased` (grades not released to students) says so."""
    unknown = set(extra) - set(EXTRA_COLUMNS)
    if unknown:
        raise ValueError(f"unknown extra columns {sorted(unknown)}; choose from {EXTRA_COLUMNS}")
    headers = {
        "raw": "{} raw (%)",
        "late": "{} late ({}s)",
        "late_days": "{} late days",
        "penalty": "{} penalty (%)",
        "submission": "{} submission",
        "manual": "{} manual (points)",
    }
    extra_header = [
        headers[name].format(a.slug, a.late.unit)
        for a in assignments
        for name in EXTRA_COLUMNS
        if name in extra
    ]

    budget = course.late_days.budget
    # With late days, how many each student used: an instructor checks the spending against it.
    days_header = [f"Late days used (of {budget})"] if budget else []

    def rows() -> Iterator[list[str]]:
        percent_header = [f"{a.slug} (%)" + (UNRELEASED if a.slug in unreleased else "") for a in assignments]
        yield [
            "Student ID",
            "Name",
            "Email",
            *percent_header,
            total_header(course),
            *days_header,
            *extra_header,
        ]
        for g in grades:
            percents = [
                EXCUSED if g.cells[a.slug].excused else _fmt(g.cells[a.slug].percent) for a in assignments
            ]
            days = [str(g.late_days_used)] if budget else []
            extras = [value for a in assignments for value in _extra_cells(g.cells[a.slug], extra)]
            yield [
                g.student.student_id,
                g.student.name,
                g.student.email,
                *percents,
                _fmt(g.total),
                *days,
                *extras,
            ]

    return csv_export.lines(rows())


def moodle_csv(
    grades: Iterable[StudentGrades], *, assignments: Sequence[Assignment], course: CourseConfig
) -> Iterator[str]:
    """The file for Moodle's "Import grades from CSV" (mapping: see the module docstring)."""

    def rows() -> Iterator[list[str]]:
        yield [
            "ID number",
            "Email address",
            "Full name",
            *(a.title for a in assignments),
            total_header(course),
        ]
        for g in grades:
            # An empty cell is "no grade" to Moodle, which is what an excusal means.
            percents = [_fmt(g.cells[a.slug].percent) for a in assignments]
            yield [g.student.student_id, g.student.email, g.student.name, *percents, _fmt(g.total)]

    return csv_export.lines(rows())


def per_test_csv(
    *,
    roster: Iterable[RosterEntry],
    assignment: Assignment,
    submissions: Iterable[SubmissionRow],
    extensions: Iterable[ExtensionRow] = (),
    excusals: Iterable[ExcusalRow] = (),
    shared: Mapping[str, Sequence[SubmissionRow]] | None = None,
    manual: Mapping[tuple[str, str], float | Decimal] | None = None,
) -> Iterator[str]:
    """For one assignment: per student, the counted submission, 1/0 for each test it passed, then the
    points of each manually graded question (`manual`, by (student id, question id); empty: ungraded)."""
    manual = manual or {}
    totals: dict[tuple[str, str], Decimal] = {}
    for (student_id, _), points in manual.items():
        key = (student_id, assignment.slug)
        totals[key] = totals.get(key, Decimal(0)) + dec(points)
    grades = list(
        student_grades(
            roster=roster,
            assignments=[assignment],
            submissions=submissions,
            course=assignment.course,
            extensions=extensions,
            excusals=excusals,
            shared=shared,
            manual=totals,
        )
    )
    # The tests are known only from the results; the union over counted submissions, in first-seen order.
    names: dict[str, None] = {}
    for g in grades:
        counted = g.cells[assignment.slug].counted
        for test in counted.submission.tests if counted else ():
            names.setdefault(test.name)

    def rows() -> Iterator[list[str]]:
        questions = [f"{q.id} ({q.points:g})" for q in assignment.questions]
        yield ["Student ID", "Name", "Email", "Submission", "Status", *names, *questions]
        for g in grades:
            cell = g.cells[assignment.slug]
            sub = cell.counted.submission if cell.counted else None
            passed = {t.name: t.passed for t in sub.tests} if sub else {}
            status = "excused" if cell.excused else (sub.status if sub else "missing")
            flags = ["" if name not in passed else str(int(passed[name])) for name in names]
            points = [
                _fmt(dec(manual[key])) if (key := (g.student.student_id, q.id)) in manual else ""
                for q in assignment.questions
            ]
            yield [
                g.student.student_id,
                g.student.name,
                g.student.email,
                str(sub.id) if sub else "",
                status,
                *flags,
                *points,
            ]

    return csv_export.lines(rows())


def in_order(assignments: Iterable[Assignment]) -> list[Assignment]:
    """The gradebook's assignment columns: by due date, then slug (so equal due dates keep one order)."""
    return sorted(assignments, key=lambda a: (a.due, a.slug))

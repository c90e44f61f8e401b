"""Deadlines, late penalties, the upload cutoff and submission limits: pure functions of time.

Every instant is converted to UTC before it is compared or subtracted: Python compares and subtracts
two datetimes that share a tzinfo by their wall clocks, which is wrong across a DST change.
Penalty units are elapsed time (a day is 24 hours), so every student gets the same hours whatever the
clock did in between.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from grader.assignments import Assignment, LatePolicy, SubmissionPolicy

DAY = timedelta(days=1)
UNITS = {"day": DAY, "hour": timedelta(hours=1)}
HOUR = timedelta(hours=1)


def utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is an error, never a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone")
    return moment.astimezone(UTC)


def dec(value: int | float | str | Decimal) -> Decimal:
    """A Decimal; a float by its shortest repr, so the 2.675 stored in the database stays 2.675."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


@dataclass(frozen=True)
class ExtensionRow:
    student_id: str
    assignment: str
    due: datetime
    # None: the assignment's cutoff, moved by as much as the due date moved.
    cutoff: datetime | None = None
    reason: str = ""


@dataclass(frozen=True)
class Deadline:
    """One student's due date and cutoff for one assignment, in UTC, with the late policy."""

    due: datetime
    cutoff: datetime | None
    policy: LatePolicy


def deadline_for(assignment: Assignment, extension: ExtensionRow | None = None) -> Deadline:
    """The assignment's deadline, moved by the student's extension if there is one."""
    due = utc(assignment.due)
    cutoff = utc(assignment.late.cutoff) if assignment.late.cutoff else None
    if extension is not None:
        # An extension gives time; one dated before the due date is a typo, not a punishment.
        moved = max(due, utc(extension.due))
        if extension.cutoff is not None:
            cutoff = max(moved, utc(extension.cutoff))
        elif cutoff is not None:
            cutoff += moved - due
        due = moved
    return Deadline(due=due, cutoff=cutoff, policy=assignment.late)


@dataclass(frozen=True)
class PolicyLine:
    key: str
    value: str
    source: str  # "assignment", "course" or "default"


def effective_late_policy(assignment: Assignment) -> list[PolicyLine]:
    """The late policy that applies to the assignment, key by key, with where each value comes from:
    for `grader assignments check` and the instructor's assignment page."""
    policy, sources = assignment.late, assignment.late_sources()
    budget = assignment.course.late_days.budget
    lines = []
    for key, value in policy.model_dump().items():
        if key == "cutoff" and value is not None:
            text = value.astimezone(ZoneInfo(assignment.course.timezone)).isoformat()
        elif key == "late_days":
            text = (
                f"{'yes' if value else 'no'} (the course gives {budget})"
                if budget
                else "no (none in the course)"
            )
        else:
            text = "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(PolicyLine(key, text, sources[key]))
    return lines


def released(assignment: Assignment, now: datetime) -> bool:
    """Whether students may see the assignment and upload to it: its `released` time has come."""
    return utc(assignment.config.released) <= utc(now)


def late_units(deadline: Deadline, submitted_at: datetime) -> int:
    """Started days (or hours) late, counted from the due date; 0 within the grace period."""
    late = utc(submitted_at) - deadline.due
    if late <= timedelta(minutes=deadline.policy.grace_minutes):
        return 0
    # Integer ceiling on timedeltas: exact to the microsecond, no float.
    return -(-late // UNITS[deadline.policy.unit])


def days_late(deadline: Deadline, submitted_at: datetime) -> int:
    """Started days (24 hours each) after the due date, whatever the policy's unit; 0 within grace.
    The most late days a submission can use."""
    late = utc(submitted_at) - deadline.due
    if late <= timedelta(minutes=deadline.policy.grace_minutes):
        return 0
    return -(-late // DAY)


def moved_by_late_days(deadline: Deadline, days: int) -> Deadline:
    """The deadline with `days` late days spent: the due date `days` x 24 hours later, so the grace
    period follows the last day spent. The cutoff stays: late days never reopen uploads."""
    return Deadline(due=deadline.due + days * DAY, cutoff=deadline.cutoff, policy=deadline.policy)


def penalty_percent(deadline: Deadline, submitted_at: datetime) -> Decimal:
    """Percent of the score deducted: penalty per started unit, capped at the maximum."""
    policy = deadline.policy
    units = late_units(deadline, submitted_at)
    return min(units * dec(policy.penalty_percent), dec(policy.max_penalty_percent))


@dataclass(frozen=True)
class LimitHit:
    """One more upload is refused: which limit, and when the next one is allowed (None: never)."""

    reason: str  # "max_submissions" or "rate_limited"
    allowed_at: datetime | None


def submission_limit(
    policy: SubmissionPolicy, previous_times: Sequence[datetime], now: datetime
) -> LimitHit | None:
    """Whether the submission limits refuse one more upload now, or None if it is allowed."""
    # `previous_times`: the student's earlier submissions to this assignment that are charged; leave
    # out those lost to infrastructure errors.
    if policy.max is not None and len(previous_times) >= policy.max:
        return LimitHit("max_submissions", None)
    if policy.per_hour is not None:
        now = utc(now)
        # A sliding hour: a submission made exactly an hour ago no longer counts.
        recent = sorted(t for t in map(utc, previous_times) if now - HOUR < t <= now)
        if len(recent) >= policy.per_hour:
            return LimitHit("rate_limited", recent[-policy.per_hour] + HOUR)
    return None

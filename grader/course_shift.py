"""Move every date of a course by whole days: `grader course shift`.

The course's dates follow one term's weekly plan; another term (or trying a new install today) needs
all of them moved together. The TOML files are rewritten as text, line by line, so comments, key
order and layout stay as the instructor wrote them: only the date values change.

A date moves by whole days on the course's wall clock: 23:59 stays 23:59 in the course's time zone,
with the offset that zone has on the new date (a DST change in between is taken care of).
"""

import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from grader.assignments import load_course

# A TOML offset date-time (or the same text quoted): 2027-03-03T23:59:00+03:00, 2027-03-03 23:59Z.
DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})(?P<sep>[T ])(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})"
)
WEEK1 = re.compile(r"^(?P<key>\s*week1\s*=\s*)(?P<date>\d{4}-\d{2}-\d{2})")


class CannotShift(Exception):
    """The shift was not done; nothing was written."""


@dataclass(frozen=True)
class Shifted:
    path: Path
    old: str
    new: str
    changes: int


def _move(match: re.Match, days: int, zone: ZoneInfo) -> str:
    moment = datetime.fromisoformat(f"{match['date']}T{match['time']}{match['zone'].replace('Z', '+00:00')}")
    # By the wall clock of the course: the same local time on the day `days` later.
    local = moment.astimezone(zone).replace(tzinfo=None) + timedelta(days=days)
    moved = local.replace(tzinfo=zone)
    timespec = "seconds" if match["time"].count(":") == 2 and "." not in match["time"] else "minutes"
    if "." in match["time"]:
        timespec = "microseconds"
    if match["zone"] == "Z":
        return moved.astimezone(UTC).replace(tzinfo=None).isoformat(match["sep"], timespec) + "Z"
    return moved.isoformat(match["sep"], timespec)


def shift_text(text: str, *, days: int, timezone: str) -> tuple[str, int]:
    """The TOML text with every offset date-time (and `week1`) moved by `days`; how many were moved.

    Only what comes before a line's comment is touched."""
    zone = ZoneInfo(timezone)
    out, changes = [], 0
    for line in text.splitlines(keepends=True):
        code, hash_, comment = line.partition("#")
        code, n = DATETIME.subn(lambda m: _move(m, days, zone), code)
        week = WEEK1.match(code)
        if week:
            moved = date.fromisoformat(week["date"]) + timedelta(days=days)
            code = f"{week['key']}{moved.isoformat()}{code[week.end() :]}"
            n += 1
        changes += n
        out.append(code + hash_ + comment)
    return "".join(out), changes


def plan(course_dir: Path, *, week1: date | None = None, days: int | None = None) -> list[Shifted]:
    """The rewritten course.toml and every assignment.toml under the folder; CannotShift if the shift
    is not well defined. Nothing is written."""
    course_toml = course_dir / "course.toml"
    try:
        course = load_course(course_toml)
    except Exception as exc:  # InvalidAssignment and OSError alike: say it, write nothing
        raise CannotShift(str(exc)) from exc
    if (week1 is None) == (days is None):
        raise CannotShift("give either the new week 1 (--week1 YYYY-MM-DD) or a number of days (--days N)")
    if week1 is not None:
        if course.week1 is None:
            raise CannotShift(f"{course_toml} has no week1 = YYYY-MM-DD to shift from; use --days")
        if week1.weekday() != course.week1.weekday():
            raise CannotShift(
                f"week 1 starts on a {course.week1:%A} ({course.week1}); {week1} is a {week1:%A}"
            )
        days = (week1 - course.week1).days
    files = [course_toml, *sorted(course_dir.glob("*/assignment.toml"))]
    planned = []
    for path in files:
        old = path.read_text("utf-8")
        new, changes = shift_text(old, days=days, timezone=course.timezone)
        try:
            tomllib.loads(new)
        except tomllib.TOMLDecodeError as exc:  # never write a file the service cannot read
            raise CannotShift(f"{path}: the shifted file would not be valid TOML: {exc}") from exc
        planned.append(Shifted(path=path, old=old, new=new, changes=changes))
    return planned


def apply(planned: list[Shifted]) -> None:
    """Write the planned files (each replaced whole, through a temporary file beside it)."""
    for item in planned:
        if item.new == item.old:
            continue
        temporary = item.path.with_suffix(".toml.shifting")
        temporary.write_text(item.new, "utf-8")
        temporary.replace(item.path)

"""How the web pages show times, late policies and score distributions: pure functions."""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from grader.assignments import LatePolicy
from grader.results import GradeResult


def local_time(moment: datetime | None, timezone: str) -> str:
    """`Tue 15 Sep 2026, 23:59 EDT`: a moment in the course's time zone, as people read it."""
    if moment is None:
        return ""
    if moment.tzinfo is None:  # only ever UTC in this service (grader.db.UTCDateTime)
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(timezone)).strftime("%a %d %b %Y, %H:%M %Z")


def time_left(due: datetime, now: datetime) -> str:
    """`2 days 3 hours left`, `40 minutes left`, or `due 5 hours ago`."""
    delta = due - now
    seconds = abs(int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = f"{days} day{'s' * (days != 1)}" + (f" {hours} hour{'s' * (hours != 1)}" if hours else "")
    elif hours:
        text = f"{hours} hour{'s' * (hours != 1)}" + (f" {minutes} min" if minutes else "")
    else:
        text = f"{minutes} minute{'s' * (minutes != 1)}"
    return f"due {text} ago" if delta < timedelta(0) else f"{text} left"


def late_policy_text(policy: LatePolicy, timezone: str) -> str:
    """The late policy in one sentence for students."""
    if policy.penalty_percent == 0:
        text = "Late submissions are not penalised"
    else:
        text = (
            f"{policy.penalty_percent:g}% off per {policy.unit} (or part of one) late, "
            f"at most {policy.max_penalty_percent:g}%"
        )
        if policy.grace_minutes:
            text += f", after a grace period of {policy.grace_minutes} minutes"
    if policy.cutoff:
        text += f"; no uploads after {local_time(policy.cutoff, timezone)}"
    return text + "."


@dataclass(frozen=True)
class Bucket:
    label: str
    count: int
    height_percent: float


def histogram(percents: list[float], *, buckets: int = 10) -> list[Bucket]:
    """Counts of percents (0..100) in equal ranges; full marks fall in the last one."""
    counts = [0] * buckets
    for percent in percents:
        counts[min(int(max(percent, 0) / 100 * buckets), buckets - 1)] += 1
    top = max(counts) or 1
    step = 100 / buckets
    return [
        Bucket(label=f"{i * step:.0f}–{(i + 1) * step:.0f}", count=count, height_percent=100 * count / top)
        for i, count in enumerate(counts)
    ]


@dataclass(frozen=True)
class TestRate:
    __test__ = False  # not a pytest class

    name: str
    visibility: str
    passed: int
    total: int
    max_points: float

    @property
    def percent(self) -> float:
        return 100 * self.passed / self.total if self.total else 0.0


def pass_rates(results: list[GradeResult]) -> list[TestRate]:
    """Per test, how many graded results passed it; the most failed tests first."""
    passed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    info: dict[str, tuple[str, float]] = {}
    for result in results:
        if result.status != "graded":
            continue
        for test in result.tests:
            total[test.name] += 1
            passed[test.name] += test.outcome == "passed"
            info[test.name] = (test.visibility, test.max_points)
    rates = [TestRate(name, info[name][0], passed[name], total[name], info[name][1]) for name in total]
    return sorted(rates, key=lambda rate: (rate.percent, rate.name))

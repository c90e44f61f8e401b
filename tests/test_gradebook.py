"""The gradebook's pure core: penalties, deadlines, which submission counts, totals, and the CSVs."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from grader.assignments import Assignment, AssignmentConfig, CourseConfig, LatePolicy, SubmissionPolicy
from grader.gradebook import (
    Cell,
    ExcusalRow,
    RosterEntry,
    Scored,
    SubmissionRow,
    TestRow,
    assignments_total,
    counted_submission,
    gradebook_csv,
    moodle_csv,
    per_test_csv,
    rounded,
    student_grades,
)
from grader.policies import (
    ExtensionRow,
    LimitHit,
    deadline_for,
    late_units,
    penalty_percent,
    submission_limit,
)

NY = ZoneInfo("America/New_York")
SECOND = timedelta(seconds=1)

COURSE = CourseConfig(
    code="CS 7643",
    title="Deep Learning",
    term="Fall 2026",
    timezone="America/New_York",
    assignments_share=45,
    late=LatePolicy(grace_minutes=15, penalty_percent=10, unit="day", max_penalty_percent=50),
)


def make(slug, due, weight=10, late=None, counts="best", title=None, course=COURSE) -> Assignment:
    config = AssignmentConfig(
        title=title or slug.upper(),
        released=due - timedelta(days=14),
        due=due,
        weight=weight,
        late=late,
        submissions=SubmissionPolicy(counts=counts),
    )
    return Assignment(slug=slug, path=Path("/nonexistent") / slug, config=config, course=course)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def read(lines) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(lines))))


# ---- the hand-worked roster ------------------------------------------------------------------------
# Course: 45% share; default late policy: 15 min grace, 10% per started day, at most 50%.
HW1 = make("hw1", at("2026-09-15T23:59:00-04:00"), weight=10, title="HW1: MLP")
# hw2: 5% per started hour after the due (no grace), at most 30%, uploads refused after Oct 3 23:59.
HW2 = make(
    "hw2",
    at("2026-10-01T23:59:00-04:00"),
    weight=20,
    title="HW2: CNN",
    late=LatePolicy(
        grace_minutes=0,  # an assignment's [late] keys override the course's one by one
        penalty_percent=5,
        unit="hour",
        max_penalty_percent=30,
        cutoff=at("2026-10-03T23:59:00-04:00"),
    ),
)
# hw3 is due at the first 01:30 of the night New York falls back (01:30 EDT = 05:30 UTC); the last counts.
HW3 = make("hw3", datetime(2026, 11, 1, 1, 30, tzinfo=NY), weight=15, counts="last", title="HW3: RNN")
ASSIGNMENTS = [HW1, HW2, HW3]

ROSTER = [
    RosterEntry("s1", "Ada Lovelace", "ada@example.edu"),
    RosterEntry("s2", "Bob Baker", "bob@example.edu"),
    RosterEntry("s3", "Cy Young", "cy@example.edu"),
    RosterEntry("s4", "Dee Dee", "dee@example.edu"),
    RosterEntry("s5", 'Eve, "the" Quoted', "eve@example.edu"),
    RosterEntry("s6", "Fay Absent", "fay@example.edu"),
    RosterEntry("s7", "Gus Excused", "gus@example.edu"),
]


def sub(id, student, slug, when, score=None, max_score=None, status="graded", pinned=False, tests=()):
    return SubmissionRow(id, student, slug, when, status, score, max_score, pinned, tests)


SUBMISSIONS = [
    # s1: everything on time and full marks: 100, 100, 100 -> 45.00
    sub(1, "s1", "hw1", at("2026-09-15T20:00:00-04:00"), 10, 10),
    sub(2, "s1", "hw2", at("2026-10-01T20:00:00-04:00"), 20, 20),
    sub(3, "s1", "hw3", at("2026-10-31T20:00:00-04:00"), 5, 5),
    # s2 hw1: 8/10 11 min late (inside the grace) = 80; then 10/10 12h01m late = 1 day = 10% -> 90.
    #   Best after penalties: 90.00.
    sub(10, "s2", "hw1", at("2026-09-16T00:10:00-04:00"), 8, 10),
    sub(11, "s2", "hw1", at("2026-09-16T12:00:00-04:00"), 10, 10),
    # s2 hw2: 18/20 = 90, 2h31m late = 3 started hours = 15% -> 90 x 0.85 = 76.50.
    sub(12, "s2", "hw2", at("2026-10-02T02:30:00-04:00"), 18, 20),
    # s2 hw3 (last counts): 5/5 at 01:20 EDT (on time), then 4/5 at 01:20 EST, the second 01:20 of the
    #   night = 06:20 UTC = 50 min after the due: past the grace, 1 day, 10% -> 80 x 0.9 = 72.00.
    sub(13, "s2", "hw3", datetime(2026, 11, 1, 1, 20, tzinfo=NY), 5, 5),
    sub(14, "s2", "hw3", datetime(2026, 11, 1, 1, 20, fold=1, tzinfo=NY), 4, 5),
    # s2 total: (10 x 90 + 20 x 76.5 + 15 x 72) / 45 x 45% = (900 + 1530 + 1080) / 45 x 0.45 = 35.10
    # s3: hw1 missing = 0; hw2 only an errored run = 0 (its id is shown); hw3 3/5 on time = 60.
    #   total: (0 + 0 + 15 x 60) / 45 x 0.45 = 9.00
    sub(20, "s3", "hw2", at("2026-10-01T10:00:00-04:00"), status="error"),
    sub(21, "s3", "hw3", at("2026-10-30T10:00:00-04:00"), 3, 5),
    # s4: hw1 7/10 on time = 70.
    #   hw2 extended to Oct 3 23:59; 20/20 at Oct 4 00:30 = 31 min late = 1 hour = 5% -> 95.00.
    #   (Without the extension: 48h31m late, 49 hours, capped at 30% -> 70; and past the cutoff.)
    #   hw3: the pinned 2/5 = 40 wins over a later 5/5, even though hw3 counts the last.
    #   total: (10 x 70 + 20 x 95 + 15 x 40) / 45 x 0.45 = 3200 / 45 x 0.45 = 32.00
    sub(30, "s4", "hw1", at("2026-09-14T09:00:00-04:00"), 7, 10),
    sub(31, "s4", "hw2", at("2026-10-04T00:30:00-04:00"), 20, 20),
    sub(32, "s4", "hw3", at("2026-10-31T12:00:00-04:00"), 2, 5, pinned=True),
    sub(33, "s4", "hw3", at("2026-10-31T13:00:00-04:00"), 5, 5),
    # s5: hw2 excused (out of both sums); hw1 9/10 = 90; hw3 2/3 = 66.666... (shown 66.67).
    #   total: (10 x 90 + 15 x 200/3) / (10 + 15) x 0.45 = 1900 / 25 x 0.45 = 34.20
    sub(40, "s5", "hw1", at("2026-09-15T23:00:00-04:00"), 9, 10),
    sub(41, "s5", "hw3", at("2026-10-31T23:00:00-04:00"), 2, 3),
    # s6 never submitted: 0, 0, 0 -> 0.00.  s7 is excused from everything: no total.
    # A TA's test run: not on the roster, not in the export.
    sub(90, "ta", "hw1", at("2026-09-10T10:00:00-04:00"), 10, 10),
    # Still queued: not counted (s6 stays at 0 for hw1).
    sub(91, "s6", "hw1", at("2026-09-15T10:00:00-04:00"), status="queued"),
]
EXTENSIONS = [ExtensionRow("s4", "hw2", at("2026-10-03T23:59:00-04:00"), reason="medical")]
EXCUSALS = [
    ExcusalRow("s5", "hw2"),
    ExcusalRow("s7", "hw1"),
    ExcusalRow("s7", "hw2"),
    ExcusalRow("s7", "hw3"),
]

EXPECTED = {  # student: (hw1, hw2, hw3, total), worked out above
    "s1": ("100.00", "100.00", "100.00", "45.00"),
    "s2": ("90.00", "76.50", "72.00", "35.10"),
    "s3": ("0.00", "0.00", "60.00", "9.00"),
    "s4": ("70.00", "95.00", "40.00", "32.00"),
    "s5": ("90.00", "EX", "66.67", "34.20"),
    "s6": ("0.00", "0.00", "0.00", "0.00"),
    "s7": ("EX", "EX", "EX", ""),
}


def grades(submissions=SUBMISSIONS):
    ordered = sorted(submissions, key=lambda s: s.student_id)
    return student_grades(
        roster=ROSTER,
        assignments=ASSIGNMENTS,
        submissions=iter(ordered),
        course=COURSE,
        extensions=EXTENSIONS,
        excusals=EXCUSALS,
    )


def test_export_matches_the_hand_computation():
    rows = read(gradebook_csv(grades(), assignments=ASSIGNMENTS, course=COURSE))
    assert list(rows[0]) == [
        "Student ID",
        "Name",
        "Email",
        "hw1 (%)",
        "hw2 (%)",
        "hw3 (%)",
        "Assignments (45)",
    ]
    assert [r["Student ID"] for r in rows] == [s.student_id for s in ROSTER]
    for row in rows:
        got = (row["hw1 (%)"], row["hw2 (%)"], row["hw3 (%)"], row["Assignments (45)"])
        assert got == EXPECTED[row["Student ID"]], row["Student ID"]
    # Names with commas and quotes survive the round trip.
    assert {(r["Name"], r["Email"]) for r in rows} == {(s.name, s.email) for s in ROSTER}


def test_extra_columns_show_raw_score_lateness_penalty_and_submission():
    lines = gradebook_csv(
        grades(), assignments=ASSIGNMENTS, course=COURSE, extra=["submission", "late", "raw", "penalty"]
    )
    rows = {r["Student ID"]: r for r in read(lines)}
    header = list(next(iter(rows.values())))
    assert header[7:11] == ["hw1 raw (%)", "hw1 late (days)", "hw1 penalty (%)", "hw1 submission"]
    assert header[11:15] == ["hw2 raw (%)", "hw2 late (hours)", "hw2 penalty (%)", "hw2 submission"]
    s2 = rows["s2"]
    assert (s2["hw1 raw (%)"], s2["hw1 late (days)"], s2["hw1 penalty (%)"], s2["hw1 submission"]) == (
        "100.00",
        "1",
        "10.00",
        "11",
    )
    assert (s2["hw2 raw (%)"], s2["hw2 late (hours)"], s2["hw2 penalty (%)"]) == ("90.00", "3", "15.00")
    assert (s2["hw3 late (days)"], s2["hw3 submission"]) == ("1", "14")
    assert rows["s3"]["hw2 submission"] == "20" and rows["s3"]["hw2 raw (%)"] == "0.00"
    assert rows["s4"]["hw3 submission"] == "32"
    assert rows["s6"]["hw1 submission"] == "" and rows["s5"]["hw2 submission"] == ""


def test_unknown_extra_column_is_an_error():
    with pytest.raises(ValueError, match="unknown extra"):
        gradebook_csv(grades(), assignments=ASSIGNMENTS, course=COURSE, extra=["grade"])


def test_csv_read_back_matches_the_computed_grades():
    computed = list(grades())
    rows = read(gradebook_csv(iter(computed), assignments=ASSIGNMENTS, course=COURSE))
    for g, row in zip(computed, rows, strict=True):
        assert row["Student ID"] == g.student.student_id
        for a in ASSIGNMENTS:
            cell = g.cells[a.slug]
            expected = "EX" if cell.excused else str(rounded(cell.percent))
            assert row[f"{a.slug} (%)"] == expected
        assert row["Assignments (45)"] == ("" if g.total is None else str(rounded(g.total)))


def test_moodle_file_has_the_columns_the_importer_maps():
    rows = read(moodle_csv(grades(), assignments=ASSIGNMENTS, course=COURSE))
    assert list(rows[0]) == [
        "ID number",
        "Email address",
        "Full name",
        "HW1: MLP",
        "HW2: CNN",
        "HW3: RNN",
        "Assignments (45)",
    ]
    by_id = {r["ID number"]: r for r in rows}
    # Moodle aborts the whole import on a row whose user field is empty.
    assert all(r["ID number"] and r["Email address"] for r in rows)
    assert by_id["s2"]["HW2: CNN"] == "76.50" and by_id["s2"]["Assignments (45)"] == "35.10"
    # Excused: an empty cell, which Moodle imports as "no grade".
    assert by_id["s5"]["HW2: CNN"] == "" and by_id["s7"]["Assignments (45)"] == ""
    # Plain numbers with a dot: what Moodle's importer parses.
    for r in rows:
        for column in ("HW1: MLP", "HW2: CNN", "HW3: RNN", "Assignments (45)"):
            assert r[column] == "" or float(r[column]) >= 0


def test_per_test_export_lists_the_tests_of_the_counted_submission():
    passing = (TestRow("test_relu", True), TestRow("test_softmax", True))
    half = (TestRow("test_relu", True), TestRow("test_softmax", False), TestRow("test_backprop", False))
    rows = read(
        per_test_csv(
            roster=ROSTER[:3],
            assignment=HW1,
            submissions=[
                sub(1, "s1", "hw1", at("2026-09-15T20:00:00-04:00"), 1, 3, tests=half),
                sub(2, "s1", "hw1", at("2026-09-15T21:00:00-04:00"), 2, 2, tests=passing),
                sub(3, "s2", "hw1", at("2026-09-15T21:00:00-04:00"), 1, 3, tests=half),
            ],
        )
    )
    header = [
        "Student ID",
        "Name",
        "Email",
        "Submission",
        "Status",
        "test_relu",
        "test_softmax",
        "test_backprop",
    ]
    assert list(rows[0]) == header
    assert [(r["Submission"], r["test_relu"], r["test_softmax"], r["test_backprop"]) for r in rows] == [
        ("2", "1", "1", ""),  # the best one counts; it had no test_backprop
        ("3", "1", "0", "0"),
        ("", "", "", ""),
    ]
    assert [r["Status"] for r in rows] == ["graded", "graded", "missing"]


def test_submissions_must_come_grouped_by_student():
    scattered = [SUBMISSIONS[0], SUBMISSIONS[3], SUBMISSIONS[1]]  # s1, s2, s1
    with pytest.raises(ValueError, match="order them by student"):
        list(
            student_grades(roster=ROSTER, assignments=ASSIGNMENTS, submissions=iter(scattered), course=COURSE)
        )


# ---- rounding -------------------------------------------------------------------------------------


def test_rounding_is_half_up_at_two_decimals():
    assert str(rounded(Decimal("2.675"))) == "2.68"  # a float would print 2.67
    assert str(rounded(Decimal("0.125"))) == "0.13"  # banker's rounding would give 0.12
    assert str(rounded(Decimal("-0.005"))) == "-0.01"
    assert str(rounded(Decimal("45"))) == "45.00"


def test_rounding_applies_once_at_output():
    # 0.2675 / 10 = 2.675% exactly (floats from the database are read by their repr), shown 2.68.
    one = make("one", at("2026-09-15T23:59:00-04:00"))
    rows = read(
        gradebook_csv(
            student_grades(
                roster=ROSTER[:1],
                assignments=[one],
                submissions=[sub(1, "s1", "one", at("2026-09-15T20:00:00-04:00"), 0.2675, 10)],
                course=COURSE,
            ),
            assignments=[one],
            course=COURSE,
        )
    )
    # The total is 2.675 x 0.45 = 1.20375 from the unrounded percent (1.21 if 2.68 had been used).
    assert (rows[0]["one (%)"], rows[0]["Assignments (45)"]) == ("2.68", "1.20")


# ---- deadlines, grace, cutoff, extensions -------------------------------------------------------------


def test_one_second_either_side_of_the_deadline():
    strict = make("a", at("2026-09-15T23:59:00-04:00"), late=LatePolicy(penalty_percent=10, grace_minutes=0))
    deadline = deadline_for(strict)
    assert penalty_percent(deadline, strict.due - SECOND) == 0
    assert penalty_percent(deadline, strict.due) == 0
    assert penalty_percent(deadline, strict.due + SECOND) == 10
    # With the course's 15 min grace: nothing until 15 min have passed, then a full day from the due.
    graced = deadline_for(HW1)
    assert late_units(graced, HW1.due + timedelta(minutes=15)) == 0
    assert late_units(graced, HW1.due + timedelta(minutes=15) + SECOND) == 1
    assert late_units(graced, HW1.due + timedelta(days=1)) == 1
    assert late_units(graced, HW1.due + timedelta(days=1) + SECOND) == 2


def test_dst_fall_back_in_new_york():
    # Due 2026-11-01 01:30 (the first, EDT, = 05:30 UTC). 01:29:59 of the second pass (EST) shows an
    # earlier wall clock but is 59m59s later: late by a day (past the 15 min grace).
    deadline = deadline_for(HW3)
    assert deadline.due == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    second_pass = datetime(2026, 11, 1, 1, 29, 59, fold=1, tzinfo=NY)
    assert late_units(deadline, second_pass) == 1
    assert late_units(deadline, datetime(2026, 11, 1, 1, 29, 59, tzinfo=NY)) == 0
    # A day is 24 hours: 2026-11-02 01:30 local is 25 hours after the due, so 2 started days.
    assert late_units(deadline, datetime(2026, 11, 2, 1, 30, tzinfo=NY)) == 2
    assert late_units(deadline, datetime(2026, 11, 2, 0, 30, tzinfo=NY)) == 1


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="no time zone"):
        late_units(deadline_for(HW1), datetime(2026, 9, 16))


def test_cutoff_moves_with_the_extension():
    # Uploads at and around the cutoff: tests/test_submissions.py (submissions.check_limits).
    ext = EXTENSIONS[0]  # hw2, two days
    assert deadline_for(HW2).cutoff == at("2026-10-03T23:59:00-04:00")
    assert deadline_for(HW2, ext).cutoff == at("2026-10-05T23:59:00-04:00")
    own = ExtensionRow("s4", "hw2", ext.due, cutoff=at("2026-10-10T12:00:00-04:00"))
    assert deadline_for(HW2, own).cutoff == at("2026-10-10T12:00:00-04:00")
    assert deadline_for(HW1).cutoff is None


def test_an_extension_before_the_due_date_changes_nothing():
    early = ExtensionRow("s1", "hw2", HW2.due - timedelta(days=3))
    assert deadline_for(HW2, early) == deadline_for(HW2)


# ---- submission limits ------------------------------------------------------------------------------


def test_submission_limits():
    # The messages students read: tests/test_submissions.py (submissions.check_limits).
    now = at("2026-09-15T14:30:00-04:00")
    policy = SubmissionPolicy(max=3, per_hour=2)
    assert submission_limit(policy, [], now) is None
    assert submission_limit(policy, [now - timedelta(minutes=90)], now) is None
    used = [now - timedelta(minutes=m) for m in (100, 50, 10)]
    assert submission_limit(policy, used, now) == LimitHit("max_submissions", None)
    # Two in the last hour (at 13:40 and 14:20): the next when 13:40 leaves the window, at 14:40.
    hit = submission_limit(SubmissionPolicy(per_hour=2), used, now)
    assert hit == LimitHit("rate_limited", at("2026-09-15T14:40:00-04:00"))
    assert submission_limit(SubmissionPolicy(per_hour=2), used, now + timedelta(minutes=10)) is None


@given(
    times=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    per_hour=st.integers(min_value=1, max_value=5),
    now=st.integers(min_value=0, max_value=12_000),
)
def test_rate_limit_names_the_first_moment_that_is_allowed(times, per_hour, now):
    start = datetime(2026, 9, 1, tzinfo=UTC)
    previous = [start + timedelta(seconds=t) for t in times if t <= now]
    policy = SubmissionPolicy(per_hour=per_hour)
    moment = start + timedelta(seconds=now)
    hit = submission_limit(policy, previous, moment)
    if hit is not None:
        allowed = hit.allowed_at
        assert allowed > moment
        assert submission_limit(policy, previous, allowed) is None
        assert submission_limit(policy, previous, allowed - SECOND) is not None


# ---- properties -------------------------------------------------------------------------------------

policies = st.builds(
    LatePolicy,
    grace_minutes=st.integers(0, 120),
    penalty_percent=st.floats(0, 100, allow_nan=False),
    unit=st.sampled_from(["day", "hour"]),
    max_penalty_percent=st.floats(0, 100, allow_nan=False),
)
offsets = st.integers(min_value=-3 * 86_400, max_value=20 * 86_400)  # seconds after the due
# Local due dates around both 2026 DST changes in New York, ambiguous and skipped times included.
local_dues = st.datetimes(
    min_value=datetime(2026, 3, 7),
    max_value=datetime(2026, 11, 3),
    timezones=st.just(NY),
    allow_imaginary=True,
)


@given(policy=policies, due=local_dues, first=offsets, gap=st.integers(min_value=1, max_value=30 * 86_400))
def test_a_later_submission_never_has_a_smaller_penalty_nor_changes_an_earlier_one(policy, due, first, gap):
    assignment = make("p", due, late=policy)
    deadline = deadline_for(assignment)
    earlier = due + timedelta(seconds=first)
    later = earlier + timedelta(seconds=gap)
    before = penalty_percent(deadline, earlier)
    assert penalty_percent(deadline, later) >= before
    rows = [sub(1, "s", "p", earlier, 5, 10)]
    alone = counted_submission(rows, deadline, "best")
    both = counted_submission([*rows, sub(2, "s", "p", later, 5, 10)], deadline, "best")
    # Same score later: the earlier one still counts, with the same penalty as before.
    assert both.submission.id == 1 and both.penalty == alone.penalty == before


@given(due=local_dues, seconds=st.integers(min_value=1, max_value=86_400), grace=st.integers(0, 60))
def test_one_second_either_side_in_any_local_time(due, seconds, grace):
    deadline = deadline_for(make("p", due, late=LatePolicy(grace_minutes=grace, penalty_percent=1)))
    # Adding a timedelta to a local time is wall-clock arithmetic; instants are added in UTC.
    limit = due.astimezone(UTC) + timedelta(minutes=grace)
    assert late_units(deadline, limit - SECOND) == 0
    assert late_units(deadline, limit) == 0
    assert late_units(deadline, limit + SECOND) == 1


submission_lists = st.lists(
    st.tuples(
        offsets,
        st.integers(0, 10),  # score out of 10
        st.sampled_from(["graded", "graded", "error", "queued"]),
    ),
    max_size=6,
)


@given(
    policy=policies,
    counts=st.sampled_from(["best", "last"]),
    rows=submission_lists,
    extra_hours=st.integers(min_value=-48, max_value=24 * 30),
    pin=st.integers(min_value=-1, max_value=5),
)
def test_an_extension_never_lowers_a_score(policy, counts, rows, extra_hours, pin):
    due = at("2026-10-01T23:59:00-04:00")
    assignment = make("p", due, late=policy, counts=counts)
    submissions = [
        sub(i, "s", "p", due + timedelta(seconds=offset), score, 10, status=status, pinned=(i == pin))
        for i, (offset, score, status) in enumerate(rows)
    ]
    extension = ExtensionRow("s", "p", due + timedelta(hours=extra_hours))
    without = counted_submission(submissions, deadline_for(assignment), counts)
    with_ext = counted_submission(submissions, deadline_for(assignment, extension), counts)
    assert (without is None) == (with_ext is None)
    if without is not None:
        assert with_ext.final >= without.final


weights = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(weights, min_size=1, max_size=12), st.floats(min_value=1, max_value=100))
def test_full_marks_give_exactly_the_share_whatever_the_weights(ws, share):
    cells = {f"a{i}": Cell(counted=full()) for i in range(len(ws))}
    total = assignments_total(cells, {f"a{i}": w for i, w in enumerate(ws)}, share)
    assert total == Decimal(repr(share))
    assert assignments_total(cells, {f"a{i}": w for i, w in enumerate(ws)}, 45) == Decimal(45)


@given(st.lists(st.tuples(weights, st.integers(0, 100), st.booleans()), min_size=1, max_size=12))
def test_any_scores_and_excusals_stay_between_zero_and_45(items):
    assume(not all(excused for _, _, excused in items))
    cells = {
        f"a{i}": Cell(excused=True) if excused else Cell(counted=full(Decimal(percent)))
        for i, (_, percent, excused) in enumerate(items)
    }
    total = assignments_total(cells, {f"a{i}": w for i, (w, _, _) in enumerate(items)}, 45)
    assert Decimal(0) <= total <= Decimal(45)


def test_everything_excused_has_no_total():
    assert assignments_total({"a": Cell(excused=True)}, {"a": 1}, 45) is None


def full(percent: Decimal = Decimal(100)) -> Scored:
    row = sub(1, "s", "a", at("2026-09-01T00:00:00+00:00"), 1, 1)
    return Scored(submission=row, raw=percent, late_units=0, penalty=Decimal(0))


# ---- which submission counts ---------------------------------------------------------------------------


def test_errors_count_only_when_nothing_better_exists():
    deadline = deadline_for(HW1)
    on_time = at("2026-09-15T20:00:00-04:00")
    graded = sub(1, "s", "hw1", on_time, 3, 10)
    errored = sub(2, "s", "hw1", on_time + SECOND, status="error")
    assert counted_submission([graded, errored], deadline, "last").submission.id == 1
    assert counted_submission([errored], deadline, "best").final == 0
    assert counted_submission([sub(3, "s", "hw1", on_time, status="running")], deadline, "best") is None


def test_pinned_wins_even_when_it_errored():
    deadline = deadline_for(HW1)
    on_time = at("2026-09-15T20:00:00-04:00")
    rows = [
        sub(1, "s", "hw1", on_time, 10, 10),
        sub(2, "s", "hw1", on_time + SECOND, status="error", pinned=True),
    ]
    assert counted_submission(rows, deadline, "best").submission.id == 2

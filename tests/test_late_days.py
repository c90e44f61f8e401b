"""Late days: a budget per student, spent by due date before penalties (grader.gradebook, "Late days").

A hand-worked roster, then Hypothesis properties of the spending.
"""

import csv
import io
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from grader.assignments import Assignment, AssignmentConfig, CourseConfig, LateDays, LatePolicy
from grader.gradebook import ExcusalRow, RosterEntry, SubmissionRow, gradebook_csv, moodle_csv, student_grades
from grader.late_days import standing
from grader.policies import ExtensionRow, days_late, deadline_for, moved_by_late_days, penalty_percent

POLICY = LatePolicy(grace_minutes=15, penalty_percent=10, unit="day", max_penalty_percent=50)


def course(budget: int) -> CourseConfig:
    return CourseConfig(
        code="CENG 501",
        title="Deep Learning",
        term="Spring 2027",
        timezone="Europe/Istanbul",
        assignments_share=45,
        late=POLICY,
        late_days=LateDays(budget=budget),
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def make(slug: str, due: str, weight: float, of: CourseConfig, late: LatePolicy | None = None) -> Assignment:
    config = AssignmentConfig(
        title=slug.upper(), released=at(due) - timedelta(days=9), due=at(due), weight=weight, late=late
    )
    return Assignment(slug=slug, path=Path("/nowhere") / slug, config=config, course=of)


COURSE = course(3)
A = make("a", "2027-03-03T23:59:00+03:00", 1, COURSE)
B = make("b", "2027-03-10T23:59:00+03:00", 1, COURSE)
C = make("c", "2027-03-17T23:59:00+03:00", 2, COURSE)
# Listed out of due order on purpose: late days go by due date, not by the order given.
ASSIGNMENTS = [C, A, B]
H = timedelta(hours=1)
D = timedelta(days=1)


def sub(id, student, a: Assignment, late: timedelta, score, max_score=100, status="graded"):
    return SubmissionRow(id, student, a.slug, a.due + late, status, score, max_score)


ROSTER = [RosterEntry(f"s{i}", f"Student {i}", f"s{i}@example.edu") for i in range(1, 7)]
SUBMISSIONS = [
    # s1: a 26 h late (2 started days) -> 2 days, no penalty: 80. b 5 h late -> the last day: 100.
    #     c on time: 90. Used 3 of 3. (80 + 100 + 2 x 90) / 4 = 90% -> 40.50.
    sub(1, "s1", A, 26 * H, 80),
    sub(2, "s1", B, 5 * H, 100),
    sub(3, "s1", C, -H, 90),
    # s2: a within grace: no day. b 73 h late (4 started days) -> all 3 days, 1 h late left: 10% -> 45.
    #     c 1 h late, no day left: 10% -> 90. (100 + 45 + 180) / 4 = 81.25% -> 36.5625 -> 36.56.
    sub(10, "s2", A, timedelta(minutes=10), 100),
    sub(11, "s2", B, 73 * H, 50),
    sub(12, "s2", C, H, 100),
    # s3: a errored late (a zero: no day spent on it). b on time 100. c 47 h late -> 2 days: 60.
    #     (0 + 100 + 120) / 4 = 55% -> 24.75. Used 2.
    sub(20, "s3", A, 30 * H, None, None, status="error"),
    sub(21, "s3", B, -D, 100),
    sub(22, "s3", C, 47 * H, 60),
    # s4: excused from a (its late upload spends nothing); b extended by 2 days, uploaded 5 h after the
    #     new due -> 1 day: 100. c late with 0 points: no day. (100 + 0) / 3 = 33.33% -> 15.00. Used 1.
    sub(30, "s4", A, 2 * D, 100),
    sub(31, "s4", B, 2 * D + 5 * H, 100),
    sub(32, "s4", C, 3 * H, 0),
    # s5: a on time 70, and 25 h late 90: with 2 days the late one is best (90). b 2 days late -> the
    #     one day left: 1 day late, 10% -> 90. c missing. (90 + 90 + 0) / 4 = 45% -> 20.25. Used 3.
    sub(40, "s5", A, -H, 70),
    sub(41, "s5", A, 25 * H, 90),
    sub(42, "s5", B, 2 * D - H, 100),
    # s6: a 8 started days late: 3 days still leave 5 (capped at 50%), so none is spent: 50.
    #     b 1 day late -> 1 day: 100. c 2 days late -> 2 days: 100. (50 + 100 + 200) / 4 = 87.5%
    #     -> 39.375 -> 39.38. Used 3.
    sub(50, "s6", A, 7 * D + H, 100),
    sub(51, "s6", B, 20 * H, 100),
    sub(52, "s6", C, 2 * D - H, 100),
]
EXTENSIONS = [ExtensionRow("s4", "b", B.due + 2 * D)]
EXCUSALS = [ExcusalRow("s4", "a")]


def grades(of=COURSE, assignments=ASSIGNMENTS, submissions=SUBMISSIONS):
    return list(
        student_grades(
            roster=ROSTER,
            assignments=assignments,
            submissions=sorted(submissions, key=lambda s: s.student_id),
            course=of,
            extensions=EXTENSIONS,
            excusals=EXCUSALS,
        )
    )


def table(lines) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(lines))))


def test_the_hand_worked_roster_in_the_gradebook_csv():
    rows = table(gradebook_csv(grades(), assignments=[A, B, C], course=COURSE, extra=["late_days"]))
    got = {
        r["Student ID"]: (
            r["a (%)"],
            r["b (%)"],
            r["c (%)"],
            r["Assignments (45)"],
            r["Late days used (of 3)"],
        )
        for r in rows
    }
    assert got == {
        "s1": ("80.00", "100.00", "90.00", "40.50", "3"),
        "s2": ("100.00", "45.00", "90.00", "36.56", "3"),
        "s3": ("0.00", "100.00", "60.00", "24.75", "2"),
        "s4": ("EX", "100.00", "0.00", "15.00", "1"),
        "s5": ("90.00", "90.00", "0.00", "20.25", "3"),
        "s6": ("50.00", "100.00", "100.00", "39.38", "3"),
    }
    per = {r["Student ID"]: (r["a late days"], r["b late days"], r["c late days"]) for r in rows}
    assert per["s1"] == ("2", "1", "0") and per["s2"] == ("0", "3", "0") and per["s6"] == ("0", "1", "2")


def test_the_moodle_csv_has_the_same_numbers():
    rows = table(moodle_csv(grades(), assignments=[A, B, C], course=COURSE))
    assert [(r["ID number"], r["A"], r["B"], r["C"], r["Assignments (45)"]) for r in rows] == [
        ("s1", "80.00", "100.00", "90.00", "40.50"),
        ("s2", "100.00", "45.00", "90.00", "36.56"),
        ("s3", "0.00", "100.00", "60.00", "24.75"),
        ("s4", "", "100.00", "0.00", "15.00"),
        ("s5", "90.00", "90.00", "0.00", "20.25"),
        ("s6", "50.00", "100.00", "100.00", "39.38"),
    ]


def test_what_the_student_is_shown():
    by_student = {g.student.student_id: g for g in grades()}
    s3 = standing(by_student["s3"], budget=3)
    assert (s3.used, s3.left, s3.by_assignment, s3.text) == (2, 1, {"c": 2}, "1 of 3 late days left")
    assert standing(by_student["s1"], budget=3).text == "0 of 3 late days left"
    assert standing(by_student["s4"], budget=1).text == "0 of 1 late day left"


def test_an_assignment_that_refuses_late_days_keeps_them_for_the_next():
    no_days = LatePolicy(late_days=False)
    strict_a = make("a", "2027-03-03T23:59:00+03:00", 1, COURSE, late=no_days)
    got = {g.student.student_id: g for g in grades(assignments=[strict_a, B, C])}
    # s1's a (26 h late) now pays 20%; its 3 days go to b (1) and nothing else needs them.
    assert got["s1"].cells["a"].counted.penalty == 20 and got["s1"].cells["a"].counted.late_days == 0
    assert got["s1"].late_days_used == 1


def test_no_budget_is_the_gradebook_without_late_days():
    without = table(gradebook_csv(grades(of=course(0)), assignments=[A, B, C], course=course(0)))
    assert "Late days used (of 0)" not in without[0]
    assert {r["Student ID"]: r["b (%)"] for r in without}["s2"] == "30.00"  # 4 started days: 40% off 50


def test_a_late_day_moves_the_due_date_by_24_hours_and_grace_follows_it():
    deadline = deadline_for(A)
    late = A.due + D + timedelta(minutes=14)
    assert days_late(deadline, late) == 2
    assert penalty_percent(moved_by_late_days(deadline, 1), late) == 0  # 14 min: within grace
    assert moved_by_late_days(deadline, 1).cutoff == deadline.cutoff


# ---- properties -------------------------------------------------------------------------------------

LATENESS = st.integers(min_value=-2 * 24 * 60, max_value=9 * 24 * 60).map(lambda m: timedelta(minutes=m))
SUBS = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2", "s3"]),
        st.sampled_from([A, B, C]),
        LATENESS,
        st.integers(min_value=0, max_value=10),
        st.sampled_from(["graded", "graded", "graded", "error", "queued"]),
    ),
    max_size=14,
)


def rows_of(drawn) -> list[SubmissionRow]:
    return [
        SubmissionRow(i, who, a.slug, a.due + late, status, points, 10)
        for i, (who, a, late, points, status) in enumerate(drawn)
    ]


def run(rows, budget: int, assignments=ASSIGNMENTS):
    of = course(budget)
    bound = [replace(a, course=of) for a in assignments]
    return {
        g.student.student_id: g
        for g in student_grades(
            roster=ROSTER[:3],
            assignments=bound,
            submissions=sorted(rows, key=lambda s: s.student_id),
            course=of,
        )
    }


@settings(max_examples=150, deadline=None)
@given(SUBS, st.integers(min_value=0, max_value=8))
def test_late_days_never_exceed_the_budget_nor_a_submission_lateness(drawn, budget):
    for g in run(rows_of(drawn), budget).values():
        assert 0 <= g.late_days_used <= budget
        for slug, cell in g.cells.items():
            if cell.counted:
                deadline = deadline_for(next(a for a in ASSIGNMENTS if a.slug == slug))
                assert cell.counted.late_days <= days_late(deadline, cell.counted.submission.submitted_at)


@settings(max_examples=150, deadline=None)
@given(SUBS, st.integers(min_value=0, max_value=8))
def test_late_days_only_ever_raise_grades(drawn, budget):
    rows = rows_of(drawn)
    with_days, without = run(rows, budget), run(rows, 0)
    for student, g in with_days.items():
        for slug, cell in g.cells.items():
            assert cell.percent >= without[student].cells[slug].percent
        assert g.total >= without[student].total


@settings(max_examples=150, deadline=None)
@given(SUBS, st.integers(min_value=1, max_value=8))
def test_each_day_spent_lowers_the_penalty_and_days_go_by_due_date(drawn, budget):
    for g in run(rows_of(drawn), budget).values():
        left = budget
        for a in (A, B, C):  # due order
            counted = g.cells[a.slug].counted
            if counted is None:
                continue
            spent, at_ = counted.late_days, counted.submission.submitted_at
            assert spent <= left
            deadline = deadline_for(a)
            if spent:
                # The fewest days for the least penalty reachable with what was left.
                fewer = penalty_percent(moved_by_late_days(deadline, spent - 1), at_)
                assert fewer > counted.penalty
            reachable = min(days_late(deadline, at_), left)
            best = penalty_percent(moved_by_late_days(deadline, reachable), at_)
            assert counted.penalty == best or counted.raw == 0
            left -= spent


@settings(max_examples=100, deadline=None)
@given(SUBS, st.integers(min_value=0, max_value=8), st.permutations([A, B, C]))
def test_the_spending_does_not_depend_on_the_order_assignments_are_given_in(drawn, budget, order):
    rows = rows_of(drawn)
    one, other = run(rows, budget, list(order)), run(rows, budget, [A, B, C])
    for student in one:
        assert one[student].total == other[student].total
        assert one[student].cells == other[student].cells


def test_decimal_totals_are_exact():
    g = {x.student.student_id: x for x in grades()}
    assert g["s6"].total == Decimal("39.375")

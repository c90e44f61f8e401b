"""The late policy cannot be lost by accident: an assignment's [late] keys override the course's one
by one (issue 17), and `grader assignments check` shows the policy that applies."""

import csv
import io
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from grader.assignments import load_assignment
from grader.gradebook import RosterEntry, SubmissionRow, gradebook_csv, student_grades
from grader.policies import deadline_for, effective_late_policy, penalty_percent
from tests.fixtures.live import GRADER

COURSE = """code = "CENG 501"
title = "Deep Learning"
term = "Spring 2027"
timezone = "Europe/Istanbul"
assignments_share = 45

[late]
grace_minutes = 15
penalty_percent = 10
unit = "day"
max_penalty_percent = 50
"""

ASSIGNMENT = """title = "HW"
released = 2027-02-22T09:00:00+03:00
due = 2027-03-03T23:59:00+03:00
weight = 3

[late]
cutoff = 2027-03-08T23:59:00+03:00
"""


def folder(tmp_path: Path, assignment: str = ASSIGNMENT) -> Path:
    (tmp_path / "course.toml").write_text(COURSE)
    hw = tmp_path / "hw1"
    (hw / "tests").mkdir(parents=True)
    (hw / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    (hw / "solution").mkdir()
    (hw / "solution" / "submission.py").write_text("")
    (hw / "assignment.toml").write_text(assignment)
    return hw


def test_an_assignment_that_sets_only_its_cutoff_keeps_the_course_penalty(tmp_path):
    hw = load_assignment(folder(tmp_path))
    late = hw.late
    assert (late.grace_minutes, late.penalty_percent, late.unit, late.max_penalty_percent) == (
        15,
        10,
        "day",
        50,
    )
    assert late.cutoff == datetime.fromisoformat("2027-03-08T23:59:00+03:00")


def test_the_26_hours_late_case_of_the_issue_costs_two_started_days(tmp_path):
    hw = load_assignment(folder(tmp_path))
    late = hw.due + timedelta(hours=26)
    # It was 0.0 when the assignment's [late] replaced the course's as a whole.
    assert penalty_percent(deadline_for(hw), late) == 20
    rows = [SubmissionRow(1, "s1", "hw1", late, "graded", 7, 10)]
    grades = student_grades(
        roster=[RosterEntry("s1", "S One", "s1@example.edu")],
        assignments=[hw],
        submissions=rows,
        course=hw.course,
    )
    table = list(
        csv.DictReader(io.StringIO("".join(gradebook_csv(grades, assignments=[hw], course=hw.course))))
    )
    # 70% raw, 20% off: 56%, not 70%; the only assignment, so 45 x 0.56 = 25.2.
    assert table[0]["hw1 (%)"] == "56.00" and table[0]["Assignments (45)"] == "25.20"


def test_assignment_keys_override_one_by_one_and_say_where_they_come_from(tmp_path):
    own = ASSIGNMENT + 'penalty_percent = 5\nunit = "hour"\n'
    hw = load_assignment(folder(tmp_path, own))
    assert (hw.late.penalty_percent, hw.late.unit, hw.late.grace_minutes, hw.late.max_penalty_percent) == (
        5,
        "hour",
        15,
        50,
    )
    sources = {line.key: (line.value, line.source) for line in effective_late_policy(hw)}
    assert sources["penalty_percent"] == ("5", "assignment")
    assert sources["unit"] == ("hour", "assignment")
    assert sources["grace_minutes"] == ("15", "course")
    assert sources["max_penalty_percent"] == ("50", "course")
    assert sources["cutoff"] == ("2027-03-08T23:59:00+03:00", "assignment")
    assert sources["late_days"][1] == "default"


def test_an_assignment_without_late_table_has_the_course_policy(tmp_path):
    hw = load_assignment(folder(tmp_path, ASSIGNMENT.split("[late]")[0]))
    assert hw.late == hw.course.late and hw.late.cutoff is None
    assert {line.source for line in effective_late_policy(hw) if line.key != "cutoff"} >= {"course"}


def test_assignments_check_prints_the_effective_policy(tmp_path):
    hw = folder(tmp_path)
    # The static part and the policy come first; the sandbox is not needed to see them.
    done = subprocess.run(
        [*GRADER, "assignments", "check", str(hw)], capture_output=True, text=True, timeout=120
    )
    assert "penalty_percent     = 10  (course)" in done.stderr, done.stderr
    assert "cutoff              = 2027-03-08T23:59:00+03:00  (assignment)" in done.stderr

"""Manual points: the assignment.toml format of questions and rubrics, a question's score, the history
of every change, and the hand-worked roster with manual points through the gradebook and its CSVs."""

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from grader import release, rubrics
from grader.assignments import Assignment, AssignmentConfig, Question, SubmissionPolicy
from grader.gradebook import SubmissionRow, gradebook_csv, student_grades
from grader.gradebook_export import export_csv, export_per_test_csv
from grader.models import Submission, User
from tests.test_gradebook import COURSE, ROSTER, at

QUESTIONS = [
    {
        "id": "q1-written",
        "title": "Q1: why does the loss plateau?",
        "points": 4,
        "rubric": [
            {"label": "names the learning rate", "points": 2},
            {"label": "explains the plateau", "points": 2},
            {"label": "confuses train and test", "points": -1},
        ],
        "comments": ["Look at the learning-rate schedule."],
    },
    {
        "id": "q2-plot",
        "title": "Q2: the loss curve",
        "points": 6,
        "start": "full",
        "rubric": [{"label": "no axis labels", "points": -2}, {"label": "wrong scale", "points": -3}],
    },
]


def hw4(questions=QUESTIONS, **feedback) -> Assignment:
    due = at("2026-11-15T23:59:00-05:00")
    config = AssignmentConfig.model_validate(
        {
            "title": "HW4: written and coded",
            "released": due - timedelta(days=14),
            "due": due,
            "weight": 10,
            "submissions": SubmissionPolicy(counts="best"),
            "questions": questions,
            "feedback": feedback,
        }
    )
    return Assignment(slug="hw4", path=Path("/nonexistent/hw4"), config=config, course=COURSE)


# ---- the format --------------------------------------------------------------------------------------


def test_questions_and_rubrics_are_read_and_checked():
    a = hw4()
    assert [q.id for q in a.questions] == ["q1-written", "q2-plot"] and a.manual_max == 10
    with pytest.raises(ValidationError, match="question ids must be unique"):
        hw4([QUESTIONS[0], QUESTIONS[0]])
    with pytest.raises(ValidationError, match="rubric labels must be unique"):
        hw4([{**QUESTIONS[0], "rubric": [{"label": "x", "points": 1}, {"label": "x", "points": 2}]}])
    with pytest.raises(ValidationError, match="lower-case"):
        hw4([{**QUESTIONS[0], "id": "Q 1"}])
    with pytest.raises(ValidationError, match="greater than 0"):
        hw4([{**QUESTIONS[0], "points": 0}])
    with pytest.raises(ValidationError, match="Extra inputs"):
        hw4([{**QUESTIONS[0], "pionts": 3}])


def test_visibility_patterns_must_name_tests_in_tests():
    with pytest.raises(ValidationError, match="public_tests/ are always visible"):
        hw4(visibility={"public_tests/test_p.py": "hidden"})
    a = hw4(
        tests="after_due",
        visibility={"tests/test_a.py::test_x": "visible", "tests/test_b.py": "after_release"},
    )
    assert release.needs_release(a)


def test_a_question_score_starts_at_zero_or_full_and_stays_in_bounds():
    q1, q2 = (Question.model_validate(q) for q in QUESTIONS)
    assert rubrics.question_score(q1, []) == 0
    assert rubrics.question_score(q1, ["names the learning rate", "explains the plateau"]) == 4
    assert rubrics.question_score(q1, ["names the learning rate", "confuses train and test"]) == 1
    assert rubrics.question_score(q1, ["confuses train and test"]) == 0  # never below 0
    assert rubrics.question_score(q1, ["explains the plateau"], adjustment=0.5) == 2.5
    assert rubrics.question_score(q1, ["names the learning rate", "explains the plateau"], 3) == 4
    assert rubrics.question_score(q2, []) == 6
    assert rubrics.question_score(q2, ["no axis labels", "wrong scale"]) == 1
    assert rubrics.question_score(q2, ["no axis labels", "wrong scale"], adjustment=-2) == 0


# ---- the hand-worked roster with manual points -------------------------------------------------------
# hw4: 10 auto points + 10 manual (q1 4, q2 6); 15 min grace, 10% per started day late; best counts.
HW4 = hw4()
MANUAL_SUBMISSIONS = [
    # s1: 10/10 on time + 7 manual = 17/20 -> 85.00
    SubmissionRow(1, "s1", "hw4", at("2026-11-15T20:00:00-05:00"), "graded", 10, 10),
    # s2: 6/10 one day late + 10 manual = 16/20 = 80, -10% -> 72.00
    SubmissionRow(2, "s2", "hw4", at("2026-11-16T12:00:00-05:00"), "graded", 6, 10),
    # s3: only an errored run: 0, whatever the manual points
    SubmissionRow(3, "s3", "hw4", at("2026-11-15T20:00:00-05:00"), "error"),
    # s4: 8/10 and no manual grade yet: 8/20 -> 40.00
    SubmissionRow(4, "s4", "hw4", at("2026-11-15T20:00:00-05:00"), "graded", 8, 10),
    # s5: 9/10 (being regraded: the current grading counts) + 1 manual = 10/20 -> 50.00
    SubmissionRow(5, "s5", "hw4", at("2026-11-15T20:00:00-05:00"), "graded", 9, 10),
]
MANUAL = {  # (student, question): points
    ("s1", "q1-written"): 3,
    ("s1", "q2-plot"): 4,
    ("s2", "q1-written"): 4,
    ("s2", "q2-plot"): 6,
    ("s3", "q1-written"): 4,
    ("s5", "q2-plot"): 1,
}
MANUAL_EXPECTED = {  # student: (hw4 %, total of 45, manual points)
    "s1": ("85.00", "38.25", "7.00"),
    "s2": ("72.00", "32.40", "10.00"),
    "s3": ("0.00", "0.00", "4.00"),
    "s4": ("40.00", "18.00", "0.00"),
    "s5": ("50.00", "22.50", "1.00"),
    "s6": ("0.00", "0.00", ""),
}


def _totals() -> dict[tuple[str, str], float]:
    totals: dict[tuple[str, str], float] = {}
    for (student, _), points in MANUAL.items():
        totals[(student, "hw4")] = totals.get((student, "hw4"), 0) + points
    return totals


def read(lines) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(lines))))


def test_the_hand_worked_roster_counts_manual_points():
    grades = student_grades(
        roster=ROSTER[:6], assignments=[HW4], submissions=MANUAL_SUBMISSIONS, course=COURSE, manual=_totals()
    )
    rows = read(gradebook_csv(grades, assignments=[HW4], course=COURSE, extra=["manual"], unreleased={"hw4"}))
    assert list(rows[0])[3:] == ["hw4 (%) (not released)", "Assignments (45)", "hw4 manual (points)"]
    for row in rows:
        got = (row["hw4 (%) (not released)"], row["Assignments (45)"], row["hw4 manual (points)"])
        assert got == MANUAL_EXPECTED[row["Student ID"]], row["Student ID"]


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request):
    if request.param == "postgresql":
        yield request.getfixturevalue("db_session")
        return
    engine = create_engine(request.getfixturevalue("sqlite_url"))
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.fixture
def stored(session):
    """The roster with hw4's submissions and manual grades stored through rubrics.save, by a TA."""
    users = {s.student_id: User(login=s.student_id, name=s.name, email=s.email) for s in ROSTER[:6]}
    ta = User(login="ta1", name="A TA", role="ta")
    session.add_all([*users.values(), ta])
    session.flush()
    for row in MANUAL_SUBMISSIONS:
        regrading = row.student_id == "s5"
        session.add(
            Submission(
                user_id=users[row.student_id].id,
                assignment="hw4",
                submitted_at=row.submitted_at,
                sha256="0" * 64,
                filename="hw4.ipynb",
                format="ipynb",
                status="queued" if regrading else row.status,
                graded_status=row.status,
                score=row.score,
                max_score=row.max_score,
                result={
                    "status": row.status,
                    "tests": [{"name": "tests/test_a.py::test_a", "outcome": "passed"}],
                },
            )
        )
    session.commit()
    q1, q2 = HW4.questions
    picks = {
        ("s1", "q1-written"): (["names the learning rate"], 1, "and half the reason"),
        ("s1", "q2-plot"): (["no axis labels"], 0, ""),
        ("s2", "q1-written"): (["names the learning rate", "explains the plateau"], 0, ""),
        ("s2", "q2-plot"): ([], 0, ""),
        ("s3", "q1-written"): (["names the learning rate", "explains the plateau"], 0, ""),
        ("s5", "q2-plot"): (["no axis labels", "wrong scale"], 0, ""),
    }
    for (login, question), (items, adjustment, reason) in picks.items():
        grade = rubrics.save(
            session=session,
            assignment=HW4,
            student=users[login],
            question_id=question,
            items=items,
            comment="ok",
            grader=ta,
            adjustment=adjustment,
            adjustment_reason=reason,
        )
        assert grade.points == MANUAL[(login, question)]
    return users, ta


def test_the_database_export_counts_manual_points_and_marks_the_release(session, stored):
    rows = read(export_csv(session=session, assignments=[HW4], course=COURSE, extra=["manual"]))
    for row in rows:
        got = (row["hw4 (%) (not released)"], row["Assignments (45)"], row["hw4 manual (points)"])
        assert got == MANUAL_EXPECTED[row["Student ID"]], row["Student ID"]
    release.set_released(session=session, slug="hw4", by=stored[1], release=True)
    released = read(export_csv(session=session, assignments=[HW4], course=COURSE))
    assert list(released[0])[3] == "hw4 (%)"
    per_test = {r["Student ID"]: r for r in read(export_per_test_csv(session=session, assignment=HW4))}
    assert (per_test["s1"]["q1-written (4)"], per_test["s1"]["q2-plot (6)"]) == ("3.00", "4.00")
    assert (per_test["s4"]["q1-written (4)"], per_test["s5"]["q2-plot (6)"]) == ("", "1.00")


def test_every_change_is_kept_with_who_when_before_and_after(session, stored):
    users, ta = stored
    prof = User(login="prof", name="Prof", role="instructor")
    session.add(prof)
    session.commit()
    rubrics.save(
        session=session,
        assignment=HW4,
        student=users["s1"],
        question_id="q1-written",
        items=["names the learning rate", "explains the plateau"],
        comment="full marks after all",
        grader=prof,
        add_to_bank=True,
    )
    changes = rubrics.history(session, user_id=users["s1"].id, slug="hw4")
    q1 = [c for c in changes if c.question == "q1-written"]
    assert [c.by for c in q1] == ["ta1", "prof"]
    assert q1[0].before is None and q1[0].after["points"] == 3
    assert q1[1].before["points"] == 3 and q1[1].after["points"] == 4
    assert q1[1].before["adjustment_reason"] == "and half the reason"
    assert rubrics.bank(session, assignment=HW4, question_id="q1-written") == [
        "Look at the learning-rate schedule.",
        "full marks after all",
    ]
    # Saving the same grade again is no change.
    rubrics.save(
        session=session,
        assignment=HW4,
        student=users["s1"],
        question_id="q1-written",
        items=["explains the plateau", "names the learning rate"],
        comment="full marks after all",
        grader=prof,
    )
    assert len(rubrics.history(session, user_id=users["s1"].id, slug="hw4")) == len(changes)


@pytest.mark.parametrize(
    ("items", "adjustment", "reason", "message"),
    [
        (["not an item"], 0, "", "not in the rubric"),
        ([], 1, "", "needs a reason"),
        ([], 9, "generous", "at most 4 points"),
    ],
)
def test_a_bad_grade_is_refused_and_stores_nothing(session, stored, items, adjustment, reason, message):
    users, ta = stored
    before = rubrics.grades_of(session, user_id=users["s4"].id, slug="hw4")
    with pytest.raises(rubrics.BadGrade, match=message):
        rubrics.save(
            session=session,
            assignment=HW4,
            student=users["s4"],
            question_id="q1-written",
            items=items,
            comment="",
            grader=ta,
            adjustment=adjustment,
            adjustment_reason=reason,
        )
    assert rubrics.grades_of(session, user_id=users["s4"].id, slug="hw4") == before == {}

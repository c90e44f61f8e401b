"""A hand-worked roster through the database (issue 17, "Done when"): homeworks, a team project, late days,
an extension and an excusal, in the gradebook CSV and the Moodle CSV.

The course: 45% share; 15 minutes of grace, then 10% per started day, at most 50%; 2 late days per
student. hw-a and hw-b (weight 3 each, late days allowed), the project's proposal (2) and final
report (4), team uploads on which no late days are spent. Teams: t1 = s1, s2; t2 = s3, s4.
"""

import csv
import io
from datetime import datetime, timedelta

import pytest

from grader import (
    auth,
    catalog,
    db,
    extensions,
    gradebook,
    gradebook_export,
    late_days,
    release,
    rubrics,
    teams,
)
from grader.config import Settings
from grader.models import Submission

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

[late_days]
budget = 2
"""
HOMEWORK = """title = "{title}"
released = 2027-02-01T09:00:00+03:00
due = {due}
weight = 3
"""
MILESTONE = """title = "{title}"
kind = "project"
released = 2027-02-01T09:00:00+03:00
due = {due}
weight = {weight}
formats = ["pdf"]

[late]
late_days = false

[[questions]]
id = "all"
title = "The milestone"
points = {points}
"""
DUE = {
    "hw-a": datetime.fromisoformat("2027-03-03T23:59:00+03:00"),
    "hw-b": datetime.fromisoformat("2027-03-10T23:59:00+03:00"),
    "proposal": datetime.fromisoformat("2027-03-26T23:59:00+03:00"),
    "final": datetime.fromisoformat("2027-06-02T23:59:00+03:00"),
}
H, D = timedelta(hours=1), timedelta(days=1)


@pytest.fixture
def course(tmp_path):
    root = tmp_path / "assignments"
    root.mkdir()
    (root / "course.toml").write_text(COURSE)
    for slug, title in (("hw-a", "HW A"), ("hw-b", "HW B")):
        (root / slug / "tests").mkdir(parents=True)
        (root / slug / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
        (root / slug / "solution").mkdir()
        (root / slug / "solution" / "submission.py").write_text("")
        (root / slug / "assignment.toml").write_text(HOMEWORK.format(title=title, due=DUE[slug].isoformat()))
    for slug, title, weight, points in (("proposal", "Proposal", 2, 8), ("final", "Final report", 4, 20)):
        (root / slug).mkdir()
        (root / slug / "assignment.toml").write_text(
            MILESTONE.format(title=title, due=DUE[slug].isoformat(), weight=weight, points=points)
        )
    return root


@pytest.fixture
def settings(tmp_path, course, sqlite_url) -> Settings:
    return Settings(database_url=sqlite_url, data_dir=tmp_path / "data", assignments_dir=course)


def test_the_roster_matches_by_hand_in_both_csvs(settings):
    with db.session_factory(settings)() as session:
        assignments = catalog.sync(session=session, settings=settings)
        users = {
            login: auth.get_or_create_user(
                session=session, login=login, role="student", name=f"Student {login}"
            )
            for login in ("s1", "s2", "s3", "s4")
        }
        prof = auth.get_or_create_user(session=session, login="prof", role="instructor")
        session.commit()
        teams.store(session, {"t1": ["s1", "s2"], "t2": ["s3", "s4"]})
        team_of = {login: teams.team_of(session, user_id=user.id).id for login, user in users.items()}

        def graded(login, slug, late, score, max_score):
            """A homework graded in the sandbox, or a milestone (nothing runs) graded by hand."""
            is_team = assignments[slug].is_team
            session.add(
                Submission(
                    user_id=users[login].id,
                    assignment=slug,
                    submitted_at=DUE[slug] + late,
                    sha256="0" * 64,
                    filename="x",
                    format="pdf" if is_team else "zip",
                    status="submitted" if is_team else "graded",
                    score=None if is_team else score,
                    max_score=None if is_team else max_score,
                    team_id=team_of[login] if is_team else None,
                )
            )
            if is_team:
                assert assignments[slug].manual_max == max_score
                rubrics.save(
                    session=session,
                    assignment=assignments[slug],
                    student=users[login],
                    question_id="all",
                    items=[],
                    comment="",
                    grader=prof,
                    adjustment=score,
                    adjustment_reason="by hand",
                )

        # s1: hw-a 30 h late (2 started days): both late days, no penalty: 90. hw-b 3 h late, no day
        #     left: 10% off 100 = 90.
        graded("s1", "hw-a", 30 * H, 9, 10)
        graded("s1", "hw-b", 3 * H, 10, 10)
        # s2: hw-a on time: 100. hw-b extended by 2 days, uploaded 20 h after the new due: 1 day: 100.
        graded("s2", "hw-a", -H, 10, 10)
        graded("s2", "hw-b", 2 * D + 20 * H, 10, 10)
        extensions.put(
            session, user=users["s2"], slug="hw-b", due=DUE["hw-b"] + 2 * D, cutoff=None, reason=""
        )
        # s3: excused from hw-a. hw-b 50 h late (3 days): 2 days leave 2 h: 10% off 80 = 72.
        extensions.put_excusal(session, user=users["s3"], slug="hw-a", reason="medical")
        graded("s3", "hw-b", 50 * H, 8, 10)
        # s4: no homework.
        # t1: s1's proposal on time, 6/8 = 75 for s1 and s2. s2's final 26 h late, 18/20: no late
        #     days on the project: 20% off 90 = 72 for both.
        graded("s1", "proposal", -D, 6, 8)
        graded("s2", "final", 26 * H, 18, 20)
        # t2: s3's proposal 1 h late, 8/8: 90 for s3; s4 has a 1-day extension on it: 100 for s4.
        graded("s3", "proposal", H, 8, 8)
        extensions.put(
            session, user=users["s4"], slug="proposal", due=DUE["proposal"] + D, cutoff=None, reason=""
        )
        for slug in ("proposal", "final"):
            release.set_released(session=session, slug=slug, by=prof, release=True)
        session.commit()

        ordered = gradebook.in_order(assignments.values())
        course = ordered[0].course
        rows = list(
            csv.DictReader(
                io.StringIO(
                    "".join(gradebook_export.export_csv(session=session, assignments=ordered, course=course))
                )
            )
        )
        moodle = list(
            csv.DictReader(
                io.StringIO(
                    "".join(
                        gradebook_export.export_moodle_csv(
                            session=session, assignments=ordered, course=course
                        )
                    )
                )
            )
        )
        shown = {
            login: late_days.for_student(session, settings=settings, user=user).text
            for login, user in users.items()
        }

    # Totals: sum(weight x percent) / sum(weights) x 45, weights 3 + 3 + 2 + 4 = 12.
    # s1: (270 + 270 + 150 + 288) / 1200 x 45 = 36.675 -> 36.68
    # s2: (300 + 300 + 150 + 288) / 1200 x 45 = 38.925 -> 38.93
    # s3: hw-a excused: (216 + 180 + 0) / 900 x 45 = 19.80
    # s4: (0 + 0 + 200 + 0) / 1200 x 45 = 7.50
    assert [list(r.values()) for r in rows] == [
        ["s1", "Student s1", "", "90.00", "90.00", "75.00", "72.00", "36.68", "2"],
        ["s2", "Student s2", "", "100.00", "100.00", "75.00", "72.00", "38.93", "1"],
        ["s3", "Student s3", "", "EX", "72.00", "90.00", "0.00", "19.80", "2"],
        ["s4", "Student s4", "", "0.00", "0.00", "100.00", "0.00", "7.50", "0"],
    ]
    assert list(rows[0]) == [
        "Student ID",
        "Name",
        "Email",
        "hw-a (%)",
        "hw-b (%)",
        "proposal (%)",
        "final (%)",
        "Assignments (45)",
        "Late days used (of 2)",
    ]
    assert [
        (r["ID number"], r["HW A"], r["HW B"], r["Proposal"], r["Final report"], r["Assignments (45)"])
        for r in moodle
    ] == [
        ("s1", "90.00", "90.00", "75.00", "72.00", "36.68"),
        ("s2", "100.00", "100.00", "75.00", "72.00", "38.93"),
        ("s3", "", "72.00", "90.00", "0.00", "19.80"),
        ("s4", "0.00", "0.00", "100.00", "0.00", "7.50"),
    ]
    assert shown == {
        "s1": "0 of 2 late days left",
        "s2": "1 of 2 late days left",
        "s3": "0 of 2 late days left",
        "s4": "2 of 2 late days left",
    }

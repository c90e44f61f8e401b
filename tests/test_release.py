"""Roles, visibility and the release of grades, over HTTP: a TA grades but cannot export or change
settings; a student never sees unreleased manual points, `after_release` details before the release,
hidden test details ever, or another student's rubric."""

import json
from datetime import timedelta

from grader import catalog
from tests.fixtures.grading import AFTER_DUE, LATER, NOW, SECRET, submit_graded, write_course


def who(crew, login):
    return crew[login][1]


def grade(api, crew, login, student, question, **body):
    return api.put(
        f"/api/grading/hw5/students/{student}/questions/{question}", headers=who(crew, login), json=body
    )


def test_a_ta_grades_and_reads_submissions_but_cannot_export_or_change_settings(api, crew, db_session):
    sub = submit_graded(db_session, crew["s1"][0])
    ta = who(crew, "ta1")
    assert (
        grade(api, crew, "ta1", "s1", "q1", items=["names the learning rate"], comment="half").status_code
        == 200
    )
    assert api.get(f"/api/submissions/{sub.id}", headers=ta).json()["tests"][1]["message"] == SECRET
    assert [s["id"] for s in api.get("/api/submissions?assignment=hw5", headers=ta).json()] == [sub.id]
    assert api.get("/api/grading/hw5/progress", headers=ta).json()[0] == {
        "question": "q1",
        "title": "Q1: explain the plateau",
        "graded": 1,
        "total": 1,
    }
    refused = [
        api.get("/api/gradebook.csv", headers=ta),
        api.get("/api/gradebook/moodle.csv", headers=ta),
        api.get("/api/assignments/hw5/tests.csv", headers=ta),
        api.put("/api/grading/hw5/release", headers=ta, json={"released": True}),
        api.post("/api/grading/hw5/regrade-preview", headers=ta),
        api.post("/api/assignments/hw5/regrade", headers=ta),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert not api.get("/api/grading/hw5/mine", headers=who(crew, "s1")).json()["released"]


def test_a_ta_may_export_when_the_setting_allows(api, crew, grading_settings):
    grading_settings.ta_may_export = True
    response = api.get("/api/gradebook.csv", headers=who(crew, "ta1"))
    assert response.status_code == 200 and "hw5 (%) (not released)" in response.text.splitlines()[0]
    assert (
        api.put("/api/grading/hw5/release", headers=who(crew, "ta1"), json={"released": True}).status_code
        == 403
    )


def test_students_cannot_grade_or_read_anyone_s_rubric(api, crew, db_session):
    submit_graded(db_session, crew["s1"][0])
    assert (
        grade(api, crew, "prof", "s1", "q1", items=["names the learning rate"], comment="S1-ONLY").status_code
        == 200
    )
    s2 = who(crew, "s2")
    assert grade(api, crew, "s2", "s1", "q1", items=[], comment="").status_code == 403
    assert api.get("/api/grading/hw5/students/s1", headers=s2).status_code == 403
    assert api.get("/api/grading/hw5/progress", headers=s2).status_code == 403
    assert api.get("/api/grading/hw5/requests", headers=s2).status_code == 403
    api.put("/api/grading/hw5/release", headers=who(crew, "prof"), json={"released": True})
    mine = api.get("/api/grading/hw5/mine", headers=s2).json()
    assert mine["released"] and mine["grades"] == [] and "S1-ONLY" not in json.dumps(mine)


def test_manual_points_and_after_release_details_wait_for_the_release(api, crew, db_session):
    sub = submit_graded(db_session, crew["s1"][0])
    grade(api, crew, "ta1", "s1", "q1", items=["names the learning rate"], comment="RUBRIC-COMMENT")
    grade(
        api,
        crew,
        "ta1",
        "s1",
        "q2",
        items=["no axis labels"],
        comment="label the axes",
        adjustment=1,
        adjustment_reason="nice colours",
    )
    s1 = who(crew, "s1")

    before = api.get(f"/api/submissions/{sub.id}", headers=s1).json()
    mine = api.get("/api/grading/hw5/mine", headers=s1).json()
    assert mine == {
        "assignment": "hw5",
        "released": False,
        "manual_points": None,
        "manual_max": None,
        "grades": [],
        "requests": [],
    }
    text = json.dumps(before)
    assert LATER not in text and SECRET not in text and AFTER_DUE not in text
    assert "RUBRIC-COMMENT" not in text
    # hidden = "names": withheld tests show by name and points, without their message.
    names = {t["name"]: t for t in before["tests"]}
    assert names["tests/test_later.py::test_later"]["message"] == ""
    assert names["tests/test_hw.py::test_shown"]["visibility"] == "public"  # its details are shown
    assert names["tests/test_later.py::test_later"]["visibility"] == "hidden"
    assert before["score"] == 2 and before["max_score"] == 5  # auto points only

    assert api.put("/api/grading/hw5/release", headers=who(crew, "prof"), json={"released": True}).json()[
        "released"
    ]
    after = api.get(f"/api/submissions/{sub.id}", headers=s1).json()
    assert {t["name"]: t["message"] for t in after["tests"]}["tests/test_later.py::test_later"] == LATER
    assert SECRET not in json.dumps(after)  # hidden: details never, released or not
    assert AFTER_DUE not in json.dumps(after)  # not due yet
    mine = api.get("/api/grading/hw5/mine", headers=s1).json()
    assert (mine["manual_points"], mine["manual_max"]) == (2 + 5, 10)
    assert {g["question"]: g["comment"] for g in mine["grades"]} == {
        "q1": "RUBRIC-COMMENT",
        "q2": "label the axes",
    }

    # Taking the release back hides them again.
    api.put("/api/grading/hw5/release", headers=who(crew, "prof"), json={"released": False})
    assert LATER not in json.dumps(api.get(f"/api/submissions/{sub.id}", headers=s1).json())
    assert not api.get("/api/grading/hw5/mine", headers=s1).json()["grades"]


def test_after_due_details_show_once_the_due_date_passed(
    api, crew, db_session, grading_course, grading_settings
):
    sub = submit_graded(db_session, crew["s1"][0])
    s1 = who(crew, "s1")
    assert AFTER_DUE not in json.dumps(api.get(f"/api/submissions/{sub.id}", headers=s1).json())
    write_course(grading_course, due=NOW - timedelta(minutes=1))
    catalog.sync(session=db_session, settings=grading_settings)
    body = json.dumps(api.get(f"/api/submissions/{sub.id}", headers=s1).json())
    assert AFTER_DUE in body and SECRET not in body and LATER not in body


def test_the_gradebook_counts_manual_points_and_marks_unreleased_assignments(api, crew, db_session):
    submit_graded(db_session, crew["s1"][0])  # 2 / 5 auto
    grade(api, crew, "ta1", "s1", "q1", items=["names the learning rate", "explains the plateau"], comment="")
    prof = who(crew, "prof")
    lines = api.get("/api/gradebook.csv?extra=manual", headers=prof).text.splitlines()
    assert lines[0] == "Student ID,Name,Email,hw5 (%) (not released),Assignments (45),hw5 manual (points)"
    # (2 auto + 4 manual) / (5 + 10) = 40%, of 45: 18 (q2, ungraded, counts 0)
    assert lines[1] == "s1,s1,,40.00,18.00,4.00"
    api.put("/api/grading/hw5/release", headers=prof, json={"released": True})
    assert api.get("/api/gradebook.csv", headers=prof).text.splitlines()[0].split(",")[3] == "hw5 (%)"


def test_no_route_serves_a_test_s_source_to_a_student(api, crew, db_session):
    submit_graded(db_session, crew["s1"][0])
    api.put("/api/grading/hw5/release", headers=who(crew, "prof"), json={"released": True})
    s1 = who(crew, "s1")
    for path in ("/api/submissions", "/api/assignments", "/api/grading/hw5/mine"):
        body = api.get(path, headers=s1).text
        assert SECRET not in body and "def test_shown" not in body

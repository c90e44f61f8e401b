"""Regrade all with a preview, every grading kept, and regrade requests, over HTTP: the preview lists
exactly the students whose score changes; until it is applied the current scores count; applying skips
what a newer grading overtook; a student asks for a review and sees the answer."""

import csv
import io

from sqlalchemy import select

from grader.models import Submission
from tests.fixtures.grading import grade_queued, result, submit_graded

SHOWN, SECRET_TEST = "tests/test_hw.py::test_shown", "tests/test_hw.py::test_secret"
DUE_TEST, LATER_TEST = "tests/test_hw.py::test_after_due", "tests/test_later.py::test_later"
PUBLIC = "public_tests/test_p.py::test_public"


def outcomes(**passing: bool) -> dict[str, bool]:
    names = {"shown": SHOWN, "secret": SECRET_TEST, "due": DUE_TEST, "later": LATER_TEST, "public": PUBLIC}
    return {names[key]: passing.get(key, False) for key in names}


def who(crew, login):
    return crew[login][1]


def gradebook(api, crew) -> dict[str, str]:
    rows = csv.DictReader(io.StringIO(api.get("/api/gradebook.csv", headers=who(crew, "prof")).text))
    return {row["Student ID"]: row["hw5 (%) (not released)"] for row in rows}


def queued_for(db_session, run_id: int) -> list[str]:
    db_session.expire_all()
    return list(db_session.scalars(select(Submission.id).where(Submission.regrade_run_id == run_id)))


def test_a_preview_lists_exactly_the_students_whose_score_changes_then_applies(api, crew, db_session):
    # s1 2/5, s2 3/5, s3 5/5 before the fix of test_secret.
    s1 = submit_graded(db_session, crew["s1"][0], result(score_of=outcomes(shown=True, public=True)))
    s2 = submit_graded(
        db_session, crew["s2"][0], result(score_of=outcomes(shown=True, due=True, public=True))
    )
    all_pass = outcomes(shown=True, secret=True, due=True, later=True, public=True)
    s3 = submit_graded(db_session, crew["s3"][0], result(score_of=all_pass))
    prof = who(crew, "prof")
    assert gradebook(api, crew) == {"s1": "13.33", "s2": "20.00", "s3": "33.33"}  # of 15 (10 manual)

    started = api.post("/api/grading/hw5/regrade-preview", headers=prof)
    assert started.status_code == 202, started.text
    run = started.json()
    assert (run["total"], run["pending"]) == (3, 3)
    assert api.post("/api/grading/hw5/regrade-preview", headers=prof).status_code == 409  # one at a time
    # While the preview grades, the current scores stay: in the gradebook and for the student.
    assert gradebook(api, crew) == {"s1": "13.33", "s2": "20.00", "s3": "33.33"}
    assert api.get(f"/api/submissions/{s1.id}", headers=who(crew, "s1")).json()["score"] == 2
    assert api.post(f"/api/grading/regrades/{run['id']}/apply", headers=prof).status_code == 409

    # The fixed test_secret: s1 now passes it (+1), s2 now fails test_after_due (-1), s3 unchanged.
    new = {
        s1.id: outcomes(shown=True, secret=True, public=True),
        s2.id: outcomes(shown=True, public=True),
        s3.id: all_pass,
    }
    assert sorted(queued_for(db_session, run["id"])) == sorted(new)
    for sub_id, passing in new.items():
        grade_queued(db_session, sub_id, result(score_of=passing))
    preview = api.get(f"/api/grading/regrades/{run['id']}", headers=prof).json()
    assert preview["pending"] == 0 and (preview["up"], preview["down"], preview["unchanged"]) == (1, 1, 1)
    assert {(c["student"], c["before"], c["after"], c["delta"]) for c in preview["changes"]} == {
        ("s1", 2, 3, 1),
        ("s2", 3, 2, -1),
    }
    assert {t["name"]: (t["now_pass"], t["now_fail"]) for t in preview["tests"]} == {
        SECRET_TEST: (["s1"], []),
        DUE_TEST: ([], ["s2"]),
    }
    assert gradebook(api, crew) == {"s1": "13.33", "s2": "20.00", "s3": "33.33"}  # not applied yet

    assert api.get(f"/api/grading/regrades/{run['id']}", headers=who(crew, "ta1")).status_code == 403
    assert api.post(f"/api/grading/regrades/{run['id']}/apply", headers=who(crew, "ta1")).status_code == 403
    applied = api.post(f"/api/grading/regrades/{run['id']}/apply", headers=prof)
    assert applied.json() == {"applied": 3, "skipped": 0}
    assert gradebook(api, crew) == {"s1": "20.00", "s2": "13.33", "s3": "33.33"}
    assert api.post(f"/api/grading/regrades/{run['id']}/apply", headers=prof).status_code == 409

    history = api.get(f"/api/grading/submissions/{s1.id}/gradings", headers=who(crew, "ta1")).json()
    assert [(g["score"], g["current"], g["regrade_run"]) for g in history] == [
        (3, True, run["id"]),
        (2, False, None),
    ]
    assert api.get(f"/api/grading/submissions/{s1.id}/gradings", headers=who(crew, "s1")).status_code == 403


def test_what_arrives_or_is_regraded_during_a_preview_is_not_overwritten(api, crew, db_session):
    s1 = submit_graded(db_session, crew["s1"][0], result(score_of=outcomes(shown=True)))
    s2 = submit_graded(db_session, crew["s2"][0], result(score_of=outcomes(shown=True)))
    prof = who(crew, "prof")
    run = api.post("/api/grading/hw5/regrade-preview", headers=prof).json()
    # A new upload meanwhile is graded as usual, current at once, and not part of the preview.
    late = submit_graded(db_session, crew["s3"][0], result(score_of=outcomes(shown=True, secret=True)))
    assert late.id not in queued_for(db_session, run["id"])
    # s2's preview grading comes in, then the instructor regrades s2 on its own: the newer one wins.
    grade_queued(db_session, s2.id, result(score_of=outcomes()))
    grade_queued(db_session, s1.id, result(score_of=outcomes(shown=True, public=True)))
    api.post("/api/assignments/hw5/regrade?student=s2", headers=prof)
    grade_queued(db_session, s2.id, result(score_of=outcomes(shown=True, later=True)))
    preview = api.get(f"/api/grading/regrades/{run['id']}", headers=prof).json()
    assert {c["student"]: c["stale"] for c in preview["changes"]} == {"s1": False, "s2": True}
    assert api.post(f"/api/grading/regrades/{run['id']}/apply", headers=prof).json() == {
        "applied": 1,
        "skipped": 1,
    }
    db_session.expire_all()
    assert (db_session.get(Submission, s1.id).score, db_session.get(Submission, s2.id).score) == (2, 2)
    assert db_session.get(Submission, late.id).score == 2


def test_a_discarded_preview_leaves_every_score_as_it_was(api, crew, db_session):
    s1 = submit_graded(db_session, crew["s1"][0], result(score_of=outcomes(shown=True)))
    prof = who(crew, "prof")
    run = api.post("/api/grading/hw5/regrade-preview", headers=prof).json()
    assert api.post(f"/api/grading/regrades/{run['id']}/discard", headers=prof).json() == {
        "applied": 0,
        "skipped": 1,
    }
    db_session.expire_all()
    sub = db_session.get(Submission, s1.id)
    assert (sub.status, sub.score, sub.regrade_run_id) == ("graded", 1, None)
    assert (
        api.post("/api/grading/hw5/regrade-preview", headers=prof).status_code == 202
    )  # a new one may start


def test_the_student_is_told_a_submission_was_regraded_and_by_how_much(api, crew, db_session):
    s1 = submit_graded(db_session, crew["s1"][0], result(score_of=outcomes(shown=True)))
    api.post("/api/assignments/hw5/regrade", headers=who(crew, "prof"))
    grade_queued(db_session, s1.id, result(score_of=outcomes(shown=True, public=True)))
    body = api.get(f"/api/submissions/{s1.id}", headers=who(crew, "s1")).json()
    assert body["score"] == 2 and body["regraded_from"] == 1 and body["regraded_at"] is not None


def test_a_regrade_request_is_answered_and_may_change_the_points(api, crew, db_session):
    submit_graded(db_session, crew["s1"][0])
    s1, ta, prof = who(crew, "s1"), who(crew, "ta1"), who(crew, "prof")
    api.put(
        "/api/grading/hw5/students/s1/questions/q1",
        headers=ta,
        json={"items": ["names the learning rate"], "comment": "half the answer"},
    )
    ask = {"question": "q1", "message": "I explained the plateau in the second paragraph."}
    early = api.post("/api/grading/hw5/requests", headers=s1, json=ask)
    assert early.status_code == 422 and "not released" in early.json()["detail"]
    api.put("/api/grading/hw5/release", headers=prof, json={"released": True})
    assert (
        api.post("/api/grading/hw5/requests", headers=s1, json={**ask, "question": "q9"}).status_code == 422
    )
    assert api.post("/api/grading/hw5/requests", headers=s1, json={**ask, "message": " "}).status_code == 422
    assert api.post("/api/grading/hw5/requests", headers=ta, json=ask).status_code == 403
    asked = api.post("/api/grading/hw5/requests", headers=s1, json=ask)
    assert asked.status_code == 201
    assert api.post("/api/grading/hw5/requests", headers=s1, json=ask).status_code == 422  # one at a time

    waiting = api.get("/api/grading/hw5/requests", headers=ta).json()
    assert [(r["question"], r["answer"]) for r in waiting] == [("q1", None)]
    request_id = asked.json()["id"]
    assert (
        api.post(f"/api/grading/requests/{request_id}/answer", headers=s1, json={"answer": "no"}).status_code
        == 403
    )
    answered = api.post(
        f"/api/grading/requests/{request_id}/answer",
        headers=ta,
        json={"answer": "You did: two more points.", "adjustment": 2},
    ).json()
    assert (answered["points_before"], answered["points_after"]) == (2, 4)
    mine = api.get("/api/grading/hw5/mine", headers=s1).json()
    assert mine["requests"][0]["answer"] == "You did: two more points."
    assert mine["manual_points"] == 4
    history = api.get("/api/grading/hw5/students/s1", headers=prof).json()["history"]
    assert [(h["by"], h["source"]) for h in history] == [("ta1", "grading"), ("ta1", "regrade_request")]
    assert history[1]["after"]["adjustment_reason"] == "regrade request: You did: two more points."


def test_the_migration_gives_each_finished_submission_its_current_grading(tmp_path):
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from grader import db
    from grader.models import Grading

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.migrate(url, "0004")
    with db.get_engine(url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (login, name, email, role, failed_signins, created_at) "
                "VALUES ('s1', '', '', 'student', 0, '2026-09-01 10:00:00')"
            )
        )
        for sub_id, status, score in (
            ("done", "graded", 3),
            ("failed", "error", None),
            ("waiting", "queued", None),
        ):
            connection.execute(
                text(
                    "INSERT INTO submissions (id, user_id, assignment, submitted_at, sha256, filename, "
                    "format, queue, status, attempts, score, max_score, result, flagged, pinned) VALUES "
                    "(:id, 1, 'hw', '2026-09-01 10:00:00', 'a', 'f.zip', 'zip', 'cpu', :status, 1, :score, "
                    "5, :result, 0, 0)"
                ),
                {
                    "id": sub_id,
                    "status": status,
                    "score": score,
                    "result": None if status == "queued" else "{}",
                },
            )
    db.migrate(url)
    with Session(db.get_engine(url)) as session:
        kept = {g.submission_id: (g.status, g.score, g.current) for g in session.scalars(select(Grading))}
        assert kept == {"done": ("graded", 3, True), "failed": ("error", None, True)}
        statuses = dict(session.execute(select(Submission.id, Submission.graded_status)).all())
        assert statuses == {"done": "graded", "failed": "error", "waiting": None}
    db.get_engine(url).dispose()

"""The shipped course (CENG 501, Spring 2027, as its syllabus says) and `grader course shift`."""

import shutil
import tomllib
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader import course_shift
from grader.assignments import load_all, load_course
from grader.cli import app

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "assignments"
# The term's calendar (week 1 = Mon 2027-02-15): due dates at 23:59 Istanbul time.
HOMEWORKS = {
    "hw1-mlp": "2027-03-03",
    "hw2-cnn": "2027-03-10",
    "hw3-rnn": "2027-03-17",
    "hw4-attention": "2027-03-24",
    "hw5-lm": "2027-03-31",
    "hw6-vit-clip": "2027-04-14",
    "hw7-vae-diffusion": "2027-04-28",
    "hw8-ssl": "2027-05-12",
    "hw9-rl": "2027-05-19",
}
PROJECT = {
    "project-proposal": ("2027-03-26", 2),
    "project-progress": ("2027-04-23", 4),
    "project-final": ("2027-06-02", 12),
}


def istanbul(day: str, clock: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}+03:00")


def test_the_course_is_ceng_501_in_istanbul_with_the_45_percent_shared():
    course = load_course(ASSIGNMENTS / "course.toml")
    assert (course.code, course.title, course.term, course.timezone) == (
        "CENG 501",
        "Deep Learning",
        "Spring 2027",
        "Europe/Istanbul",
    )
    assert course.assignments_share == 45 and course.week1 == date(2027, 2, 15)
    # Nine homeworks of 3 and the project's 18 fill the 45 points.
    assert 3 * len(HOMEWORKS) + sum(weight for _, weight in PROJECT.values()) == course.assignments_share


def test_each_assignment_follows_the_calendar():
    loaded = load_all(ASSIGNMENTS)
    homeworks = {slug: a for slug, a in loaded.items() if a.config.kind == "homework"}
    assert set(homeworks) <= set(HOMEWORKS) and {"hw1-mlp", "hw4-attention"} <= set(homeworks)
    for slug, a in homeworks.items():
        due = HOMEWORKS[slug]
        assert a.due == istanbul(due, "23:59:00"), slug
        assert a.config.released == istanbul(due, "09:00:00") - timedelta(days=9), slug
        assert a.late.cutoff == a.due + timedelta(days=5), slug
        assert a.config.weight == 3, slug
    for slug, (due, weight) in PROJECT.items():
        milestone = loaded[slug]
        assert milestone.config.kind == "project" and milestone.is_team and not milestone.autograded
        assert milestone.due == istanbul(due, "23:59:00") and milestone.config.weight == weight
        assert milestone.late.penalty_percent == 10 and milestone.late.cutoff == milestone.due + timedelta(
            days=5
        )
        assert milestone.config.questions and milestone.config.max_upload_mb


@pytest.fixture
def course_copy(tmp_path) -> Path:
    target = tmp_path / "assignments"
    shutil.copytree(ASSIGNMENTS, target)
    return target


def test_shifting_week1_moves_every_date_and_keeps_the_comments(course_copy):
    before = {p: p.read_text() for p in course_copy.rglob("*.toml")}
    done = CliRunner().invoke(app, ["course", "shift", "--week1", "2026-11-23", "--dir", str(course_copy)])
    assert done.exit_code == 0, done.output
    moved = load_all(course_copy)
    assert load_course(course_copy / "course.toml").week1 == date(2026, 11, 23)
    # 12 weeks earlier: hw1 was released on 2026-11-30 09:00, so a new install can be tried on 2026-12-01.
    assert moved["hw1-mlp"].config.released == istanbul("2026-11-30", "09:00:00")
    assert moved["hw1-mlp"].due == istanbul("2026-12-09", "23:59:00")
    for path, text in before.items():
        after = path.read_text()
        comments = [line.partition("#")[2] for line in text.splitlines()]
        assert comments == [line.partition("#")[2] for line in after.splitlines()], path
    # And back: the files are exactly as shipped.
    done = CliRunner().invoke(app, ["course", "shift", "--week1", "2027-02-15", "--dir", str(course_copy)])
    assert done.exit_code == 0 and all(p.read_text() == text for p, text in before.items())


def test_a_shift_that_is_not_a_monday_is_refused_and_writes_nothing(course_copy):
    before = {p: p.read_text() for p in course_copy.rglob("*.toml")}
    done = CliRunner().invoke(app, ["course", "shift", "--week1", "2026-11-24", "--dir", str(course_copy)])
    assert done.exit_code == 2 and "is a Tuesday" in done.output
    assert all(p.read_text() == text for p, text in before.items())


def test_a_dry_run_writes_nothing(course_copy):
    before = {p: p.read_text() for p in course_copy.rglob("*.toml")}
    done = CliRunner().invoke(app, ["course", "shift", "--days", "7", "--dry-run", "--dir", str(course_copy)])
    assert done.exit_code == 0 and "dry run" in done.output
    assert all(p.read_text() == text for p, text in before.items())


def test_a_shift_keeps_the_wall_clock_across_a_dst_change():
    text = 'due = 2026-10-20T23:59:00+02:00  # Berlin, summer time\nopens = "2026-10-20 09:00Z"\n'
    moved, changes = course_shift.shift_text(text, days=7, timezone="Europe/Berlin")
    assert changes == 2
    lines = moved.splitlines()
    # One week later Berlin is on winter time: still 23:59 there, now +01:00.
    assert lines[0] == "due = 2026-10-27T23:59:00+01:00  # Berlin, summer time"
    # A UTC time moves by its Berlin wall clock too: 11:00 CEST -> 11:00 CET = 10:00Z.
    assert lines[1] == 'opens = "2026-10-27 10:00Z"'
    assert tomllib.loads(moved)["due"] == datetime.fromisoformat("2026-10-27T23:59:00+01:00")


def test_smoke_has_nothing_to_upload_for_a_milestone_graded_by_hand():
    from grader.smoke import Smoke

    # No client is needed: nothing is sent.
    assert Smoke(None).upload(ASSIGNMENTS / "project-proposal") == []

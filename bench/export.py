"""4. Gradebook export at scale: 500 students x 10 assignments x S submissions each, inserted with COPY
into a fresh PostgreSQL database; CSV time and peak memory at two values of S.

    .venv/bin/python bench/export.py [--quick]

Memory is the Python heap's peak while the CSV is produced (tracemalloc, a separate pass from the
timed one, which it would slow down) and the process's RSS growth; if the export held the
submissions in memory, both would grow with S.
"""

import argparse
import dataclasses
import gc
import json
import random
import resource
import sys
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Report  # noqa: E402
from service_env import pg_database  # noqa: E402

TARGET_S = 2.0
STUDENTS, ASSIGNMENTS = 500, 10


def _assignments():
    """Ten assignments: the course's real ones (dates, late policies) under ten slugs."""
    from grader.assignments import load_all

    real = [a for _slug, a in sorted(load_all(common.ROOT / "assignments").items())]
    if not real:
        real = [a for _slug, a in sorted(load_all(common.COURSE).items()) if not a.sandbox.gpu]
    return [
        dataclasses.replace(real[i % len(real)], slug=f"{real[i % len(real)].slug}-{i:02d}")
        for i in range(ASSIGNMENTS)
    ]


def _fill(url: str, assignments, per_assignment: int) -> int:
    """Users and submissions by COPY; returns the number of submissions."""
    import psycopg

    rng = random.Random(per_assignment)
    result = json.dumps(
        {
            "status": "graded",
            "tests": [
                {
                    "name": f"tests/test_a.py::test_{k}",
                    "outcome": "passed",
                    "points": 1.0,
                    "max_points": 1.0,
                    "message": "",
                }
                for k in range(5)
            ],
        }
    )
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    count = 0
    with psycopg.connect(dsn) as conn:
        with conn.cursor().copy("COPY users (id, login, name, email, role, created_at) FROM STDIN") as copy:
            for i in range(STUDENTS):
                copy.write_row(
                    (
                        i + 1,
                        f"9{i:08d}",
                        f"Student {i}",
                        f"s{i}@example.edu",
                        "student",
                        "2026-09-01T00:00:00Z",
                    )
                )
        columns = (
            "id, user_id, assignment, submitted_at, sha256, filename, format, queue, status, attempts, "
            "score, max_score, result, flagged, pinned, finished_at"
        )
        with conn.cursor().copy(f"COPY submissions ({columns}) FROM STDIN") as copy:
            for user in range(1, STUDENTS + 1):
                for a in assignments:
                    for _ in range(per_assignment):
                        # Mostly before the due date, some in the grace period or days late.
                        at = a.due + timedelta(hours=rng.uniform(-240, 60))
                        status = "graded" if rng.random() > 0.03 else "error"
                        score = round(rng.uniform(0, 10), 1) if status == "graded" else None
                        copy.write_row(
                            (
                                str(uuid.uuid4()),
                                user,
                                a.slug,
                                at,
                                "0" * 64,
                                "hw.ipynb",
                                "ipynb",
                                "cpu",
                                status,
                                1,
                                score,
                                10.0,
                                result,
                                False,
                                False,
                                at + timedelta(seconds=20),
                            )
                        )
                        count += 1
        conn.execute("ANALYZE")
        conn.commit()
    return count


def _consume(lines) -> tuple[int, int]:
    n = size = 0
    for line in lines:
        n += 1
        size += len(line)
    return n, size


def measure(url: str, assignments, runs: int) -> dict:
    from sqlalchemy.orm import Session

    from grader import db
    from grader.gradebook_export import export_csv

    course = assignments[0].course
    engine = db.get_engine(url)

    def export():
        with Session(engine) as session:
            return _consume(export_csv(session=session, assignments=assignments, course=course))

    export()  # warm: connection pool, PostgreSQL's cache
    times = []
    for _ in range(runs):
        took, (lines, size) = common.timed(export)
        times.append(took)
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    export()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "time": common.median(times),
        "lines": lines,
        "bytes": size,
        "peak": peak,
        "rss_growth": (rss_after - rss_before) * 1024,
    }


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 timed run per size instead of 5")
    parser.add_argument(
        "--sizes", default="1,10", help="submissions per student and assignment (default 1,10)"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = 1 if args.quick else 5
    assignments = _assignments()
    report = Report(
        f"4. gradebook CSV: {STUDENTS} students x {ASSIGNMENTS} assignments, "
        f"{' and '.join(map(str, sizes))} submissions each, PostgreSQL"
    )
    results = {}
    # Smallest first: ru_maxrss is a high-water mark, so only growth beyond the previous size shows.
    for size in sorted(sizes):
        with pg_database() as url:
            took, count = common.timed(_fill, url, assignments, size)
            report.note(f"inserted {count} submissions by COPY in {took:.1f} s")
            results[size] = r = measure(url, assignments, runs)
        report.figure(f"CSV time, {count} submissions ({r['lines']} lines)", r["time"], "s", at_most=TARGET_S)
        report.figure(f"peak Python heap, {count} submissions", r["peak"] / 2**20, "MiB", fmt="{:.1f}")
        report.figure(f"RSS growth, {count} submissions", r["rss_growth"] / 2**20, "MiB", fmt="{:.1f}")
    if len(sizes) >= 2:
        small, big = results[min(sizes)], results[max(sizes)]
        ratio = big["peak"] / small["peak"]
        report.figure(
            f"peak heap ratio at {max(sizes) // min(sizes)}x the submissions",
            ratio,
            "x",
            fmt="{:.2f}",
            at_most=1.5,
        )
        report.figure(
            f"time ratio at {max(sizes) // min(sizes)}x the submissions",
            big["time"] / small["time"],
            "x",
            fmt="{:.2f}",
        )
    return report


if __name__ == "__main__":
    main()

"""The CPU one accepted upload costs the API, without HTTP: token lookup, the assignments, and the route's
own work (checks, unpack, store, insert and commit, publish to Redis, the answer), on PostgreSQL.

    .venv/bin/python bench/profile_upload.py [--uploads 300] [--profile [--sort tottime]]

Not a section of run_all.py: a diagnostic for the deadline burst (section 3), whose figure is queueing
in front of this cost. The same calls the route makes (the token as auth.user_for_token takes it, and
accept_upload), in this thread, so that cProfile (--profile) sees them; a fresh database, 20 students,
the add-one course, Redis db 13.
Under HTTP add the ASGI stack, multipart parsing and FastAPI's thread hops (section 10 measures both).
"""

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from service_env import BROKER, pg_database, student_tokens  # noqa: E402

STUDENTS = 20  # each stays under the course's submissions.max (50) at the default count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument(
        "--profile", action="store_true", help="print cProfile's top 40 by CPU time (slows it ~2x)"
    )
    parser.add_argument("--sort", choices=["cumulative", "tottime"], default="cumulative")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    course = tmp / "course"
    shutil.copytree(common.COURSE, course, ignore=shutil.ignore_patterns("add-gpu", "add-slow"))
    try:
        with pg_database() as url:
            os.environ.update(
                GRADER_DATA_DIR=str(tmp / "data"),
                GRADER_ASSIGNMENTS_DIR=str(course),
                GRADER_DATABASE_URL=url,
                GRADER_BROKER_URL=BROKER,
            )
            measure(url, args.uploads, args.sort if args.profile else None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(url: str, uploads: int, profile: str | None) -> None:
    from grader import auth, db
    from grader.config import Settings
    from grader.routes.submissions import accept_upload

    settings = Settings()
    tokens = student_tokens(url, "up", STUDENTS)
    data = common.passes_zip()

    def upload(i: int) -> None:
        with db.session_factory(settings)() as session:  # as the request's SessionDep
            user = auth.user_for_token(session=session, token=tokens[i % STUDENTS])
            accept_upload(session, settings, user, "add-one", None, "hw.zip", data)

    for i in range(STUDENTS):  # warm: connections, statement caches, the first token use
        upload(i)
    # CPU time, not wall: the statements' waits on PostgreSQL are not the API's cost.
    profiler = cProfile.Profile(time.process_time) if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for i in range(uploads):
        upload(i)
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{uploads} uploads accepted one after another [load {load}]")
    print(f"  CPU per upload (this process)   {cpu / uploads * 1000:6.2f} ms")
    print(f"  wall per upload                 {wall / uploads * 1000:6.2f} ms")
    if profiler:
        pstats.Stats(profiler).sort_stats(profile).print_stats(40)
    db.get_engine(url).dispose()


if __name__ == "__main__":
    main()

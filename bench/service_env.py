"""The real service for a benchmark: a fresh PostgreSQL database (dropped after), a Redis database
(emptied before and after), `grader api` and `grader worker` processes, student tokens.

Follows tests/fixtures/services.py and tests/test_pipeline.py: everything on 127.0.0.1.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import UTC
from pathlib import Path

import common
import httpx
import psycopg

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
# Database 15 belongs to the test suite; the benchmarks use 13 so both can run at once.
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def pg_database():
    """A fresh database migrated to head; yields its SQLAlchemy URL; dropped at the end."""
    from grader import db

    name = f"grader_bench_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = f"{PG_SERVER}/{name}"
    try:
        db.migrate(url)
        yield url
    finally:
        db.get_engine(url).dispose()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis(*args: str) -> str:
    db = BROKER.rsplit("/", 1)[-1]
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-n", db, *args], capture_output=True, text=True, timeout=10
    ).stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def student_tokens(db_url: str, prefix: str, count: int) -> list[str]:
    """One bearer token per student prefix0000..prefix{count-1}, made straight in the database."""
    from sqlalchemy.orm import Session

    from grader import auth, db

    with Session(db.get_engine(db_url)) as session:
        tokens = [
            auth.create_token(
                session=session,
                user=auth.get_or_create_user(session=session, login=f"{prefix}{i:04d}", role="student"),
            )
            for i in range(count)
        ]
        session.commit()
    return tokens


def student_browsers(db_url: str, prefix: str, count: int) -> list[tuple[str, str]]:
    """One signed-in browser per student prefix0000..prefix{count-1}: (session cookie, CSRF token), made
    straight in the database."""
    from sqlalchemy.orm import Session

    from grader import accounts, auth, db

    browsers = []
    with Session(db.get_engine(db_url)) as session:
        for i in range(count):
            user = auth.get_or_create_user(session=session, login=f"{prefix}{i:04d}", role="student")
            session.commit()
            cookie = accounts.open_session(session, user)
            browsers.append((cookie, accounts.load_session(session, cookie).csrf_token))
    return browsers


class Service:
    """API + workers on PostgreSQL and Redis, for the add-one course."""

    def __init__(
        self,
        url: str,
        tmp: Path,
        *,
        concurrency: int,
        workers: int = 1,
        api_workers: int = 1,
        pool: int = 0,
        settings: dict[str, str] | None = None,
    ):
        self.db_url, self.tmp = url, tmp
        course = tmp / "course"
        shutil.copytree(common.COURSE, course, ignore=shutil.ignore_patterns("add-gpu", "add-slow"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
        self.env.update(
            GRADER_DATA_DIR=str(tmp / "data"),
            GRADER_ASSIGNMENTS_DIR=str(course),
            GRADER_DATABASE_URL=url,
            GRADER_BROKER_URL=BROKER,
            GRADER_POOL_SIZE=str(pool),  # warm sandboxes per worker process (grader.pool)
            **{f"GRADER_{name.upper()}": value for name, value in (settings or {}).items()},
        )
        self.concurrency, self.workers, self.api_workers = concurrency, workers, api_workers
        self.procs: list[subprocess.Popen] = []
        self.url = ""

    def _start(self, *args: str, log: str) -> subprocess.Popen:
        with open(self.tmp / log, "ab") as out:
            proc = subprocess.Popen(
                [*common.GRADER, *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.tmp,
            )
        self.procs.append(proc)
        return proc

    def start(self, *, workers: bool = True) -> None:
        port = _free_port()
        self._start("api", "--port", str(port), "--workers", str(self.api_workers), log="api.log")
        self.url = f"http://127.0.0.1:{port}"
        self._wait_for(lambda: httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200)
        if workers:
            self.start_workers()

    def api_cpu_s(self) -> float:
        """CPU seconds (user + system) the API's processes have used so far (uvicorn's workers included)."""
        return self.cpu_s(self.procs[:1])  # started first

    def workers_cpu_s(self) -> float:
        """The same for the workers' processes (Celery's pool processes included)."""
        return self.cpu_s(self.procs[1:])

    @staticmethod
    def cpu_s(procs: list[subprocess.Popen]) -> float:
        sessions = {proc.pid for proc in procs}  # each started in its own session
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[3]) in sessions:  # the session id; utime and stime follow
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def start_workers(self) -> None:
        for i in range(self.workers):
            self._start(
                "worker", "--queues", "cpu", "--concurrency", str(self.concurrency), log=f"worker{i}.log"
            )
        self._wait_for(self._workers_up)

    def _wait_for(self, predicate) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the service did not come up:\n{self.logs()}")

    def _workers_up(self) -> bool:
        from sqlalchemy import func, select

        from grader import db
        from grader.models import Worker

        with db.get_engine(self.db_url).connect() as conn:
            return conn.execute(select(func.count()).select_from(Worker)).scalar() >= self.workers

    def tokens(self, prefix: str, count: int) -> list[str]:
        """One bearer token per student prefix-0..count-1, made straight in the database."""
        return student_tokens(self.db_url, prefix, count)

    def browsers(self, prefix: str, count: int) -> list[tuple[str, str]]:
        """One signed-in browser (session cookie, CSRF token) per student prefix-0..count-1."""
        return student_browsers(self.db_url, prefix, count)

    def finished(self, ids: list[str]) -> dict[str, tuple[str, float | None, float]]:
        """{id: (status, score, finished_at epoch)} for those of ids that are graded or errored."""
        from sqlalchemy import select

        from grader import db
        from grader.models import Submission

        done = {}
        with db.get_engine(self.db_url).connect() as conn:
            rows = conn.execute(
                select(Submission.id, Submission.status, Submission.score, Submission.finished_at).where(
                    Submission.status.in_(("graded", "error"))
                )
            )
            wanted = set(ids)
            for sid, status, score, finished_at in rows:
                if sid in wanted:
                    if finished_at.tzinfo is None:
                        finished_at = finished_at.replace(tzinfo=UTC)
                    done[sid] = (status, score, finished_at.timestamp())
        return done

    def wait_graded(self, ids: list[str], timeout_s: float, on_progress=None) -> dict:
        deadline, last = time.monotonic() + timeout_s, -1
        while True:
            done = self.finished(ids)
            if len(done) != last and on_progress:
                on_progress(len(done))
                last = len(done)
            if len(done) == len(ids) or time.monotonic() > deadline:
                return done
            time.sleep(0.5)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def remove_containers(self) -> None:
        """Containers our workers left (only ours: other people's tests may be grading right now)."""
        import docker

        client = docker.from_env()
        try:
            mine = {f"cpu-{proc.pid}@{socket.gethostname()}" for proc in self.procs}
            for info in client.api.containers(all=True, filters={"label": "grader.worker"}):
                if info["Labels"].get("grader.worker") in mine:
                    with contextlib.suppress(docker.errors.APIError):
                        client.api.remove_container(info["Id"], force=True)
            # Pooled pairs of our workers' processes that exited when their worker stopped.
            for info in client.api.containers(all=True, filters={"label": "grader.pool", "status": "exited"}):
                if info["Labels"].get("grader.pool", "").startswith(socket.gethostname() + ":"):
                    with contextlib.suppress(docker.errors.APIError):
                        client.api.remove_container(info["Id"], force=True)
        finally:
            client.close()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log")
        )


@contextlib.contextmanager
def running_service(
    *,
    concurrency: int,
    workers: int = 1,
    start_workers: bool = True,
    api_workers: int = 1,
    pool: int = 0,
    settings: dict[str, str] | None = None,
):
    """The service on a fresh database; `settings`: more GRADER_* variables, by setting name."""
    if _redis("ping") != "PONG":
        raise RuntimeError("no Redis at 127.0.0.1:6379 (scripts/test starts one)")
    _redis("flushdb")
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    try:
        with pg_database() as url:
            service = Service(
                url,
                tmp,
                concurrency=concurrency,
                workers=workers,
                api_workers=api_workers,
                pool=pool,
                settings=settings,
            )
            try:
                service.start(workers=start_workers)
                yield service
            finally:
                service.stop()
                service.remove_containers()
    finally:
        _redis("flushdb")
        shutil.rmtree(tmp, ignore_errors=True)

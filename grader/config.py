"""All settings, from GRADER_* environment variables or a .env file."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The harness that runs inside the container lives beside the package in the source tree.
HARNESS_DIR = Path(__file__).resolve().parent.parent / "sandbox" / "harness"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRADER_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var")
    assignments_dir: Path = Path("assignments")
    # Empty means the embedded default: SQLite under data_dir, and no broker service.
    database_url: str = ""
    broker_url: str = ""

    docker_url: str = ""  # empty: DOCKER_HOST or the local socket
    sandbox_image: str = "grader-sandbox:cpu"
    sandbox_gpu_image: str = "grader-sandbox:gpu"
    # Student output kept per submission; the rest is cut and the result says so.
    output_limit_bytes: int = Field(default=64 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # An unpacked zip may not exceed this (zip bombs) nor hold more files than max_upload_files.
    max_unpacked_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_upload_files: int = Field(default=2000, ge=1)
    # Uploads checked, stored and committed at once in one API process; the others wait their turn, first
    # come first served. One interpreter gains nothing from more: its threads only share the GIL worse,
    # and a deadline burst's slowest answers grow (bench/README.md sections 12-13). Two, so that one
    # large upload being unpacked does not hold up every other.
    upload_concurrency: int = Field(default=2, ge=1, le=64)
    # How many API processes share the port; `grader api --workers N` sets it for its processes. With
    # more than one, a process with more uploads in hand than another closes an answered upload's
    # connection: the student's next upload connects afresh and goes to whichever process accepts
    # first (grader.routes.spread; bench/README.md sections 13-14).
    api_processes: int = Field(default=1, ge=1, le=256)

    # The grading service. A worker holds a lease on the submission it grades and renews it every
    # lease_s/3; an expired lease means the worker died, and the sweeper (every sweep_interval_s)
    # re-enqueues the submission. A queued submission whose task did not reach the broker, or that
    # the broker lost (Redis: checked on every sweep), is sent again; with a broker whose queues
    # cannot be read, once it was sent more than requeue_after_s ago and never started.
    lease_s: int = Field(default=60, ge=2)
    sweep_interval_s: float = Field(default=15, gt=0)
    requeue_after_s: int = Field(default=600, ge=1)
    # Grading attempts per submission (infrastructure failures and dead workers included); after the
    # last one it is stored as an infrastructure error. Retries wait retry_backoff_s * 2**(attempt-1).
    max_attempts: int = Field(default=5, ge=1, le=50)
    retry_backoff_s: float = Field(default=10, ge=0)
    # Grading threads inside `grader serve` on the embedded default (no broker).
    embedded_workers: int = Field(default=1, ge=1, le=64)
    # The warm pool (grader.pool): sandboxes started before their submission, with the tests'
    # libraries (torch) already imported, in each grading process (`grader worker`, `grader serve`).
    # pool_size pairs at most (0: off), for the assignments graded last; pool_memory_mb caps what the
    # idle pairs hold (0: no cap; an idle hw4 pair holds about 0.4 GiB, see bench/README.md); a pair
    # that no grading wanted for pool_idle_s is removed.
    pool_size: int = Field(default=0, ge=0, le=16)
    pool_memory_mb: int = Field(default=0, ge=0)
    pool_idle_s: float = Field(default=600, gt=0)
    # `grader grade` (a new process each time): above 0, it leaves one pair parked for the next command
    # of the same assignment, which exits after this many seconds unclaimed (grader.parked). 0: off.
    cli_pool_idle_s: float = Field(default=0, ge=0)
    # API tokens expire this long after `grader token create` (which takes --expires-in for another).
    token_lifetime_days: int = Field(default=180, ge=1, le=3650)
    # Earlier terms' submissions for the similarity report: <this>/<slug>/ holds one assignment's (.ipynb,
    # .zip and .py files at any depth). Empty: data_dir/archive.
    similarity_archive_dir: Path | None = None
    # TAs grade and read submissions; the gradebook exports are the instructor's unless this is set.
    ta_may_export: bool = False

    @field_validator("data_dir", "assignments_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'grader.db'}"

    @property
    def similarity_archive_root(self) -> Path:
        return (self.similarity_archive_dir or self.data_dir / "archive").expanduser().resolve()

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the worker runs inside the API process."""
        return not self.broker_url


@lru_cache
def get_settings() -> Settings:
    return Settings()

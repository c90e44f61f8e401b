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

    @field_validator("data_dir", "assignments_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'grader.db'}"

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the worker runs inside the API process."""
        return not self.broker_url


@lru_cache
def get_settings() -> Settings:
    return Settings()

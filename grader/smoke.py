"""Smoke tests: every assignment's reference solution (and starter) through the running service's API."""

import io
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from grader import reference
from grader.assignments import load_assignment, submission_source, validate_folder
from grader.config import Settings
from grader.results import GradeResult

FINISHED = ("graded", "error")


@dataclass
class Upload:
    slug: str
    label: str  # "solution" or "starter"
    id: str = ""
    body: dict = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.body.get("status") in FINISHED

    def verdict(self) -> str | None:
        """None when this upload scored as it must; else what went wrong."""
        status, score, max_score = self.body.get("status"), self.body.get("score"), self.body.get("max_score")
        if status != "graded":
            error = self.body.get("error") or {}
            return f"{self.label} was not graded: {error.get('message', status)}"
        full = max_score is not None and score is not None and score >= max_score
        if self.label == "solution" and not full:
            lost = [t["name"] for t in self.body.get("tests", []) if t["points"] < t["max_points"]]
            return f"solution scored {score:g}/{max_score:g}; it loses points on {', '.join(lost) or '?'}"
        if self.label == "starter" and full:
            return f"starter gets full marks ({score:g}/{max_score:g}): the tests test nothing it lacks"
        return None


def packaged(folder: Path) -> tuple[str, bytes]:
    """The upload for a solution/ or starter/ folder: its notebook as is, or its files zipped."""
    source = submission_source(folder)
    if source.is_file():
        return source.name, source.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            archive.write(path, path.relative_to(source).as_posix())
    return f"{folder.name}.zip", buffer.getvalue()


class Smoke:
    """A smoke run against one service: upload, wait, judge, record."""

    def __init__(self, client: httpx.Client):
        self.client = client

    def check_folders(self, folders: list[Path]) -> dict[str, list[str]]:
        """Static problems per folder name (the same report as `grader assignments check`)."""
        return {folder.name: [str(p) for p in validate_folder(folder)] for folder in folders}

    def upload(self, folder: Path) -> list[Upload]:
        """Submit the solution, and the starter when there is one, as the instructor."""
        assignment = load_assignment(folder)
        uploads = []
        if not assignment.autograded:  # a project milestone graded by hand only: nothing to run
            return uploads
        for label, sub in (("solution", assignment.solution_dir), ("starter", assignment.starter_dir)):
            if not sub.is_dir():
                continue
            name, data = packaged(sub)
            response = self.client.post(
                "/api/submissions", data={"assignment": assignment.slug}, files={"file": (name, data)}
            )
            if response.status_code != 202:
                raise SmokeError(
                    f"{assignment.slug} {label}: the service refused it ({response.status_code}): "
                    f"{_detail(response)}"
                )
            uploads.append(Upload(assignment.slug, label, id=response.json()["id"]))
        return uploads

    def wait(self, uploads: list[Upload], *, timeout_s: float, on_progress: Callable[[Upload], None]) -> None:
        """Poll until every upload is graded or errored, or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        pending = list(uploads)
        while pending and time.monotonic() < deadline:
            for upload in list(pending):
                response = self.client.get(f"/api/submissions/{upload.id}")
                response.raise_for_status()
                upload.body = response.json()
                if upload.done:
                    pending.remove(upload)
                    on_progress(upload)
            if pending:
                time.sleep(1)
        for upload in pending:
            upload.body.setdefault(
                "error", {"message": f"still {upload.body.get('status')} after {timeout_s:g} s"}
            )

    def save_references(self, folders: list[Path], uploads: list[Upload], *, settings: Settings) -> None:
        """Record each graded solution's run as its assignment's reference (grader.reference), for the
        folders the service grades with: the same files as under settings.assignments_dir."""
        by_slug = {folder.name: folder for folder in folders}
        for upload in uploads:
            folder = by_slug.get(upload.slug)
            if folder is None or upload.label != "solution" or upload.body.get("status") != "graded":
                continue
            served = settings.assignments_dir / folder.name
            if served.is_dir() and reference.fingerprint(served) == reference.fingerprint(folder):
                reference.record(served, GradeResult.model_validate(upload.body), settings=settings)

    def record(self, slug: str, problems: list[str]) -> None:
        """Store this assignment's smoke outcome where the dashboard and `assignments list` show it."""
        response = self.client.post(
            f"/api/assignments/{slug}/smoke", json={"passed": not problems, "detail": "; ".join(problems)}
        )
        response.raise_for_status()


class SmokeError(Exception):
    pass


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]

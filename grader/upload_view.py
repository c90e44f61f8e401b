"""A submission as a grader reads it: a notebook's cells with their outputs (read-only, never run), or a
zip's files (text shown, images and PDFs served inline). Nothing of the student's is trusted as HTML:
text/html outputs are shown as text, images only as base64 PNG/JPEG data."""

import base64
import binascii
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from grader.config import Settings
from grader.models import Submission
from grader.storage import upload_path
from grader.uploads import BadUpload, unzip

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# What a page shows of one text file or output; the rest is cut (and said so).
TEXT_LIMIT = 200_000
IMAGE_TYPES = ("image/png", "image/jpeg")
INLINE_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class Output:
    kind: str  # text | image | error
    text: str = ""
    image: str = ""  # a data: URL


@dataclass
class Cell:
    index: int
    kind: str  # code | markdown | raw
    source: str
    outputs: list[Output] = field(default_factory=list)


@dataclass
class File:
    path: str
    size: int
    text: str | None  # None: not text (or too large to show)
    inline: str | None  # the media type served inline (PDF, images), else None


@dataclass
class Rendered:
    kind: str  # notebook | files | unreadable
    cells: list[Cell] = field(default_factory=list)
    files: list[File] = field(default_factory=list)
    problem: str = ""


def _text(value) -> str:
    text = "".join(value) if isinstance(value, list) else str(value or "")
    text = ANSI.sub("", text)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "\n… (cut)"


def _image(kind: str, data) -> str | None:
    raw = "".join(data) if isinstance(data, list) else str(data or "")
    try:
        base64.b64decode(raw, validate=False)
    except (binascii.Error, ValueError):
        return None
    return f"data:{kind};base64,{raw.strip()}"


def _outputs(cell: dict) -> list[Output]:
    found = []
    for out in cell.get("outputs") or []:
        kind = out.get("output_type")
        if kind == "stream":
            found.append(Output("text", _text(out.get("text"))))
        elif kind == "error":
            found.append(
                Output("error", _text(out.get("traceback") or f"{out.get('ename')}: {out.get('evalue')}"))
            )
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") or {}
            image = next((_image(t, data[t]) for t in IMAGE_TYPES if t in data), None)
            if image:
                found.append(Output("image", image=image))
            elif "text/plain" in data:
                found.append(Output("text", _text(data["text/plain"])))
            elif "text/html" in data:  # shown as its source, never as markup
                found.append(Output("text", _text(data["text/html"])))
    return found


def notebook(data: bytes) -> Rendered:
    """A notebook's cells and outputs."""
    try:
        nb = json.loads(data.decode("utf-8"))
        cells = nb["cells"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        return Rendered("unreadable", problem=f"not a readable notebook: {exc}")
    return Rendered(
        "notebook",
        cells=[
            Cell(i + 1, str(c.get("cell_type", "code")), _text(c.get("source")), _outputs(c))
            for i, c in enumerate(cells)
            if isinstance(c, dict)
        ],
    )


def _file(path: str, content: bytes) -> File:
    inline = INLINE_TYPES.get(PurePosixPath(path).suffix.lower())
    text = None
    if inline is None and len(content) <= TEXT_LIMIT:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    return File(path, len(content), text, inline)


def zip_files(data: bytes, settings: Settings) -> dict[str, bytes] | str:
    """The zip's files by path, or why they cannot be read."""
    try:
        return unzip(data, max_bytes=settings.max_unpacked_bytes, max_files=settings.max_upload_files)
    except (BadUpload, zipfile.BadZipFile) as exc:
        return str(exc)


def render(settings: Settings, submission: Submission) -> Rendered:
    """The submission's upload as a grader reads it."""
    try:
        data = upload_path(settings, submission.sha256).read_bytes()
    except OSError as exc:
        return Rendered("unreadable", problem=f"the stored upload cannot be read: {exc}")
    if submission.format == "ipynb":
        return notebook(data)
    files = zip_files(data, settings)
    if isinstance(files, str):
        return Rendered("unreadable", problem=files)
    notebooks = [p for p in files if p.endswith(".ipynb")]
    shown = Rendered("files", files=[_file(p, c) for p, c in sorted(files.items())])
    if len(notebooks) == 1:  # a zip with its notebook: show the notebook first
        shown.cells = notebook(files[notebooks[0]]).cells
    return shown


def member(settings: Settings, submission: Submission, path: str) -> tuple[bytes, str] | None:
    """One file of a zip upload and the media type to serve it inline with; None if it has none."""
    inline = INLINE_TYPES.get(PurePosixPath(path).suffix.lower())
    if submission.format != "zip" or inline is None:
        return None
    try:
        files = zip_files(upload_path(settings, submission.sha256).read_bytes(), settings)
    except OSError:
        return None
    if isinstance(files, str) or path not in files:
        return None
    return files[path], inline

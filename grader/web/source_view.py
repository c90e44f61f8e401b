"""An upload as staff read it (the staff submission page and the grading pages): a notebook's cells with
their saved outputs, a zip's files with syntax highlighting, or a PDF. Read-only and inert: nothing in the
upload runs, and nothing of it reaches the page unescaped (Pygments and markdown-it escape; raw HTML in
markdown and HTML outputs are shown as text). A PDF, and a zip's PDFs and PNG/JPEG images, are shown
inline from their own address (inline_file), never as markup of ours.
"""

import base64
import binascii
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from markdown_it import MarkdownIt
from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer, TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

from grader.config import Settings
from grader.models import Submission
from grader.storage import upload_path

# What one page shows of an upload: past these, files and outputs are cut, and the page says so.
MAX_SHOWN_BYTES = 2 * 1024 * 1024
MAX_FILE_BYTES = 256 * 1024
MAX_OUTPUT_CHARS = 20_000
MAX_FILES = 200
MAX_IMAGE_BYTES = 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The files a browser may show inline (served with Content-Security-Policy: sandbox, never as HTML); SVG is
# not among them: it is a document that can run script.
INLINE_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# The largest file served inline: a zip's member may claim any size, and is read at most this far.
MAX_INLINE_BYTES = 32 * 1024 * 1024
# The path under which a PDF upload (format "pdf", kind = "project") is served: uploads.unpack's name for it.
PDF_PATH = "report.pdf"

# CommonMark with raw HTML off: a student's <script> in a markdown cell is shown as text. markdown-it
# also refuses javascript:, vbscript: and file: links. Images stay text: the staff's browser fetches no
# address a student chose (a tracking pixel would tell them who looked, and when).
_markdown = MarkdownIt("commonmark", {"html": False}).disable("image")
_formatter = HtmlFormatter(cssclass="highlight", wrapcode=True)
_numbered = HtmlFormatter(cssclass="highlight", wrapcode=True, linenos="table")


@dataclass
class Output:
    kind: str  # text | error | image
    text: str = ""
    image_src: str = ""  # a data: URI of a checked base64 PNG/JPEG/GIF


@dataclass
class Cell:
    kind: str  # code | markdown | raw
    html: Markup
    execution_count: int | None = None
    outputs: list[Output] = field(default_factory=list)


@dataclass
class SourceFile:
    path: str
    size: int
    html: Markup | None = None  # highlighted text
    cells: list[Cell] | None = None  # a notebook inside a zip
    inline: str | None = None  # the media type inline_file serves it with (a PDF or an image)
    note: str = ""  # why it is not shown


@dataclass
class SourceView:
    kind: str  # notebook | files | pdf (files holds the one PDF) | unreadable
    cells: list[Cell] = field(default_factory=list)
    files: list[SourceFile] = field(default_factory=list)
    problem: str = ""


def _clip(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters]"


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _image(data: dict) -> str:
    for mime in IMAGE_TYPES:
        raw = _joined(data.get(mime, "")).replace("\n", "")
        if not raw or len(raw) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            continue
        try:
            base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            continue
        return f"data:{mime};base64,{raw}"
    return ""


def _outputs(raw_outputs: list) -> list[Output]:
    outputs = []
    for out in raw_outputs if isinstance(raw_outputs, list) else []:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        if kind == "stream":
            outputs.append(Output("text", _clip(ANSI.sub("", _joined(out.get("text"))))))
        elif kind == "error":
            trace = "\n".join(_joined(line) for line in out.get("traceback") or [])
            text = trace or f"{out.get('ename', '')}: {out.get('evalue', '')}"
            outputs.append(Output("error", _clip(ANSI.sub("", text))))
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") if isinstance(out.get("data"), dict) else {}
            if src := _image(data):
                outputs.append(Output("image", image_src=src))
            elif "text/plain" in data:
                outputs.append(Output("text", _clip(_joined(data["text/plain"]))))
            elif "text/html" in data:  # its source, as text: never markup of ours
                outputs.append(Output("text", _clip(_joined(data["text/html"]))))
            elif data:
                outputs.append(Output("text", f"[output of type {', '.join(sorted(data))} not shown]"))
    return outputs


def notebook_cells(data: bytes) -> list[Cell]:
    """A notebook's cells, highlighted, with their saved outputs; ValueError if it is not a notebook."""
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON notebook: {exc}") from exc
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("the JSON has no list of cells")
    cells = []
    for raw in nb["cells"]:
        if not isinstance(raw, dict):
            continue
        source = _clip(_joined(raw.get("source")), MAX_FILE_BYTES)
        kind = raw.get("cell_type")
        if kind == "code":
            count = raw.get("execution_count")
            cells.append(
                Cell(
                    "code",
                    Markup(highlight(source, PythonLexer(), _formatter)),
                    count if isinstance(count, int) else None,
                    _outputs(raw.get("outputs")),
                )
            )
        elif kind == "markdown":
            cells.append(Cell("markdown", Markup(_markdown.render(source))))
        else:
            cells.append(Cell("raw", Markup("<pre>") + escape(source) + Markup("</pre>")))
    return cells


def _lexer(path: str, text: str):
    try:
        return get_lexer_for_filename(path, text, stripnl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False)


def _inline_type(path: str) -> str | None:
    return INLINE_TYPES.get(PurePosixPath(path).suffix.lower())


def _path(info: zipfile.ZipInfo) -> str:
    return str(PurePosixPath(info.filename.replace("\\", "/")))


def _file(path: str, content: bytes, budget: int) -> SourceFile:
    shown = SourceFile(path=path, size=len(content))
    if len(content) > min(MAX_FILE_BYTES, budget):
        shown.note = "too large to show here; download the upload to read it"
        return shown
    if path.endswith(".ipynb"):
        try:
            shown.cells = notebook_cells(content)
            return shown
        except ValueError:
            pass  # shown as text below
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        shown.note = "binary file"
        return shown
    shown.html = Markup(highlight(text, _lexer(path, text), _numbered))
    return shown


def _archive(data: bytes) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        return archive, [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise ValueError(f"not a readable zip archive: {exc}") from exc


def zip_files(data: bytes) -> list[SourceFile]:
    """A zip's files, highlighted, or marked inline (PDFs, images); ValueError if it cannot be read."""
    archive, infos = _archive(data)
    files, budget = [], MAX_SHOWN_BYTES
    # The notebook first when there is just one (it is the work to read), then submission.py (what the
    # tests import), then the rest by path.
    notebooks = [info for info in infos if info.filename.endswith(".ipynb")]
    lone = notebooks[0] if len(notebooks) == 1 else None
    ordered = sorted(
        infos,
        key=lambda i: (i is not lone, PurePosixPath(_path(i)).name != "submission.py", _path(i)),
    )
    for info in ordered[:MAX_FILES]:
        path = _path(info)
        if inline := _inline_type(path):
            files.append(SourceFile(path, info.file_size, inline=inline))
            continue
        if info.file_size > min(MAX_FILE_BYTES, budget):
            files.append(SourceFile(path, info.file_size, note="too large to show here; download the upload"))
            continue
        try:
            with archive.open(info) as handle:
                content = handle.read(MAX_FILE_BYTES + 1)  # the archive's sizes may lie
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
            files.append(SourceFile(path, info.file_size, note=f"cannot be read: {exc}"))
            continue
        shown = _file(path, content, budget)
        budget -= len(content) if shown.note == "" else 0
        files.append(shown)
    if len(infos) > MAX_FILES:
        files.append(SourceFile(f"[{len(infos) - MAX_FILES} more files]", 0, note="not listed"))
    return files


def source_view(data: bytes, fmt: str) -> SourceView:
    """The upload as staff read it: a notebook's cells, a zip's files or a PDF, or why it cannot be shown."""
    try:
        if fmt == "pdf":
            if not data.startswith(b"%PDF-"):
                raise ValueError("not a PDF")
            return SourceView("pdf", files=[SourceFile(PDF_PATH, len(data), inline="application/pdf")])
        if fmt == "ipynb":
            return SourceView("notebook", cells=notebook_cells(data))
        return SourceView("files", files=zip_files(data))
    except ValueError as exc:
        return SourceView("unreadable", problem=str(exc))


def submission_view(settings: Settings, sub: Submission) -> SourceView:
    """The stored upload of a submission as staff read it."""
    try:
        data = upload_path(settings, sub.sha256).read_bytes()
    except OSError as exc:
        return SourceView("unreadable", problem=f"the uploaded file cannot be read: {exc.strerror or exc}")
    return source_view(data, sub.format)


def inline_member(data: bytes, fmt: str, path: str) -> tuple[bytes, str] | None:
    """The bytes and media type of one file shown inline: a PDF upload at PDF_PATH, or a zip's PDF or
    PNG/JPEG image at its path. None for anything else (text is shown in the page; other types never
    inline), or a file that is not there, cannot be read, or is larger than MAX_INLINE_BYTES."""
    inline = _inline_type(path)
    if inline is None:
        return None
    if fmt == "pdf":
        return (data, inline) if path == PDF_PATH and data.startswith(b"%PDF-") else None
    if fmt != "zip":
        return None
    try:
        archive, infos = _archive(data)
    except ValueError:
        return None
    info = next((i for i in infos if _path(i) == path), None)
    if info is None or info.file_size > MAX_INLINE_BYTES:
        return None
    try:
        with archive.open(info) as handle:
            content = handle.read(MAX_INLINE_BYTES + 1)  # the archive's sizes may lie
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError):
        return None
    return (content, inline) if len(content) <= MAX_INLINE_BYTES else None


def inline_file(settings: Settings, sub: Submission, path: str) -> tuple[bytes, str] | None:
    """inline_member of a submission's stored upload."""
    try:
        data = upload_path(settings, sub.sha256).read_bytes()
    except OSError:
        return None
    return inline_member(data, sub.format, path)


def pygments_css() -> str:
    """The highlighting colours (static/highlight.css is this, written once)."""
    return _formatter.get_style_defs(".highlight")

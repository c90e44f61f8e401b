"""An upload as staff read it: a notebook's cells with their saved outputs, or a zip's files, with syntax
highlighting. Read-only and inert: nothing in the upload runs, and nothing of it reaches the page
unescaped (Pygments and markdown-it escape; raw HTML in markdown and HTML outputs are shown as text).
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

# What one page shows of an upload: past these, files and outputs are cut, and the page says so.
MAX_SHOWN_BYTES = 2 * 1024 * 1024
MAX_FILE_BYTES = 256 * 1024
MAX_OUTPUT_CHARS = 20_000
MAX_FILES = 200
MAX_IMAGE_BYTES = 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

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
    note: str = ""  # why it is not shown


@dataclass
class SourceView:
    kind: str  # notebook | files | unreadable
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


def zip_files(data: bytes) -> list[SourceFile]:
    """A zip's plain files in path order, highlighted; ValueError if it cannot be read."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise ValueError(f"not a readable zip archive: {exc}") from exc
    files, budget = [], MAX_SHOWN_BYTES
    # submission.py (what the tests import) first, then the rest by path.
    ordered = sorted(infos, key=lambda i: (PurePosixPath(i.filename).name != "submission.py", i.filename))
    for info in ordered[:MAX_FILES]:
        path = str(PurePosixPath(info.filename.replace("\\", "/")))
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
    """The upload as staff read it: a notebook's cells or a zip's files, or why it cannot be shown."""
    try:
        if fmt == "ipynb":
            return SourceView("notebook", cells=notebook_cells(data))
        return SourceView("files", files=zip_files(data))
    except ValueError as exc:
        return SourceView("unreadable", problem=str(exc))


def pygments_css() -> str:
    """The highlighting colours (static/highlight.css is this, written once)."""
    return _formatter.get_style_defs(".highlight")

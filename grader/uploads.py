"""Check an uploaded notebook or zip and turn it into the files the sandbox runs.

Everything here only reads the upload: no student code runs on the host.
"""

import ast
import functools
import io
import json
import re
import stat
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from grader.assignments import Assignment

# Cell magics whose body is ordinary Python; the body of any other (%%bash, %%html, ...) is not.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}
MAGIC = re.compile(r"^\s*(%|!|\?)|^\s*\w[\w.]*\?\??\s*$|^\s*\w+\s*=\s*[!%]")


class BadUpload(Exception):
    """The upload cannot be graded; the message says what to fix. Nothing should be stored."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class CellSpan:
    """Lines start_line..end_line of submission.py came from notebook cell `cell` (1-based, all cells)."""

    cell: int
    start_line: int
    end_line: int


@dataclass
class Unpacked:
    kind: str  # "ipynb" or "zip"
    files: dict[str, bytes]  # relative POSIX path -> content; holds submission.py when the tests import it
    cells: list[CellSpan] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())


def detect_format(filename: str, head: bytes) -> str:
    """The upload's format from its name, confirmed by its first bytes."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".zip":
        if not head.startswith(b"PK"):
            raise BadUpload("bad_upload", f"{filename} is named .zip but is not a zip archive")
        return "zip"
    if suffix == ".ipynb":
        if not head.lstrip().startswith(b"{"):
            raise BadUpload("bad_upload", f"{filename} is named .ipynb but is not a notebook (JSON)")
        return "ipynb"
    if suffix == ".pdf":
        if not head.startswith(b"%PDF-"):
            raise BadUpload("bad_upload", f"{filename} is named .pdf but is not a PDF")
        return "pdf"
    raise BadUpload("bad_format", f"{filename}: upload a Jupyter notebook (.ipynb), a .zip archive or a .pdf")


def _source_line(line: str) -> str:
    # IPython syntax is not Python: comment it out so the rest of the cell still runs.
    return f"# [ipython] {line}" if MAGIC.match(line) else line


def notebook_to_module(data: bytes, filename: str = "notebook.ipynb") -> tuple[bytes, list[CellSpan]]:
    """The notebook's code cells, top to bottom, as submission.py, and where each cell landed."""
    try:
        text = data.decode("utf-8")
        shape = json.loads(text)
    except UnicodeDecodeError as exc:
        raise BadUpload("bad_upload", f"{filename} is not UTF-8 text: {exc}") from exc
    except ValueError as exc:
        raise BadUpload(
            "bad_upload", f"{filename} is not a valid Jupyter notebook: its JSON is broken ({exc})"
        ) from exc
    # nbformat's own words for JSON that is not a notebook are about its versions ("could not be
    # converted from version 1 to version 2 because it's missing a key: cells").
    # Cells: version 4's list, or version 3's in worksheets.
    holds_cells = isinstance(shape, dict) and any(
        isinstance(shape.get(k), list) for k in ("cells", "worksheets")
    )
    if not holds_cells or "nbformat" not in shape:
        raise BadUpload(
            "bad_upload",
            f"{filename} is not a valid Jupyter notebook: it is JSON without notebook cells. Save the "
            "notebook from Jupyter or Colab (File > Download > .ipynb) and upload that file",
        )
    lines: list[str] = ["# Generated from the student's notebook: code cells in order."]
    spans: list[CellSpan] = []
    for index, cell in enumerate(_cells(shape, text, filename), start=1):
        if not isinstance(cell, dict):
            raise BadUpload(
                "bad_upload", f"{filename} is not a valid Jupyter notebook: cell {index} is not a cell"
            )
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(part, str) for part in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise BadUpload(
                "bad_upload", f"{filename} is not a valid Jupyter notebook: cell {index}'s source is not text"
            )
        if source.lstrip().startswith("%%"):
            first, _, rest = source.lstrip().partition("\n")
            magic = first[2:].split(maxsplit=1)[0] if first[2:].strip() else ""
            if magic in PYTHON_CELL_MAGICS:
                body = [f"# [ipython] {first}"] + [_source_line(line) for line in rest.splitlines()]
            else:
                body = [f"# [ipython cell magic] {line}" for line in source.splitlines()]
        else:
            body = [_source_line(line) for line in source.splitlines()]
        lines.append(f"# %% cell {index}")
        start = len(lines) + 1
        lines.extend(body or ["pass"])
        spans.append(CellSpan(cell=index, start_line=start, end_line=len(lines)))
    return ("\n".join(lines) + "\n").encode("utf-8"), spans


def _cells(shape: dict, text: str, filename: str) -> list:
    """The notebook's cells. A version 4 notebook (what Jupyter and Colab have saved since 2015) is read
    as parsed: nbformat would parse it again and check it against its schema, which only logs what it
    finds, and that cost more than all the rest of unpacking it (bench/README.md section 14). An older
    one is converted by nbformat."""
    if shape.get("nbformat") == 4 and isinstance(shape.get("cells"), list):
        return shape["cells"]
    import nbformat  # here: it costs ~60 ms to import, and only old notebooks need it

    try:
        return nbformat.reads(text, as_version=4).cells
    except Exception as exc:  # nbformat raises several unrelated types for unreadable JSON
        raise BadUpload("bad_upload", f"{filename} is not a valid Jupyter notebook: {exc}") from exc


def _safe_member(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's path if it is a plain file inside the archive; BadUpload for hostile entries."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise BadUpload("bad_upload", f"the zip entry {info.filename!r} points outside the archive")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise BadUpload(
            "bad_upload", f"the zip entry {info.filename!r} is a symbolic link; upload plain files"
        )
    if info.is_dir():
        return None
    if path.parts and path.parts[0] in ("__MACOSX",) or path.name == ".DS_Store":
        return None
    return path


def unzip(
    data: bytes, *, max_bytes: int, max_files: int, keep: frozenset[str] = frozenset()
) -> dict[str, bytes]:
    """A zip's plain files, unwrapped from a single top-level folder unless the tests import a package
    of that name (keep); refuses bombs and escapes."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise BadUpload("bad_upload", f"the upload is not a readable zip archive: {exc}") from exc
    members = [(info, path) for info in infos if (path := _safe_member(info)) is not None]
    if len(members) > max_files:
        raise BadUpload("too_large", f"the zip holds {len(members)} files; the limit is {max_files}")
    # file_size is what the archive claims; the read below enforces the limit on what it really holds.
    if sum(info.file_size for info, _ in members) > max_bytes:
        raise BadUpload("too_large", f"the zip unpacks to more than {max_bytes // 2**20} MiB")
    files: dict[str, bytes] = {}
    total = 0
    for info, path in members:
        try:
            with archive.open(info) as handle:
                content = handle.read(max_bytes - total + 1)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
            raise BadUpload("bad_upload", f"cannot read {info.filename!r} from the zip: {exc}") from exc
        total += len(content)
        if total > max_bytes:
            raise BadUpload("too_large", f"the zip unpacks to more than {max_bytes // 2**20} MiB")
        files[str(path)] = content
    if not files:
        raise BadUpload("bad_upload", "the zip is empty")
    tops = {PurePosixPath(name).parts[0] for name in files}
    if len(tops) == 1 and not tops & keep and all(len(PurePosixPath(name).parts) > 1 for name in files):
        files = {str(PurePosixPath(*PurePosixPath(name).parts[1:])): data for name, data in files.items()}
    folders = {str(parent) for name in files for parent in PurePosixPath(name).parents} - {"."}
    if clash := sorted(folders & set(files)):
        # No file system can hold both; unpacking it for grading would fail in the sandbox.
        raise BadUpload(
            "bad_upload", f"the zip holds both a file and a folder named {clash[0]!r}: rename or remove one"
        )
    return files


def unpack(data: bytes, filename: str, assignment: Assignment, *, max_bytes: int, max_files: int) -> Unpacked:
    """Validate an upload for this assignment and return the files to grade; BadUpload if unusable."""
    kind = detect_format(filename, data[:64])
    if kind not in assignment.config.formats:
        accepted = " or ".join(f".{fmt}" for fmt in assignment.config.formats)
        raise BadUpload("bad_format", f"{assignment.slug} accepts {accepted} uploads, not .{kind}")
    limit_mb = assignment.config.max_upload_mb
    if limit_mb is not None and len(data) > limit_mb * 2**20:
        raise BadUpload("too_large", f"{assignment.slug} accepts uploads of at most {limit_mb:g} MiB")
    if kind == "pdf":  # a report, read by people: nothing of it is run
        return Unpacked(kind="pdf", files={"report.pdf": data})
    if kind == "ipynb":
        module, cells = notebook_to_module(data, filename)
        return Unpacked(kind="ipynb", files={"submission.py": module}, cells=cells)
    files = unzip(data, max_bytes=max_bytes, max_files=max_files, keep=imported_by_tests(assignment))
    notebooks = [name for name in files if name.endswith(".ipynb") and "/" not in name]
    cells: list[CellSpan] = []
    if "submission.py" not in files and len(notebooks) == 1:
        # A zip of a notebook and its helper files: the notebook is the submission.
        files["submission.py"], cells = notebook_to_module(files[notebooks[0]], notebooks[0])
    _check_required(files, assignment, what="the zip")
    return Unpacked(kind="zip", files=files, cells=cells)


def _check_required(files: dict[str, bytes], assignment: Assignment, *, what: str) -> None:
    """BadUpload naming what the upload lacks: the required files, and submission.py when the tests
    import it (tests that import the student's own modules by name need none)."""
    missing = [name for name in assignment.config.required_files if name not in files]
    needed = "submission.py" not in missing and tests_import_submission(assignment)
    if needed and "submission.py" not in files:
        missing.insert(0, "submission.py")
    if not missing:
        return
    have = sorted({PurePosixPath(name).parts[0] + ("/" if "/" in name else "") for name in files})
    shown = ", ".join(have[:10]) + (", ..." if len(have) > 10 else "")
    hint = " at the top level of the zip" if what == "the zip" else ""
    raise BadUpload(
        "missing_file",
        f"{what} is missing {', '.join(missing)}: add {'it' if len(missing) == 1 else 'them'}{hint} "
        f"(it holds {shown})",
    )


class WalkedFile(NamedTuple):
    path: Path
    name: str  # relative to the assignment's folder, as posix
    size: int
    mtime_ns: int


# An assignment's test files, walked at most once a second per folder: each upload read them three
# times, and a course's tests with their data files are many (bench/README.md section 16). So an upload
# sees an edit to the tests within the second, as it sees a sync of the assignments (grader.catalog);
# grading walks them afresh (storage.load, forget_walk).
TESTS_RECHECK_S = 1.0
_walked: dict[Path, tuple[float, tuple[WalkedFile, ...]]] = {}


def walk_tests(assignment: Assignment) -> tuple[WalkedFile, ...]:
    """The files of the assignment's tests, hidden and public (no __pycache__), in a fixed order."""
    now = time.monotonic()
    known = _walked.get(assignment.path)
    if known is not None and known[0] > now:
        return known[1]
    files = []
    for folder in (assignment.tests_dir, assignment.public_tests_dir):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if "__pycache__" not in path.parts and path.is_file():
                seen = path.stat()
                name = path.relative_to(assignment.path).as_posix()
                files.append(WalkedFile(path, name, seen.st_size, seen.st_mtime_ns))
    walked = tuple(files)
    _walked[assignment.path] = (now + TESTS_RECHECK_S, walked)
    return walked


def forget_walk(assignment: Assignment) -> None:
    """The next walk_tests of this assignment walks its tests afresh."""
    _walked.pop(assignment.path, None)


@functools.cache
def _imported_names(sources: tuple[WalkedFile, ...]) -> frozenset[str]:
    names: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source.path.read_bytes())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return frozenset(names)


def imported_by_tests(assignment: Assignment) -> frozenset[str]:
    """The top-level modules the assignment's tests (hidden or public) import: submission, a course
    package, numpy..."""
    return _imported_names(tuple(f for f in walk_tests(assignment) if f.name.endswith(".py")))


def tests_import_submission(assignment: Assignment) -> bool:
    """Whether the assignment's tests (hidden or public) import `submission`."""
    return "submission" in imported_by_tests(assignment)


def unpack_path(path: Path, assignment: Assignment, **limits: int) -> Unpacked:
    """unpack() for a file on disk, or for a folder of files (a reference solution or starter)."""
    if path.is_dir():
        files = {
            str(p.relative_to(path).as_posix()): p.read_bytes()
            for p in sorted(path.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        }
        _check_required(files, assignment, what=str(path))
        return Unpacked(kind="zip", files=files)
    return unpack(path.read_bytes(), path.name, assignment, **limits)


def module_names(files) -> set[str]:
    """The names the tests may import from the upload: its top-level modules and packages (a folder
    with .py files anywhere in it, with or without __init__.py)."""
    names = set()
    for name in files:
        parts = PurePosixPath(name).parts
        if not name.endswith(".py"):
            continue
        top = parts[0][:-3] if len(parts) == 1 else parts[0]
        if top.isidentifier():
            names.add(top)
    return names

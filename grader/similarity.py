"""How alike students' submissions to one assignment are: MOSS-style winnowing by `copydetect`.

Every student's counted submission (the code cells of a notebook, the .py files of a zip) is one
document; the starter and the reference solution are boilerplate, taken out of every document before
any comparison, so that what is left is each student's own way of writing. Earlier terms' submissions
(a folder of them) may be added: they are compared with this term's, not with each other.

copydetect tokenizes with pygments and replaces every name by one letter (V, F, O) and every string by
S, so renaming variables changes nothing; winnowing keeps fingerprints of k-character windows wherever
they are, so reordering functions changes nothing either. Everything runs in this process: no
submission leaves the server. Why copydetect, and how the threshold was chosen: docs/similarity.md.
"""

import bisect
import functools
import io
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from grader import extensions, gradebook, policies, storage, submissions
from grader.assignments import Assignment, submission_source
from grader.config import Settings
from grader.db import utcnow
from grader.uploads import BadUpload, notebook_to_module, unpack_path, unzip

# Fingerprints are hashes of NOISE_CHARS characters of tokenized code (about two lines of Python once
# names are letters); a match of WINDOW_CHARS or more is always found (winnowing's guarantee).
NOISE_CHARS = 25
WINDOW_CHARS = 30
# A pair is likely copied when this share of one submission's own code (starter and solution taken
# out) is found in the other: docs/similarity.md has the measurements behind it.
THRESHOLD = 0.5
# Pairs sharing less tokenized code than this are not flagged whatever their share: a student who wrote
# two lines of their own can share them by chance. One fingerprint is NOISE_CHARS; copies of a whole
# homework share hundreds of them.
MIN_SHARED_CHARS = 4 * NOISE_CHARS
# What a report keeps: the most similar pairs, at most this many (the CSV lists them all).
MAX_PAIRS = 1000
# A document longer than this is cut (a zip may hold megabytes of generated code); the report says so.
MAX_DOCUMENT_CHARS = 300_000
ARCHIVE_SUFFIXES = (".ipynb", ".zip", ".py")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class Document(BaseModel):
    key: str  # the student's login, or "archive:<path in the archive folder>"
    label: str  # what the pages show: the student's name, or the archived file
    kind: Literal["student", "archive"]
    submission_id: str | None = None
    code: str
    cut: bool = False  # longer than MAX_DOCUMENT_CHARS: the rest was not compared
    # The share of its own code (the starter's taken out) found in the reference solution: honest short
    # answers often match it; most of a long submission matching it may be a leaked solution.
    solution_share: float = 0.0
    own_chars: int = 0  # its tokenized code, the starter's taken out


class Pair(BaseModel):
    a: str  # Document.key
    b: str
    score: float  # the larger of the two shares
    share_a: float  # share of a's own code (boilerplate taken out) found in b
    share_b: float
    shared_chars: int  # tokenized code in common (names count one character each)
    lines_a: int  # lines of a that hold matching code
    lines_b: int
    regions_a: list[tuple[int, int]] = Field(default_factory=list)  # [start, end) in a's code
    regions_b: list[tuple[int, int]] = Field(default_factory=list)

    @property
    def lines(self) -> int:
        return max(self.lines_a, self.lines_b)

    def flagged(self, threshold: float) -> bool:
        """Likely copied: over the threshold, on enough code to mean something."""
        return self.score >= threshold and self.shared_chars >= MIN_SHARED_CHARS


class Report(BaseModel):
    slug: str
    created_at: datetime
    trigger: str  # "instructor", "cli" or "cutoff"
    threshold: float = THRESHOLD
    noise_chars: int = NOISE_CHARS
    window_chars: int = WINDOW_CHARS
    documents: list[Document]
    boilerplate: list[str]  # what was taken out: starter/..., solution/...
    skipped: list[str]  # submissions that could not be read, with why
    compared: int  # pairs compared
    pairs: list[Pair]  # most similar first; only pairs with any match
    duration_s: float = 0.0

    @property
    def closest_to_solution(self) -> list[Document]:
        """This term's submissions with code of their own, the most like the reference solution first."""
        mine = [doc for doc in self.documents if doc.kind == "student" and doc.own_chars >= MIN_SHARED_CHARS]
        return sorted(mine, key=lambda doc: (-doc.solution_share, doc.key))

    def document(self, key: str) -> Document | None:
        return next((doc for doc in self.documents if doc.key == key), None)

    def pair(self, a: str, b: str) -> Pair | None:
        return next((p for p in self.pairs if {p.a, p.b} == {a, b}), None)

    @property
    def flagged(self) -> list[Pair]:
        return [pair for pair in self.pairs if pair.flagged(self.threshold)]


# ---- what is compared --------------------------------------------------------------------------------


def code_of(files: dict[str, bytes]) -> str:
    """The Python of a submission: its .py files (a notebook's code cells are submission.py), one after
    another under a comment naming each (comments are not compared)."""
    names = sorted(name for name in files if name.endswith(".py") and "__pycache__" not in name)
    if names == ["submission.py"]:
        return files["submission.py"].decode("utf-8", errors="replace")
    parts = [f"# ==== {name} ====\n{files[name].decode('utf-8', errors='replace')}" for name in names]
    return "\n".join(parts)


def _document(key: str, label: str, kind: str, code: str, submission_id: str | None = None) -> Document:
    cut = len(code) > MAX_DOCUMENT_CHARS
    return Document(
        key=key, label=label, kind=kind, submission_id=submission_id, code=code[:MAX_DOCUMENT_CHARS], cut=cut
    )


def student_documents(
    *, session: Session, settings: Settings, assignment: Assignment
) -> tuple[list[Document], list[str]]:
    """Each student's counted submission (while none is graded, their latest) as a document; and the
    students whose upload could not be read, with why."""
    by_student: dict[int, list] = {}
    users = {}
    for sub, user in submissions.of_assignment(session, slug=assignment.slug):
        by_student.setdefault(user.id, []).append(sub)
        users[user.id] = user
    granted = {ext.user_id: ext for ext, _ in extensions.stored(session, slugs=[assignment.slug])}
    documents, skipped = [], []
    for user_id, subs in sorted(by_student.items(), key=lambda item: users[item[0]].login):
        user = users[user_id]
        deadline = extensions.deadline_with(assignment, granted.get(user_id))
        rows = [_row(sub, user.login) for sub in subs]
        chosen = gradebook.counted_submission(rows, deadline, assignment.submissions.counts)
        sub_id = chosen.submission.id if chosen else subs[-1].id
        sub = next(s for s in subs if s.id == sub_id)
        try:
            unpacked = storage.load(settings, sha256=sub.sha256, filename=sub.filename, assignment=assignment)
        except (OSError, BadUpload) as exc:
            skipped.append(f"{user.login}: cannot read {sub.filename}: {exc}")
            continue
        label = f"{user.name} ({user.login})" if user.name else user.login
        documents.append(_document(user.login, label, "student", code_of(unpacked.files), sub.id))
    return documents, skipped


def _row(sub, login: str) -> gradebook.SubmissionRow:
    return gradebook.SubmissionRow(
        id=sub.id,
        student_id=login,
        assignment=sub.assignment,
        submitted_at=sub.submitted_at,
        status=sub.status,
        score=sub.score,
        max_score=sub.max_score,
        pinned=sub.pinned,
    )


def archive_documents(folder: Path, *, settings: Settings) -> tuple[list[Document], list[str]]:
    """Earlier terms' submissions: every .ipynb, .zip and .py file under the folder, at any depth, is
    one, named by its path there. And the files that could not be read, with why."""
    documents, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in ARCHIVE_SUFFIXES):
        name = path.relative_to(folder).as_posix()
        try:
            data = path.read_bytes()
            if path.suffix.lower() == ".ipynb":
                files = {"submission.py": notebook_to_module(data, path.name)[0]}
            elif path.suffix.lower() == ".zip":
                files = unzip(
                    data, max_bytes=settings.max_unpacked_bytes, max_files=settings.max_upload_files
                )
                files |= _notebooks_as_modules(files)
            else:
                files = {"submission.py": data}
        except (OSError, BadUpload) as exc:
            skipped.append(f"archive {name}: {exc}")
            continue
        documents.append(_document(f"archive:{name}", f"earlier: {name}", "archive", code_of(files)))
    return documents, skipped


def _notebooks_as_modules(files: dict[str, bytes]) -> dict[str, bytes]:
    """A zip's notebooks as .py files, as grading would read a zip of one notebook."""
    out = {}
    for name in files:
        if name.endswith(".ipynb"):
            out[str(PurePosixPath(name).with_suffix(".py"))] = notebook_to_module(files[name], name)[0]
    return out


def boilerplate(assignment: Assignment, *, settings: Settings) -> tuple[dict[str, str], list[str]]:
    """The code every student was given or is expected to write alike, by its place in the assignment
    folder: the starter and the reference solution. And those that could not be read, with why."""
    found, skipped = {}, []
    for folder in (assignment.starter_dir, assignment.solution_dir):
        if not folder.is_dir():
            continue
        source = submission_source(folder)
        name = source.relative_to(assignment.path).as_posix()
        try:
            unpacked = unpack_path(
                source, assignment, max_bytes=settings.max_unpacked_bytes, max_files=settings.max_upload_files
            )
        except (OSError, BadUpload) as exc:
            skipped.append(f"{name} (not taken out): {exc}")
            continue
        found[name] = code_of(unpacked.files)
    return found, skipped


# ---- the comparison -------------------------------------------------------------------------------------


_BASE = 0x9E3779B97F4A7C15  # odd, 64 bits


@functools.cache
def _powers(k: int):
    import numpy as np

    return np.array([pow(_BASE, k - 1 - j, 2**64) for j in range(k)], dtype=np.uint64)


def _kgram_hashes(string: str, k: int):
    """The hashes of every k characters of the string: copydetect.utils.hashed_kgrams, with a polynomial
    hash modulo 2**64 instead of Python's hash(), which is salted per process. So a report built twice
    is the same report, and a page's highlights do not change when it is rebuilt."""
    import numpy as np

    codes = np.frombuffer(string.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < k:
        return np.array([], dtype=np.int64)
    return (np.lib.stride_tricks.sliding_window_view(codes, k) @ _powers(k)).view(np.int64)


@functools.cache
def _copydetect():
    """copydetect, imported here (it imports matplotlib, which only this needs), with stable hashes."""
    import copydetect
    import copydetect.utils

    copydetect.utils.hashed_kgrams = _kgram_hashes
    return copydetect


def _fingerprint(code: str, starter: set[int], solution: set[int]):
    """copydetect's fingerprint of the code with the starter's and the solution's fingerprints taken
    out; and the share of the code (the starter's taken out) that is the solution's."""
    from copydetect.utils import get_token_coverage

    CodeFingerprint = _copydetect().CodeFingerprint  # noqa: N806 (a class)

    fingerprint = CodeFingerprint(
        "submission.py", NOISE_CHARS, WINDOW_CHARS, language="python", fp=io.StringIO(code)
    )
    # Python ints, not numpy's: the set operations of every comparison run several times faster. The
    # boilerplate is taken out of that index here, as copydetect's `boilerplate` argument would.
    index = {int(value): places for value, places in fingerprint.hash_idx.items() if value not in starter}
    written = get_token_coverage(index, NOISE_CHARS, len(fingerprint.filtered_code))
    as_solution = {value: places for value, places in index.items() if value in solution}
    solution_share = (
        get_token_coverage(as_solution, NOISE_CHARS, len(fingerprint.filtered_code)) / written
        if written
        else 0.0
    )
    for value in as_solution:
        del index[value]
    fingerprint.hash_idx, fingerprint.hashes = index, set(index)
    fingerprint.token_coverage = get_token_coverage(index, NOISE_CHARS, len(fingerprint.filtered_code))
    return fingerprint, float(solution_share), int(written)


def _boilerplate_hashes(codes: Iterable[str]) -> set[int]:
    CodeFingerprint = _copydetect().CodeFingerprint  # noqa: N806 (a class)

    hashes: set[int] = set()
    for code in codes:
        # Every window (size 1), not only the winnowed ones: any fingerprint of it in a document goes.
        found = CodeFingerprint("boilerplate.py", NOISE_CHARS, 1, language="python", fp=io.StringIO(code))
        hashes |= {int(value) for value in found.hashes}
    return hashes


def _regions(slices) -> list[tuple[int, int]]:
    return [(int(start), int(end)) for start, end in zip(slices[0], slices[1], strict=True)]


def _line_starts(code: str) -> list[int]:
    """Where each line of the code starts."""
    return [0] + [match.end() for match in re.finditer("\n", code)]


def _lines(starts: list[int], regions: list[tuple[int, int]]) -> int:
    """How many lines (starting at `starts`) hold part of a region."""
    touched: set[int] = set()
    for start, end in regions:
        first = bisect.bisect_right(starts, start) - 1
        last = bisect.bisect_right(starts, max(start, end - 1)) - 1
        touched.update(range(first, last + 1))
    return len(touched)


def compare(
    documents: list[Document],
    starter: Iterable[str] = (),
    solution: Iterable[str] = (),
    *,
    progress: Progress | None = None,
) -> tuple[list[Pair], int]:
    """Every pair of documents but archive against archive, the starter and the solution taken out: the
    pairs with any match, most similar first, and how many pairs were compared. Sets each document's
    solution_share."""
    compare_files = _copydetect().compare_files
    report = progress or (lambda stage, done, total: None)
    starter_hashes = _boilerplate_hashes(starter)
    solution_hashes = _boilerplate_hashes(solution) - starter_hashes
    prints = []
    for index, doc in enumerate(documents):
        report("fingerprinting", index, len(documents))
        fingerprint, doc.solution_share, doc.own_chars = _fingerprint(
            doc.code, starter_hashes, solution_hashes
        )
        prints.append(fingerprint)
    report("fingerprinting", len(documents), len(documents))
    starts = [_line_starts(doc.code) for doc in documents]
    todo = [
        (i, j)
        for i in range(len(documents))
        for j in range(i + 1, len(documents))
        if "student" in (documents[i].kind, documents[j].kind)
    ]
    pairs = []
    step = max(1, len(todo) // 100)
    for done, (i, j) in enumerate(todo):
        if done % step == 0:
            report("comparing", done, len(todo))
        if not prints[i].hashes & prints[j].hashes:
            continue
        overlap, (share_a, share_b), (slices_a, slices_b) = compare_files(prints[i], prints[j])
        if len(slices_a[0]) == 0:
            continue
        a, b = documents[i], documents[j]
        regions_a, regions_b = _regions(slices_a), _regions(slices_b)
        pairs.append(
            Pair(
                a=a.key,
                b=b.key,
                score=round(float(max(share_a, share_b)), 4),
                share_a=round(float(share_a), 4),
                share_b=round(float(share_b), 4),
                shared_chars=int(overlap),
                lines_a=_lines(starts[i], regions_a),
                lines_b=_lines(starts[j], regions_b),
                regions_a=regions_a,
                regions_b=regions_b,
            )
        )
    report("comparing", len(todo), len(todo))
    pairs.sort(key=lambda p: (-p.score, -p.lines, p.a, p.b))
    return pairs, len(todo)


def build(
    *,
    session: Session,
    settings: Settings,
    assignment: Assignment,
    archive: Path | None = None,
    trigger: str = "instructor",
    progress: Progress | None = None,
) -> Report:
    """The similarity report of one assignment now: its students' counted submissions, and the earlier
    submissions in `archive` if given."""
    started = time.monotonic()
    report = progress or (lambda stage, done, total: None)
    report("reading submissions", 0, 0)
    documents, skipped = student_documents(session=session, settings=settings, assignment=assignment)
    if archive is not None and archive.is_dir():
        old, old_skipped = archive_documents(archive, settings=settings)
        documents += old
        skipped += old_skipped
    given, unreadable = boilerplate(assignment, settings=settings)
    skipped += unreadable
    pairs, compared = compare(
        documents,
        [code for name, code in given.items() if name.startswith("starter/")],
        [code for name, code in given.items() if name.startswith("solution/")],
        progress=progress,
    )
    return Report(
        slug=assignment.slug,
        created_at=utcnow(),
        trigger=trigger,
        documents=documents,
        boilerplate=sorted(given),
        skipped=skipped,
        compared=compared,
        pairs=pairs[:MAX_PAIRS],
        duration_s=round(time.monotonic() - started, 2),
    )


def last_cutoff(*, session: Session, assignment: Assignment) -> datetime | None:
    """When the last student's uploads close (extensions included); None while some student's never do."""
    cutoff = policies.deadline_for(assignment).cutoff
    if cutoff is None:
        return None
    for ext, _login in extensions.stored(session, slugs=[assignment.slug]):
        moved = extensions.deadline_with(assignment, ext).cutoff
        if moved is None:
            return None
        cutoff = max(cutoff, moved)
    return cutoff


# ---- how a pair is shown ----------------------------------------------------------------------------------


def segments(code: str, regions: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """The code as (text, matches) pieces in order, for a page to highlight the matching ones."""
    out: list[tuple[str, bool]] = []
    position = 0
    for start, end in sorted(regions):
        start = max(start, position)
        if end <= start:
            continue
        if start > position:
            out.append((code[position:start], False))
        out.append((code[start:end], True))
        position = end
    if position < len(code):
        out.append((code[position:], False))
    return out

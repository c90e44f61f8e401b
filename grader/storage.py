"""Uploads on disk, by content hash: the file as received, and the files unpacked from it when it was
accepted, which grading runs (an upload is unpacked once).

    data_dir/uploads/ab/abcdef...            the upload as received: the source of truth, written (and
                                             synced) before its row commits
    data_dir/unpacked/ab/abcdef...-0123...   its unpacked form (a tar) for one state of the assignment

How a zip unpacks depends on the assignment (its formats and required files, the modules its tests
import), so the form is kept under the upload's hash and a hash of the assignment's config and tests.
When there is none for the assignment as it is now (changed since, an upload stored by an older
version, a form lost in a crash), grading unpacks the upload again.
"""

import functools
import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
from pathlib import Path

from grader.assignments import Assignment
from grader.config import Settings
from grader.uploads import CellSpan, Unpacked, forget_walk, unpack, walk_tests

log = logging.getLogger(__name__)

# The unpacked form's kind and notebook cells travel in the tar's global PAX header, under this key.
MANIFEST = "grader.unpacked"
VERSION = 1


def upload_path(settings: Settings, sha256: str) -> Path:
    """Where the upload with this SHA-256 is stored."""
    return settings.data_dir / "uploads" / sha256[:2] / sha256


def unpacked_path(settings: Settings, sha256: str, assignment: Assignment) -> Path:
    """Where the form the upload with this SHA-256 unpacks to for the assignment as it is now is stored."""
    return settings.data_dir / "unpacked" / sha256[:2] / f"{sha256}-{_unpacking_key(assignment, settings)}"


def store(settings: Settings, data: bytes, unpacked: Unpacked, assignment: Assignment) -> str:
    """Write the upload and the form it unpacked to for this assignment (identical uploads share them);
    returns the upload's SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    _write(upload_path(settings, digest), lambda out: out.write(data), sync=True)
    # Not synced, and not needed: without it (a crash, tests changing under us) the worker unpacks again.
    try:
        _write(unpacked_path(settings, digest, assignment), lambda out: _write_tar(out, unpacked), sync=False)
    except OSError as exc:
        log.warning("could not store the unpacked form of %s: %s", digest, exc)
    return digest


def load(settings: Settings, *, sha256: str, filename: str, assignment: Assignment) -> Unpacked:
    """The files to grade: the form stored when the upload was accepted, if the assignment has not
    changed since; else the upload unpacked again. Raises OSError when the upload cannot be read,
    BadUpload when it does not unpack."""
    forget_walk(assignment)  # grading unpacks for the tests as they are now, not as of a second ago
    try:
        return _read_tar(unpacked_path(settings, sha256, assignment).read_bytes())
    except (OSError, tarfile.TarError, KeyError, TypeError, ValueError):
        pass
    return unpack(
        upload_path(settings, sha256).read_bytes(),
        filename,
        assignment,
        max_bytes=settings.max_unpacked_bytes,
        max_files=settings.max_upload_files,
    )


def _unpacking_key(assignment: Assignment, settings: Settings) -> str:
    """A hash of what decides how an upload unpacks for this assignment: its slug and config (formats,
    required files), its tests (the modules they import), and the limits on unpacking."""
    head = [assignment.slug, assignment.config.model_dump_json()]
    head += [settings.max_unpacked_bytes, settings.max_upload_files]
    stamps = tuple((f.name, f.size, f.mtime_ns) for f in walk_tests(assignment))
    return _hash(json.dumps(head), assignment.path, stamps)


@functools.lru_cache(maxsize=256)
def _hash(head: str, root: Path, stamps: tuple[tuple[str, int, int], ...]) -> str:
    """The hash of `head` and the files' names and contents: read again only when a file's size or
    modification time changes. Not of the folder's location (the API and the workers may differ)."""
    digest = hashlib.sha256(head.encode())
    for name, _size, _mtime in stamps:
        digest.update(f"\0{name}\0".encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:16]


def _write(path: Path, fill, *, sync: bool) -> None:
    """Create the file atomically (a reader sees all of it or nothing), unless it exists."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_tar(out, unpacked: Unpacked) -> None:
    cells = [[span.cell, span.start_line, span.end_line] for span in unpacked.cells]
    manifest = {"version": VERSION, "kind": unpacked.kind, "cells": cells, "files": len(unpacked.files)}
    header = {MANIFEST: json.dumps(manifest)}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers=header) as tar:
        for name, content in unpacked.files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def _read_tar(data: bytes) -> Unpacked:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        manifest = json.loads(tar.pax_headers[MANIFEST])
        if manifest["version"] != VERSION:
            raise ValueError(f"unpacked form version {manifest['version']}")
        files = {member.name: tar.extractfile(member).read() for member in tar if member.isfile()}
    if len(files) != manifest["files"]:  # cut short between two files
        raise ValueError(f"unpacked form holds {len(files)} of {manifest['files']} files")
    return Unpacked(kind=manifest["kind"], files=files, cells=[CellSpan(*cell) for cell in manifest["cells"]])

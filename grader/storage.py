"""Uploads on disk, by content hash: the file as received, and the files unpacked from it when it was
accepted, which grading runs (an upload is unpacked once).

    data_dir/uploads/ab/abcdef...     the upload as received: the source of truth, written (and synced)
                                      before its row commits
    data_dir/unpacked/ab/abcdef...    its unpacked form, a tar; missing for uploads stored by an older
                                      version, or unreadable after a crash: then grading unpacks the upload
"""

import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from grader.assignments import Assignment
from grader.config import Settings
from grader.uploads import CellSpan, Unpacked, unpack

# The unpacked form's kind and notebook cells travel in the tar's global PAX header, under this key.
MANIFEST = "grader.unpacked"
VERSION = 1


def upload_path(settings: Settings, sha256: str) -> Path:
    """Where the upload with this SHA-256 is stored."""
    return settings.data_dir / "uploads" / sha256[:2] / sha256


def unpacked_path(settings: Settings, sha256: str) -> Path:
    """Where the unpacked form of the upload with this SHA-256 is stored."""
    return settings.data_dir / "unpacked" / sha256[:2] / sha256


def store(settings: Settings, data: bytes, unpacked: Unpacked) -> str:
    """Write the upload and its unpacked form under the upload's SHA-256 (identical uploads share them);
    returns the SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    _write(upload_path(settings, digest), lambda out: out.write(data), sync=True)
    # Not synced: a form lost in a crash costs the worker one unpacking, never the submission.
    _write(unpacked_path(settings, digest), lambda out: _write_tar(out, unpacked), sync=False)
    return digest


def load(settings: Settings, *, sha256: str, filename: str, assignment: Assignment) -> Unpacked:
    """The files to grade: the unpacked form stored with the upload, else the upload unpacked again.
    Raises OSError when the upload cannot be read, BadUpload when it does not unpack."""
    try:
        return _read_tar(unpacked_path(settings, sha256).read_bytes())
    except (OSError, tarfile.TarError, KeyError, TypeError, ValueError):
        pass
    return unpack(
        upload_path(settings, sha256).read_bytes(),
        filename,
        assignment,
        max_bytes=settings.max_unpacked_bytes,
        max_files=settings.max_upload_files,
    )


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

"""What goes into a sandbox's containers: the tars of H's files (the harness, the tests, the data, the
grading's spec) and of S's (the harness, its settings, the student's files), and what a pooled pair
imports before its submission comes."""

import ast
import io
import json
import tarfile
from pathlib import Path, PurePosixPath

from grader.assignments import Assignment, with_data
from grader.containers import STUDENT_PORT
from grader.uploads import Unpacked, module_names

# Fresh student sides the harness may ask for in one grading, after crashes or a test's timeout.
MAX_RESTARTS = 30
# The harness gets less than timeout_s so that it normally reports a timeout itself before we kill it
# (grade() kills at timeout_s plus sandbox.STARTUP_GRACE_S).
DEADLINE_MARGIN_S = 2.0
# What a pooled student side imports ahead, of what the tests import: the heavy libraries a student's
# code imports too. The tests side imports all that its test files import.
STUDENT_PRELOAD = ("numpy", "torch")


def tree(root: Path, prefix: str) -> dict[str, bytes]:
    return {
        f"{prefix}/{path.relative_to(root).as_posix()}": path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def build_tar(files: dict[str, bytes], *, uid: int) -> bytes:
    """A tar of the files (path -> content), 0644 in 0755 folders, all owned by uid."""
    folders = {str(parent) for name in files for parent in PurePosixPath(name).parents} - {"."}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        # By depth, then name: the same files give the same bytes (grader.pool keys pairs by them).
        for name in sorted(folders, key=lambda folder: (folder.count("/"), folder)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, uid, uid
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, uid, uid
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _spec(assignment: Assignment, unpacked: Unpacked) -> dict:
    box = assignment.sandbox
    return {
        "deadline_s": max(1.0, box.timeout_s - DEADLINE_MARGIN_S),
        "student_host": "127.0.0.1",
        "student_port": STUDENT_PORT,
        "connect_timeout_s": 60,
        "cells": [cell.__dict__ for cell in unpacked.cells],
        "seed": 0,
        "gpu": box.gpu,
        "max_message_bytes": _max_message_bytes(box),
        # The worker's list of the upload's modules: S is not trusted to say which names are the student's.
        "student_modules": sorted(module_names(unpacked.files)),
        "test_timeout_s": box.test_timeout_s,
        "max_restarts": MAX_RESTARTS,
    }


def _max_message_bytes(box) -> int:
    # A reply bigger than this would let the student's code exhaust the tests' memory.
    return min(64 * 2**20, box.memory_mb * 2**20 // 4)


def tests_files(assignment: Assignment, harness_dir: Path) -> dict[str, bytes]:
    """H's files that are the same for every submission of the assignment: all but spec.json."""
    files = tree(harness_dir, "harness") | tree(assignment.tests_dir, "grade/tests")
    if assignment.public_tests_dir.is_dir():
        files |= tree(assignment.public_tests_dir, "grade/public_tests")
    files |= {f"grade/{name}": content for name, content in assignment.data_files().items()}
    return files


def spec_file(assignment: Assignment, unpacked: Unpacked) -> dict[str, bytes]:
    return {"grade/spec.json": json.dumps(_spec(assignment, unpacked)).encode()}


def student_tar(
    assignment: Assignment, unpacked: Unpacked, harness_dir: Path | None, *, scramble_args: bool
) -> bytes:
    """S's tar: the harness (unless harness_dir is None: a pooled S has it already), its settings and
    the student's files."""
    # The assignment's data/ wins over the student's files of the same paths.
    merged = with_data(unpacked.files, assignment.data_files())
    files = {f"work/{name}": data for name, data in merged.items()}
    # S's own settings: the reply limit it refuses honest replies over, a notebook's cells, and
    # whether to spoil arguments after each call (checking a reference solution: grade(scramble_args)).
    config = {
        "max_bytes": _max_message_bytes(assignment.sandbox),
        "cells": [c.__dict__ for c in unpacked.cells],
        "scramble_args": scramble_args,
    }
    # Ours first: a student's file that cannot be unpacked must not keep S from starting.
    ours = tree(harness_dir, "harness") if harness_dir is not None else {}
    ours |= {"student.json": json.dumps(config).encode()}
    return build_tar(ours | files, uid=1001)


def preloads(assignment: Assignment) -> tuple[list[str], list[str]]:
    """What a pooled pair imports before its submission: the installed libraries the test files import
    (the tests side), and of those the heavy ones (the student side). The tests' own helper modules
    are left out: they are imported when the tests are collected, after the submission came."""
    wanted: set[str] = set()
    local: set[str] = {"submission"}
    for folder in (assignment.tests_dir, assignment.public_tests_dir, assignment.data_dir):
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
            local.add(path.stem)
            local.update(part for part in path.relative_to(folder).parts[:-1])
            try:
                parsed = ast.parse(path.read_bytes())
            except (SyntaxError, ValueError):
                continue
            for node in parsed.body:
                if isinstance(node, ast.Import):
                    wanted |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    wanted.add(node.module)
    tests = sorted(name for name in wanted if name.partition(".")[0] not in local)
    return tests, [name for name in STUDENT_PRELOAD if any(t.partition(".")[0] == name for t in tests)]

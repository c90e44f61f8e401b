"""A pooled sandbox's wait: import the libraries first, then read the submission's part from stdin.

A pooled pair (grader.pool) is started before its submission exists. Its BOOT unpacks only what is the
same for every submission of the assignment (the harness; on the tests side, the tests), then runs the
harness, which imports the libraries named in SANDBOX_PRELOAD and blocks reading stdin. The worker
sends the submission's part (the spec; the student's files) when it claims the pair. Until then
nothing of any submission is in the container, and the only code that has run is ours and the
libraries'. The containers are used once: after the submission the harness exits and they are removed.

Frames on stdin: 8 bytes of big-endian length, then a tar of that length.
"""

import io
import os
import sys
import tarfile

POOLED = "SANDBOX_POOLED"  # set in a pooled container's environment
PRELOAD = "SANDBOX_PRELOAD"  # the libraries to import before the submission, comma-separated
IDLE = "SANDBOX_IDLE_S"  # a parked sandbox's wait, at most


def pooled() -> bool:
    return os.environ.get(POOLED) == "1"


def preload() -> None:
    """Import the libraries the worker named (skipping any not installed); failures are left to the run,
    which imports them again and reports the error where it belongs."""
    import importlib
    import importlib.util

    for name in filter(None, os.environ.get(PRELOAD, "").split(",")):
        try:
            if importlib.util.find_spec(name.partition(".")[0]) is None:
                continue
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - see the docstring
            continue


def read_frame(stream) -> bytes | None:
    """One frame's bytes; None when stdin closed first (the pool retired this sandbox unused)."""
    head = stream.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "big")
    data = stream.read(size)
    return data if len(data) == size else None


def arrives(stream, idle_s: float) -> bool:
    """Whether stdin has something within idle_s seconds (0: wait for ever)."""
    if idle_s <= 0:
        return True
    import select

    return bool(select.select([stream.fileno()], [], [], idle_s)[0])


def receive(*, student: bool, stream=None, root: str = "/tmp") -> None:
    """Wait for the submission's part, unpack it under root and move into SANDBOX_WORKDIR.

    A parked sandbox (grader.parked) that no command claims within SANDBOX_IDLE_S seconds exits.
    On the student side, files that would not unpack are the student's error, reported by the harness
    as in a fresh container (SANDBOX_UNPACK_ERROR); on the tests side they are ours."""
    stream = stream or sys.stdin.buffer
    if not arrives(stream, float(os.environ.get(IDLE, "0") or 0)):
        os._exit(0)
    data = read_frame(stream)
    if data is None:
        os._exit(0)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            archive.extractall(root)
    except Exception as exc:
        if not student:
            raise
        os.environ["SANDBOX_UNPACK_ERROR"] = f"{type(exc).__name__}: {exc}"[:500]
    os.chdir(os.environ.get("SANDBOX_WORKDIR", root))

"""With several API processes (`grader api --workers N`), which one keeps a student's connection.

uvicorn's processes share one listening socket, and a keep-alive connection stays with the process
that accepted it: in a deadline burst most of the students could wait on one process while the other
idled. Ending every accepted upload's connection moved them about, but each process serves its own
queue in turn, and a reconnecting upload lands on whichever accepts first: the two queues drifted
apart and back, and the slowest answers took twice the median (bench/README.md section 14).

So each process posts how many uploads it has in hand (in turn or waiting for it: forms.in_hand) to
a file of its own under `GRADER_DATA_DIR/api-processes`, and ends an accepted upload's connection
(`Connection: close`) only when another process has fewer: students leave the longer queue and stay in
the shorter. A process that has posted nothing for half a second has no uploads; with no other process
posting, every connection is ended, as before. A few small reads and a write per answered upload, on
the event loop (tens of microseconds).
"""

import os
import socket
import struct
import time
from pathlib import Path

from starlette.datastructures import MutableHeaders

from grader.config import Settings

FRESH_S = 0.5  # a post older than this is from a process with nothing in hand
FORGET_S = 60.0  # a post older than this is from a process that has stopped: its file is removed
_POST = struct.Struct("<dq")  # posted at (epoch s), uploads in hand


def board(settings: Settings) -> Path:
    return settings.data_dir / "api-processes"


def this_process() -> str:
    # The host's name too: API containers sharing the data folder may have the same process ids.
    return f"{socket.gethostname()}-{os.getpid()}"


def post(folder: Path, name: str, in_hand: int, now: float) -> None:
    path, data = folder / name, _POST.pack(now, in_hand)
    try:
        path.write_bytes(data)
    except FileNotFoundError:  # the first post: the folder is made once, not with every answer
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def others_in_hand(folder: Path, name: str, now: float) -> list[int]:
    """What the other processes posted within FRESH_S; forgets those silent for FORGET_S."""
    loads = []
    for entry in os.scandir(folder):
        if entry.name == name:
            continue
        try:
            at, in_hand = _POST.unpack(Path(entry.path).read_bytes())
        except (OSError, struct.error):  # gone, or being written this instant
            continue
        if now - at < FRESH_S:
            loads.append(in_hand)
        elif now - at > FORGET_S:
            Path(entry.path).unlink(missing_ok=True)
    return loads


def moves_on(in_hand: int, others: list[int]) -> bool:
    """Whether this process ends the connection: no other is taking uploads, or one has fewer."""
    return not others or in_hand > min(others)


def spread_next_upload(headers: MutableHeaders, settings: Settings, in_hand: int) -> None:
    """With several API processes, end an accepted upload's connection when another process has fewer
    uploads in hand than this one's `in_hand`: the student's next upload connects afresh."""
    if settings.api_processes <= 1:
        return
    folder, name, now = board(settings), this_process(), time.time()
    try:
        post(folder, name, in_hand, now)
        others = others_in_hand(folder, name, now)
    except OSError:  # the data folder unwritable: spread as if alone
        others = []
    if moves_on(in_hand, others):
        headers["Connection"] = "close"

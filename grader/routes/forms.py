"""Read a multipart upload without ever holding more than the size limit, then accept it in turn.

Starlette's own form parsing reads the whole body before the route runs; here the body is counted as
it arrives and the request is refused as soon as it passes the limit. File parts spool to a temporary
file past 1 MiB (Starlette's MultiPartParser).
"""

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar
from weakref import WeakKeyDictionary

import anyio
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from grader.config import get_settings

T = TypeVar("T")
K = TypeVar("K")
G = TypeVar("G")

# Room for the multipart boundaries, part headers and the small text fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024


class TooLarge(Exception):
    pass


class BadForm(Exception):
    pass


async def _counted(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise TooLarge
        yield chunk


async def receive_form(request: Request, *, max_file_bytes: int) -> FormData:
    """The form, its file parts spooled; TooLarge past max_file_bytes, BadForm if not multipart."""
    limit = max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge  # refused before reading a byte of it
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadForm("send the upload as multipart/form-data with fields `assignment` and `file`")
    parser = MultiPartParser(request.headers, _counted(request.stream(), limit), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadForm(exc.message) from exc
    upload = form.get("file")
    if upload is not None and not isinstance(upload, str) and (upload.size or 0) > max_file_bytes:
        await form.close()
        raise TooLarge
    return form


class _Turns:
    """At most `size` steps running at once; the others wait in the order their requests arrived, so a
    request's second step goes before a later request's first."""

    def __init__(self, size: int):
        self.size, self.running, self.waiting = size, 0, []  # waiting: a heap of (arrived, seq, future)
        self.seq = itertools.count()
        # The steps' own threads: never fewer than `size`, whatever FastAPI's shared pool is doing.
        self.threads = anyio.CapacityLimiter(size)

    async def take(
        self, arrived: float, step: Callable[[], T], on_turn: Callable[[], None] | None = None
    ) -> T:
        """`step` run in its turn (`on_turn` called on the loop as that turn comes, before the step)."""
        if self.running < self.size and not self.waiting:
            self.running += 1
        else:
            turn = asyncio.get_running_loop().create_future()
            heapq.heappush(self.waiting, (arrived, next(self.seq), turn))
            try:
                await turn  # handed the place of a step that ended (self.running unchanged)
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():  # handed over, then cancelled: pass it on
                    self._next()
                raise
        try:
            if on_turn is not None:
                on_turn()
            return await anyio.to_thread.run_sync(step, limiter=self.threads)
        finally:
            self._next()

    def _next(self) -> None:
        while self.waiting:
            turn = heapq.heappop(self.waiting)[2]
            if not turn.cancelled():
                turn.set_result(None)
                return
        self.running -= 1


# One per event loop: a server has one, but each of the tests' clients runs its own, and a waiter can
# only be woken from its own loop.
_turns: WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = WeakKeyDictionary()


def arrival(request: Request) -> float:
    """When the request came (time.monotonic()), the same for each of its steps in turn (in_turn's
    `arrived`): the first to ask, a dependency's or the route's, sets it."""
    state = request.state
    if not hasattr(state, "arrived"):
        state.arrived = time.monotonic()
    return state.arrived


def in_hand() -> int:
    """The uploads of this process's event loop in turn or waiting for it (grader.routes.spread)."""
    turns = _turns.get(asyncio.get_running_loop())
    return 0 if turns is None else turns.running + len(turns.waiting)


async def in_turn(accept: Callable[..., T], *args, arrived: float | None = None) -> T:
    """Run a step of an upload's blocking work (the token check; the assignment lookup, the checks,
    store, commit and publish; a refusal page), or any request's first check of its token or
    sign-in (grader.remembered), in a worker thread, at most GRADER_UPLOAD_CONCURRENCY at once in this
    process, the others waiting in the order their requests arrived (`arrived`: the request's
    time.monotonic() when it came, the same for each of its steps; now by default). A request that
    waited its turn once would otherwise wait again behind everyone who came meanwhile (bench/README.md
    section 15). Sign-in checks outside it, 50 at once, took connections past the pool's size, which
    were opened and closed again (section 16).

    The caller must hold no database connection while it waits here (its own session opened inside
    `accept`, or one whose transaction has ended): waiting requests that held connections could leave
    none in the pool for those whose turn it is."""
    turns = _turns_here()
    return await turns.take(time.monotonic() if arrived is None else arrived, partial(accept, *args))


def _turns_here() -> _Turns:
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = _Turns(get_settings().upload_concurrency)
    return turns


@dataclass(eq=False)
class _Batch(Generic[K, T]):
    keys: set[K]
    read: asyncio.Future[dict[K, T]]
    task: asyncio.Task | None = None  # held here: the loop keeps only a weak reference to a task


# Per event loop, the batch of each (read, group) that still takes keys: its turn has not come yet.
_open: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, _Batch]] = WeakKeyDictionary()


async def in_turn_together(
    read: Callable[[G, Collection[K]], dict[K, T]], group: G, key: K, *, arrived: float
) -> T | None:
    """`read(group, keys)[key]`, or None where it has no answer for `key`: one step in turn, as in_turn,
    shared by every request of this process that asks `read` for a key of the same group before that
    turn comes (it comes in the place of the first to ask). A deadline burst opens with 50 students'
    tokens or sign-ins not checked yet, each read alone before its upload could go (bench/README.md
    section 17); together they are one statement and one thread hop per batch.

    `read` runs in a worker thread with its own database session, and runs to the end even when every
    request waiting for it has gone. What it raises, each of them raises."""
    loop = asyncio.get_running_loop()
    batches = _open.get(loop)
    if batches is None:
        batches = _open[loop] = {}
    batch = batches.get((read, group))
    if batch is None:
        batch = batches[read, group] = _Batch(set(), loop.create_future())
        batch.task = loop.create_task(_read_together(batches, read, group, batch, arrived))
    batch.keys.add(key)
    return (await asyncio.shield(batch.read)).get(key)


async def _read_together(batches: dict, read: Callable, group, batch: _Batch, arrived: float) -> None:
    def close() -> None:  # a key asked from now on goes into the next batch
        del batches[read, group]

    try:
        # The set itself: read lists it in its thread, after close.
        found = await _turns_here().take(arrived, partial(read, group, batch.keys), on_turn=close)
    except asyncio.CancelledError:  # the loop is closing
        batch.read.cancel()
        raise
    except Exception as exc:
        batch.read.set_exception(exc)
        batch.read.exception()  # marked as seen: no "never retrieved" log when every waiter has gone
    else:
        batch.read.set_result(found)
    finally:
        if batches.get((read, group)) is batch:
            del batches[read, group]

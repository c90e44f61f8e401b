"""Student side (S): import the student's code, run what the tests side asks, answer with plain data.

Run as `python3 -I student_side.py HOST PORT` in the submission's folder. Nothing here is trusted by
the tests side: it checks every reply. This file only keeps an honest submission's answers faithful.
"""

import hashlib
import importlib
import io
import os
import pickle
import random
import socket
import sys
import traceback
import types


def _bootstrap() -> None:
    """Import this folder as a private package, so a student's protocol.py cannot shadow ours."""
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "_grader_harness", os.path.join(here, "__init__.py"), submodule_search_locations=[here]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules["_grader_harness"] = package
    spec.loader.exec_module(package)


class Server:
    """Answers requests from the tests side on the one connection."""

    def __init__(self, conn: socket.socket, work: str):
        self.conn, self.work = conn, work
        self.objects: dict[int, object] = {}  # handle id -> the object, kept alive for the tests
        self.ids: dict[int, int] = {}  # id(object) -> handle id
        self.max_bytes = 64 * 2**20  # until H says its limit
        self.pid = os.getpid()

    def handle_of(self, obj) -> tuple[int, str]:
        """The handle number and type name by which the tests side refers to obj."""
        if id(obj) not in self.ids:
            self.ids[id(obj)] = len(self.objects)
            self.objects[len(self.objects)] = obj
        if isinstance(obj, types.ModuleType):
            # vars(), not hasattr(): a student's module-level __getattr__ may raise anything.
            return self.ids[id(obj)], "package" if "__path__" in vars(obj) else "module"
        return self.ids[id(obj)], type(obj).__name__

    def ready(self) -> None:
        """Import the student's submission module and tell the tests side how it went."""
        from _grader_harness import protocol

        names = sorted(self._module_names())
        try:
            module = importlib.import_module("submission")
        except BaseException as exc:  # noqa: BLE001 - sys.exit() at import is the student's failure too
            self.send({"kind": "ready", "modules": names, "error": self.error_of(exc)})
            return
        self.send({"kind": "ready", "modules": names, "module": protocol.encode(module, [], self.handle_of)})

    def _module_names(self):
        for entry in os.listdir(self.work):
            path = os.path.join(self.work, entry)
            if entry.endswith(".py") and entry[:-3].isidentifier():
                yield entry[:-3]
            elif entry.isidentifier() and os.path.isfile(os.path.join(path, "__init__.py")):
                yield entry

    def serve(self) -> None:
        """Answer requests until the tests side hangs up."""
        from _grader_harness import protocol

        while True:
            try:
                frames = protocol.recv(self.conn, 2**62)  # from the trusted side: no limit
            except (protocol.Closed, OSError):
                return
            unpickler = _Unpickler(io.BytesIO(frames[0]), self.objects)
            try:
                message = unpickler.load()
                self.send(self.answer(message, unpickler.resolved))
            except StopIteration:
                self.send({"kind": "stop"})
            except BaseException as exc:  # noqa: BLE001 - SystemExit in a call only ends the call
                self.send({"kind": "error", "error": self.error_of(exc)})

    def answer(self, message: dict, resolved: set[int]) -> dict:
        op = message["op"]
        target = self.objects.get(message["id"])
        if op == "call":
            return self.call(target, message["args"], message["kwargs"], resolved)
        if op == "getattr":
            value = getattr(target, message["name"])
        elif op == "import":
            value = importlib.import_module(message["name"])
        elif op == "getitem":
            value = target[message["key"]]
        elif op == "setitem":
            target[message["key"]] = message["value"]
            value = None
        elif op == "len":
            value = len(target)
        elif op == "iter":
            value = iter(target)
        elif op == "next":
            value = next(target)
        elif op == "limits":
            self.max_bytes = int(message["max_bytes"])
            value = None
        elif op == "seed":
            value = _seed(message["seed"])
        else:
            raise ValueError(f"unknown request {op!r}")
        return {"kind": "value", "value": value}

    def call(self, function, args, kwargs, resolved: set[int]) -> dict:
        from _grader_harness import protocol

        arrays: list = []
        protocol.walk_arrays((args, kwargs), arrays.append, lambda obj: id(obj) in resolved)
        before = [_digest(array) for array in arrays]
        value = function(*args, **kwargs)
        # Only the arrays the student changed go back, so big read-only inputs cost nothing.
        mutated = [[i, array] for i, array in enumerate(arrays) if _digest(array) != before[i]]
        return {"kind": "value", "value": value, "mutated": mutated}

    def send(self, body: dict) -> None:
        """Encode the body's values as plain data (handles for the rest) and send it."""
        from _grader_harness import protocol

        if os.getpid() != self.pid:
            # A child that the student's code forked (a fork bomb, os.fork() without an exit) came back
            # here: a second writer would garble the connection, so it ends quietly.
            os._exit(0)
        buffers: list = []
        try:
            if "value" in body:
                body["value"] = self.encode(body["value"], buffers)
            if "mutated" in body:
                body["mutated"] = [
                    [i, protocol.encode(array, buffers, self.handle_of)] for i, array in body["mutated"]
                ]
            head = protocol.header(body)
            size = len(head) + sum(memoryview(b).nbytes for b in buffers)
            if size > self.max_bytes - 2**20:
                raise ResultTooLarge(
                    f"your code returned {size / 2**20:.0f} MiB of data to the tests; "
                    f"the limit is {self.max_bytes / 2**20:.0f} MiB"
                )
            if len(head) > (limit := protocol.header_limit(self.max_bytes)):
                raise ResultTooLarge(
                    f"your code returned {len(head) / 2**20:.0f} MiB of Python lists, dicts or numbers to "
                    f"the tests; the limit is {limit / 2**20:.0f} MiB (return arrays or tensors for more)"
                )
        except BaseException as exc:  # noqa: BLE001 - e.g. a __len__ that raises while being encoded
            body, buffers = {"kind": "error", "error": self.error_of(exc)}, []
            head = protocol.header(body)
        protocol.send(self.conn, [head, *buffers])

    def encode(self, value, buffers: list):
        from _grader_harness import protocol

        try:
            return protocol.encode(value, buffers, self.handle_of)
        except (protocol.TooDeep, RecursionError):
            del buffers[:]
            ident, type_name = self.handle_of(value)
            return {"t": "handle", "id": ident, "type": type_name}

    def error_of(self, exc: BaseException) -> dict:
        """An exception as plain data, with only the frames that are in the student's files."""
        from _grader_harness.errors import BUILTINS

        frames = []
        for frame in traceback.extract_tb(exc.__traceback__):
            name = self._relative(frame.filename)
            if name is not None:
                frames.append([name, frame.lineno or 0, frame.name, (frame.line or "").strip()])
        syntax = None
        if isinstance(exc, SyntaxError) and self._relative(exc.filename or "") is not None:
            syntax = [self._relative(exc.filename), exc.lineno or 0, str(exc.msg)]
        builtin = next(
            (c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins" and c.__name__ in BUILTINS),
            None,
        )
        try:
            message = str(exc)
        except BaseException:  # noqa: BLE001 - the student's __str__ is the student's code
            message = "<the exception's message could not be shown>"
        return {
            "type": type(exc).__name__,
            "builtin": builtin,
            "message": message[:2000],
            "frames": frames[-50:],
            "syntax": syntax,
        }

    def _relative(self, filename: str) -> str | None:
        path = os.path.abspath(filename)
        return os.path.relpath(path, self.work) if path.startswith(self.work + os.sep) else None


class ResultTooLarge(Exception):
    """A reply bigger than the tests side accepts."""


class _Unpickler(pickle.Unpickler):
    """Unpickles a request, turning handle references back into the student's objects."""

    def __init__(self, file, objects: dict):
        super().__init__(file)
        self.objects, self.resolved = objects, set()

    def persistent_load(self, pid):
        obj = self.objects[pid[1]]
        self.resolved.add(id(obj))
        return obj


def _digest(array) -> bytes:
    from _grader_harness import protocol

    return hashlib.blake2b(protocol.raw_bytes(array), digest_size=16).digest()


def _seed(seed: int) -> None:
    random.seed(seed)
    # Only libraries the student's code has imported: importing one here could run a student's numpy.py.
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def main(argv: list[str]) -> None:
    # Listen before any student code runs, and take only the first connection: the tests side's.
    server = socket.create_server((argv[1], int(argv[2])))
    conn, _ = server.accept()
    server.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    work = os.path.abspath(os.getcwd())
    sys.path.insert(0, work)
    side = Server(conn, work)
    side.ready()
    side.serve()
    # Threads the student started must not keep S alive after the tests side is done.
    os._exit(0)


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    _bootstrap()
    from _grader_harness import student_side

    student_side.main(sys.argv)

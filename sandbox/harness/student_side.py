"""Student side (S): import the student's code, run what the tests side asks, answer with plain data.

Run as `python3 -I student_side.py HOST PORT CONFIG` in the submission's folder; CONFIG is a JSON file
the worker writes: the reply size limit and, for a notebook, the line span of each cell. Nothing here
is trusted by the tests side: it checks every reply. This file only keeps an honest submission's
answers faithful, autograd included (see _grader_harness.mirror for the tensors both sides keep).
"""

import importlib
import io
import json
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

    def __init__(self, conn: socket.socket, work: str, config: dict):
        from _grader_harness.mirror import Tensors
        from _grader_harness.rng import Rng

        self.conn, self.work = conn, work
        self.objects: dict[int, object] = {}  # handle id -> the object, kept alive for the tests
        self.ids: dict[int, int] = {}  # id(object) -> handle id
        self.max_bytes = int(config.get("max_bytes", 64 * 2**20))
        self.cells = config.get("cells") or []
        # For `grader assignments check` only, on the reference solution: every array argument is spoiled
        # after each call, so that a test which reads its arguments after the call shows up.
        self.scramble = bool(config.get("scramble_args"))
        self.pid = os.getpid()
        self.tensors = Tensors()  # the student's tensors and modules that the tests side mirrors
        self.rng = Rng()  # the global random generators, shared with the tests side
        self.records: dict[int, tuple[list, list]] = {}  # a call's outputs and leaves, for backward
        self.inputs: list = []  # the tensors the current request brought, by index
        self.input_grads: list[bool] = []  # whether each required grad on the tests side

    def refer(self, obj, buffers: list) -> dict | None:
        """How the tests side refers to obj: a mirrored tensor or module, a handle; None: send its value."""
        from _grader_harness import protocol

        if self.tensors.is_tensor(obj) and protocol.is_array(obj):
            return self.tensors.claim(obj, buffers, self.inputs)
        if isinstance(obj, Remote):
            return {"t": "remote", "id": object.__getattribute__(obj, "_id")}
        if id(obj) not in self.ids:
            self.ids[id(obj)] = len(self.objects)
            self.objects[len(self.objects)] = obj
        ident = self.ids[id(obj)]
        if isinstance(obj, types.ModuleType):
            # vars(), not hasattr(): a student's module-level __getattr__ may raise anything.
            return {"t": "handle", "id": ident, "type": "package" if "__path__" in vars(obj) else "module"}
        if self.tensors.is_module(obj):
            return self.tensors.module_node(obj, ident, self.refer, buffers)
        return {"t": "handle", "id": ident, "type": type(obj).__name__[:200]}

    def ready(self) -> dict:
        """Import the student's submission module; the ready message that tells the tests side how it went."""
        if os.environ.get("SANDBOX_UNPACK_ERROR"):
            message = f"your upload's files could not be unpacked ({os.environ['SANDBOX_UNPACK_ERROR']})"
            error = {"type": "UnpackError", "builtin": None, "message": message, "frames": [], "syntax": None}
            return {"kind": "ready", "error": error}
        if not os.path.isfile(os.path.join(self.work, "submission.py")):
            return {"kind": "ready", "module": None}
        try:
            module, failed = self.import_submission()
        except BaseException as exc:  # noqa: BLE001 - sys.exit() at import is the student's failure too
            return {"kind": "ready", "error": self.error_of(exc)}
        body = {"kind": "ready", "module": self.refer(module, [])}
        body["cells"] = [[cell, self.error_of(exc)] for cell, exc in failed]
        return body

    def import_submission(self):
        """submission.py as a module: a notebook's cell by cell (past cells that raise), else imported."""
        if not self.cells:
            return importlib.import_module("submission"), []
        from _grader_harness.cells import load_notebook_module

        return load_notebook_module(os.path.join(self.work, "submission.py"), self.cells)

    def serve(self) -> None:
        """Answer requests until the tests side hangs up."""
        from _grader_harness import protocol

        while True:
            try:
                frames = protocol.recv(self.conn, 2**62)  # from the trusted side: no limit
            except (protocol.Closed, OSError):
                return
            self.handle(frames)

    def handle(self, frames: list, *, reply: bool = False):
        """Answer one request; with reply, return a call back's reply instead (which is not a request)."""
        self.inputs, self.input_grads = [], []
        unpickler = _Unpickler(io.BytesIO(frames[0]), self)
        try:
            message = unpickler.load()
            self.tensors.apply(message.get("sync", []))
            self.rng.apply(message.get("rng", {}))
            if reply and message.get("op") == "callback-reply":
                return message
            message["graph"] = pickle.loads(frames[1]) if len(frames) > 1 else None
            for record in message.get("release", []):
                self.records.pop(record, None)
            body = self.answer(message, unpickler.resolved)
        except StopIteration:
            body = {"kind": "stop"}
        except BaseException as exc:  # noqa: BLE001 - SystemExit in a call only ends the call
            body = {"kind": "error", "error": self.error_of(exc)}
        self.send(body)
        return None

    def callback(self, ident: int, op: str, value=None):
        """Ask the tests side to run op on one of its objects that the student's code was given (a loss
        function, an environment); requests the tests make meanwhile (into the student's code) are
        answered in between."""
        from _grader_harness import protocol
        from _grader_harness.errors import exception_class

        saved = self.inputs, self.input_grads
        self.send({"kind": "callback", "id": ident, "op": op, "value": value})
        try:
            while True:
                try:
                    frames = protocol.recv(self.conn, 2**62)
                except (protocol.Closed, OSError):
                    os._exit(0)  # the tests side is gone: nothing is waiting for this process
                reply = self.handle(frames, reply=True)
                if reply is not None:
                    break
        finally:
            self.inputs, self.input_grads = saved
        if "error" in reply:
            name, builtin, message = reply["error"]
            if name == "StopIteration":
                raise StopIteration
            raise exception_class(name, builtin)(message)
        return reply["value"]

    def answer(self, message: dict, resolved: set[int]) -> dict:
        op = message["op"]
        target = self.objects.get(message["id"])
        if op == "call":
            return self.call(target, message, resolved)
        if op == "backward":
            return {"kind": "value", "value": self.backward(message)}
        if op == "getattr":
            value = getattr(target, message["name"])
        elif op == "setattr":
            setattr(target, message["name"], message["value"])
            value = None
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
        elif op == "names":  # what `from module import *` takes when the module has no __all__
            value = [
                name for name in list(vars(target)) if isinstance(name, str) and not name.startswith("_")
            ]
        elif op == "seed":
            value = _seed(message["seed"])
        else:
            raise ValueError(f"unknown request {op!r}")
        return {"kind": "value", "value": value}

    def call(self, function, message: dict, resolved: set[int]) -> dict:
        from _grader_harness import protocol

        args, kwargs = message["args"], message["kwargs"]
        arrays: list = []
        protocol.walk_arrays((args, kwargs), arrays.append, lambda obj: id(obj) in resolved)
        before = [_digest(array) for array in arrays]
        grads_before = [_grad_digest(x) for x in self.inputs]
        torch = sys.modules.get("torch")
        if torch is not None and "grad" in message:
            with torch.set_grad_enabled(bool(message["grad"])):
                value = function(*args, **kwargs)
        else:
            value = function(*args, **kwargs)
        # Only the arrays the student changed go back, so big read-only inputs cost nothing.
        mutated = [[i, array] for i, array in enumerate(arrays) if _digest(array) != before[i]]
        body = {"kind": "value", "value": value, "mutated": mutated}
        changed = [
            [i, x.grad]
            for i, x in enumerate(self.inputs)
            if x is not None and _grad_digest(x) != grads_before[i]
        ]
        if changed:
            body["grads"] = changed
        if self.scramble and arrays:
            body["scramble"] = arrays
        if message.get("graph") is not None:
            # Tensors that carry a graph go back tagged: the tests side's backward asks for their gradients.
            leaves = [x for x, grad in zip(self.inputs, self.input_grads, strict=True) if grad]
            leaves += [self.tensors.tensor(tid) for tid in message["graph"]["tensors"]]
            body["record"] = (message["graph"]["id"], leaves)
        return body

    def backward(self, message: dict) -> list:
        """The gradients of a recorded call's leaves, given the gradient of one of its outputs."""
        torch = sys.modules["torch"]
        outputs, leaves = self.records[message["record"]]
        output = outputs[message["output"]]
        wanted = [i for i, leaf in enumerate(leaves) if leaf.requires_grad]
        grads = torch.autograd.grad(
            [output],
            [leaves[i] for i in wanted],
            grad_outputs=[message["grad"].to(output.device)],
            retain_graph=True,
            allow_unused=True,
        )
        result: list = [None] * len(leaves)
        for i, grad in zip(wanted, grads, strict=True):
            result[i] = grad
        return result

    def send(self, body: dict) -> None:
        """Encode the body's values as plain data (handles for the rest) and send it."""
        from _grader_harness import protocol

        if os.getpid() != self.pid:
            # A child that the student's code forked (a fork bomb, os.fork() without an exit) came back
            # here: a second writer would garble the connection, so it ends quietly.
            os._exit(0)
        buffers: list = []
        record = body.pop("record", None)
        try:
            outputs: list = []
            if "value" in body:
                tag = None
                if record is not None:
                    tag = self._tagger(outputs)
                body["value"] = self.encode(body["value"], buffers, tag)
                if outputs:
                    self.records[record[0]] = (outputs, record[1])
            if scramble := body.pop("scramble", None):
                # The value is already encoded; its buffers may be views of the arrays about to be spoiled.
                buffers[:] = [bytes(memoryview(buffer).cast("B")) for buffer in buffers]
                for array in scramble:
                    _spoil(array)
                body["mutated"] = [[i, array] for i, array in enumerate(scramble)]
            if "grads" in body:
                body["grads"] = [
                    [
                        i,
                        None
                        if grad is None or not protocol.is_array(grad)
                        else protocol.array_node(grad, buffers),
                    ]
                    for i, grad in body["grads"]
                ]
            if "mutated" in body:
                body["mutated"] = [[i, protocol.array_node(array, buffers)] for i, array in body["mutated"]]
            changed = self.tensors.changed(self.refer, buffers)
            if changed:
                body["changed"] = changed
            if states := self.rng.changed():
                body["rng"] = protocol.encode(states, buffers, self.refer)
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

    def _tagger(self, outputs: list):
        def tag(tensor):
            if tensor.requires_grad and tensor.grad_fn is not None:
                outputs.append(tensor)
                return len(outputs) - 1
            return None

        return tag

    def encode(self, value, buffers: list, tag=None):
        from _grader_harness import protocol

        mark = len(buffers)
        try:
            return protocol.encode(value, buffers, self.refer, tag=tag)
        except (protocol.TooDeep, RecursionError):
            del buffers[mark:]
            ident = self.ids.setdefault(id(value), len(self.objects))
            self.objects[ident] = value
            return {"t": "handle", "id": ident, "type": type(value).__name__[:200]}

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


class Remote:
    """Stands in for one of the tests' objects (a function, an environment) given to the student's code:
    calls, attribute reads, iteration, len() and indexing are done by the tests side."""

    __slots__ = ("_server", "_id")

    def __init__(self, server: Server, ident: int):
        object.__setattr__(self, "_server", server)
        object.__setattr__(self, "_id", ident)

    def _ask(self, op: str, value=None):
        return object.__getattribute__(self, "_server").callback(
            object.__getattribute__(self, "_id"), op, value
        )

    def __call__(self, *args, **kwargs):
        return self._ask("call", [list(args), kwargs])

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._ask("getattr", name)

    def __getitem__(self, key):
        return self._ask("getitem", key)

    def __len__(self) -> int:
        return self._ask("len")

    def __iter__(self):
        iterator = self._ask("iter")
        return iterator if isinstance(iterator, Remote) else iter(iterator)

    def __next__(self):
        return self._ask("next")

    def __repr__(self) -> str:
        return "<an object of the tests>"


class ResultTooLarge(Exception):
    """A reply bigger than the tests side accepts."""


class _Unpickler(pickle.Unpickler):
    """Unpickles a request: handle references become the student's objects, mirrored tensors the
    student's own tensors, and the tests' tensors fresh leaves (requiring grad where the tests' did)."""

    def __init__(self, file, server: Server):
        super().__init__(file)
        self.server, self.resolved = server, set()

    def persistent_load(self, pid):
        from _grader_harness.mirror import unportable

        kind = pid[0]
        if kind == "handle":
            obj = self.server.objects[pid[1]]
            self.resolved.add(id(obj))  # the student's own objects: not walked for changed arrays
        elif kind == "tensor":
            obj = self.server.tensors.tensor(pid[1])
        elif kind == "remote":
            obj = Remote(self.server, pid[1])
        else:  # ("input", index, tensor, requires_grad, in_graph, grad): one of the tests' own tensors
            _, index, obj, requires_grad, in_graph, grad = pid
            obj, grad = unportable(obj), None if grad is None else unportable(grad)
            if requires_grad:
                obj.requires_grad_(True)
                obj.grad = grad
            while len(self.server.inputs) <= index:
                self.server.inputs.append(None)
                self.server.input_grads.append(False)
            self.server.inputs[index], self.server.input_grads[index] = obj, bool(in_graph)
        return obj


def _digest(array) -> bytes:
    from _grader_harness import protocol

    return protocol.blake2b(protocol.raw_bytes(array), digest_size=16).digest()


def _grad_digest(tensor) -> bytes | None:
    grad = None if tensor is None else tensor.grad
    return None if grad is None else _digest(grad)


def _spoil(array) -> None:
    """Fill an array with values no honest test expects: NaN, or -7777 for integers, or flipped bools."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(array, torch.Tensor):
        with torch.no_grad():
            if array.dtype == torch.bool:
                array.logical_not_()
            else:
                array.fill_(float("nan") if array.is_floating_point() or array.is_complex() else -7777)
        return
    if array.dtype.kind == "b":
        array[...] = ~array
    else:
        array[...] = float("nan") if array.dtype.kind in "fc" else -7777


def _seed(seed: int) -> None:
    random.seed(seed)
    # Only libraries the student's code has imported: importing one here could run a student's numpy.py.
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def main(argv: list[str]) -> None:
    from _grader_harness import torch_startup, warm

    torch_startup.install()
    if warm.pooled():  # started ahead of its submission: the libraries now, then wait for the files
        warm.preload()
        warm.receive(student=True)
    # Listen before any student code runs, and take only the first connection: the tests side's. The
    # tests side imports its own libraries while this side imports the submission.
    server = socket.create_server((argv[1], int(argv[2])))
    with open(argv[3], encoding="utf-8") as file:
        config = json.load(file)
    conn, _ = server.accept()
    server.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    work = os.path.abspath(os.getcwd())
    sys.path.insert(0, work)
    side = Server(conn, work, config)
    ready = side.ready()  # the student's code may patch send() while it is imported: look it up after
    side.send(ready)
    side.serve()
    # Threads the student started must not keep S alive after the tests side is done.
    os._exit(0)


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    _bootstrap()
    from _grader_harness import student_side

    student_side.main(sys.argv)

"""The connection from the tests side (H) to the student side (S): requests, replies, restarts.

A request is pickled (H is trusted; S unpickling it is S's own risk), with the student's objects and
mirrored tensors as references and the tests' own tensors as portable copies; a reply is decoded
strictly as plain data (protocol.Decoder). See proxy.py for how the tests see the student's objects.
"""

import io
import os
import pickle
import socket
import sys
import time

from . import mirror, protocol, rng
from .errors import (
    EXITS,
    Cells,
    DeadlineExceeded,
    HarnessStop,
    SubmissionCrashed,
    Tampering,
    TestTimeout,
    check_error,
    describe,
    exception_class,
)
from .pickling import Pickler
from .proxy import Handle, Missing

CRASHED = "your code's process ended during this test (it called os._exit, was killed, or ran out of memory)"
TAMPERING = "tampering: malformed reply from the submission process"
# Flags for the instructor; `during` is "while being imported", "during tests/test_x.py::test_y", ...
ENDED = "tampering: the submission's process ended {during}"
EXITED = "tampering: the submission {what} {during}"
LOST = (
    "this {what} was made by your code before its process was restarted (after a crash or a timeout "
    "in an earlier test), so it no longer exists"
)
RESTARTABLE = (SubmissionCrashed, TestTimeout)
CALLBACKS = frozenset(
    {"call", "getattr", "getitem", "len", "iter", "next"}
)  # what S may do with the tests' objects
_NOTHING = object()


class Channel:
    """The connection to S: a request, then its reply, within the test's and the run's time.

    After a crash or a test's timeout, restart() asks the worker for a new S (a fresh process that
    imports the submission again); objects of the old one are gone, except those reached by name
    from a module (`submission.relu`), which are looked up again.
    """

    def __init__(
        self,
        connect,
        *,
        deadline: float,
        deadline_s: float,
        max_bytes: int,
        cells: Cells,
        on_flag,
    ):
        self.connect = connect  # connect(generation, give_up) -> a socket to that S
        self.sock: socket.socket | None = None
        self.deadline, self.deadline_s = deadline, deadline_s
        self.test_deadline: float | None = None  # this test's own limit, when it has one
        self.test_limit_s = 0.0
        self.max_bytes, self.cells, self.on_flag = max_bytes, cells, on_flag
        self.generation = 0
        self.handles: dict[int, object] = {}
        self.mirrors = mirror.Mirrors()
        self.rng = rng.Rng()  # the global random generators, shared with S
        self.released: list[int] = []  # recorded calls S may forget
        self.remote_objects: dict[int, object] = {}  # the tests' objects passed to the student's code
        self.remote_ids: dict[int, int] = {}
        self.root = os.getcwd()  # the tests' folder: what is defined under it, S cannot import
        self.failed_cells: list[tuple[int, str]] = []  # notebook cells that raised, with their messages
        self.mutated = False  # whether the student's code changed an argument in place (this test)
        self.records = 0
        self.stopped: HarnessStop | None = None
        self.collecting = False  # while pytest imports the test modules
        self.during = "while being imported"  # what H is doing, for flags; the plugin keeps it current
        self._inputs: list = []  # the tests' tensors the current request sent, by index
        self._record: mirror.Record | None = None

    # ---- the connection ---------------------------------------------------------------------------

    def open(self, give_up_s: float) -> None:
        """Connect to the current generation's S; OSError if it never listens."""
        give_up = min(self.deadline, time.monotonic() + give_up_s)
        self.sock = self.connect(self.generation, give_up)

    def restart(self, announce) -> tuple[object, str, list]:
        """A new S for the next test: announce(generation) asks the worker for it; then its ready()."""
        if self.sock is not None:
            self.sock.close()
        self.generation += 1
        self.handles, self.mirrors, self.released, self.rng = {}, mirror.Mirrors(), [], rng.Rng()
        self.remote_objects, self.remote_ids = {}, {}
        self.stopped = None
        announce(self.generation)
        try:
            self.open(30.0)
        except OSError:
            raise self.stop(SubmissionCrashed("your code's process could not be started again")) from None
        return self.ready()

    def ready(self) -> tuple[object, str, list]:
        """Wait for S to import the student's code: (module handle or None, import error, failed cells)."""
        try:
            body, decoder = self.receive()
            if body.get("kind") != "ready":
                raise protocol.ProtocolViolation("no ready message")
            if "error" in body:
                error = self._error(body["error"])
                return None, describe(error, self.cells, during="while being imported"), []
            cells = self.failed_cells = []
            for entry in body.get("cells") or []:
                if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int:
                    raise protocol.ProtocolViolation("a malformed list of failed cells")
                error = self._error(entry[1])
                cells.append((entry[0], describe(error, self.cells, during="while the notebook ran")))
            if body.get("module") is None:
                return None, "", cells
            module = decoder.decode(body["module"])
            if not isinstance(module, Handle) or object.__getattribute__(module, "_type") != "module":
                raise protocol.ProtocolViolation("the student's module is not a module")
            object.__setattr__(module, "_path", ("submission",))
            return module, "", cells
        except protocol.ProtocolViolation as exc:
            return None, str(self.stop(Tampering(f"{TAMPERING}: {exc}"))), []
        except HarnessStop as exc:
            return None, str(exc).replace("during this test", "while being imported"), []

    def _error(self, error) -> dict:
        try:
            error = check_error(error)
        except ValueError as exc:
            raise protocol.ProtocolViolation(str(exc)) from None
        if error["type"] in EXITS:
            self.on_flag(EXITED.format(what=EXITS[error["type"]], during=self.during))
        return error

    def stop(self, error: HarnessStop) -> HarnessStop:
        """Mark the connection unusable (until a restart, for crashes and a test's timeout)."""
        if self.stopped is None:
            self.stopped = error
            if isinstance(error, Tampering):
                self.on_flag(TAMPERING)
            elif isinstance(error, SubmissionCrashed):
                # os._exit, a signal, a closed socket, or memory (grader.sandbox drops it after an OOM kill).
                self.on_flag(ENDED.format(during=self.during))
        return self.stopped

    def violation(self, what: str) -> HarnessStop:
        return self.stop(Tampering(f"{TAMPERING}: {what}"))

    def _timeout(self) -> HarnessStop:
        if self.test_deadline is not None and self.test_deadline < self.deadline:
            return self.stop(TestTimeout(f"timed out: this test has {self.test_limit_s:g} s"))
        return self.stop(DeadlineExceeded(f"timed out: the whole submission has {self.deadline_s:g} s"))

    def _until(self) -> float:
        return min(self.deadline, self.test_deadline or self.deadline)

    def receive(self) -> tuple[dict, protocol.Decoder]:
        """One reply from S: its header and a decoder for the values in it."""
        __tracebackhide__ = True
        left = self._until() - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError()
            self.sock.settimeout(left)
            max_header = protocol.header_limit(self.max_bytes)
            frames = protocol.recv(self.sock, self.max_bytes, max_header=max_header)
            return protocol.parse_header(frames[0]), protocol.Decoder(frames[1:], self)
        except TimeoutError:
            raise self._timeout() from None
        except (protocol.Closed, OSError):
            raise self.stop(SubmissionCrashed(CRASHED)) from None
        except protocol.ProtocolViolation as exc:
            raise self.violation(str(exc)) from None

    # ---- requests ---------------------------------------------------------------------------------

    def request(self, message: dict, *, arrays: list = (), graph: bool = False):
        """Send a request; return its value, or raise the student's exception or a HarnessStop."""
        __tracebackhide__ = True
        if self.stopped is not None:
            raise self.stopped
        torch = sys.modules.get("torch")
        if self.mirrors.tensors:
            message["sync"] = self.mirrors.dirty()
        if states := self.rng.changed():
            message["rng"] = states
        if self.released:
            message["release"], self.released = self.released, []
        if graph and torch is not None:
            message["grad"] = torch.is_grad_enabled()
        buffer = io.BytesIO()
        pickler = Pickler(buffer, self)
        pickler.dump(message)
        frames = [buffer.getbuffer()]
        self._inputs, self._record = pickler.inputs, None
        if graph and torch is not None and torch.is_grad_enabled():
            tids = self.mirrors.leaves()
            leaves = [x for x, grad in zip(pickler.inputs, pickler.grads, strict=True) if grad]
            leaves += [self.mirrors.tensors[tid] for tid in tids]
            if leaves:
                # S keeps the call's graph under this number, for the backward of its result.
                self.records += 1
                self._record = mirror.Record(self, self.records, leaves)
                frames.append(pickle.dumps({"id": self.records, "tensors": tids}))
        self._send(frames)
        try:
            body, decoder = self.receive()
            while body.get("kind") == "callback":  # the student's code calls what the test gave it
                self._callback(body, decoder)
                body, decoder = self.receive()
            return self._answer(body, decoder, arrays, op=message["op"])
        except protocol.ProtocolViolation as exc:
            raise self.violation(str(exc)) from None
        finally:
            self._inputs, self._record = [], None

    def _send(self, frames: list) -> None:
        try:
            self.sock.settimeout(max(0.001, self._until() - time.monotonic()))
            protocol.send(self.sock, frames)
        except TimeoutError:
            raise self._timeout() from None
        except OSError:
            raise self.stop(SubmissionCrashed(CRASHED)) from None

    def _callback(self, body: dict, decoder: protocol.Decoder) -> None:
        """Run one call of the student's code into an object the test passed it (a loss function, an
        environment), and send back its value or exception. What S may do is what a test's own code
        would let the student's code do: call, iterate, index, and read attributes that do not start
        with an underscore (so no __globals__ or __code__ of the test's functions)."""
        __tracebackhide__ = True
        saved = self._inputs, self._record
        ident = body.get("id")
        target = self.remote_objects.get(ident, _NOTHING) if type(ident) is int else _NOTHING
        op, payload = body.get("op"), decoder.decode(body.get("value"))
        self._changed(body, decoder)
        if target is _NOTHING or op not in CALLBACKS:
            raise protocol.ProtocolViolation("a call back to an object the tests never passed")
        reply: dict = {"op": "callback-reply"}
        try:
            if op == "call":
                if type(payload) is not list or len(payload) != 2 or type(payload[1]) is not dict:
                    raise protocol.ProtocolViolation("a malformed call back")
                reply["value"] = target(*payload[0], **{str(k): v for k, v in payload[1].items()})
            elif op == "getattr":
                if type(payload) is not str or payload.startswith("_"):
                    raise AttributeError(
                        f"your code may not read {str(payload)[:50]!r} of the tests' objects"
                    )
                reply["value"] = getattr(target, payload)
            elif op == "getitem":
                reply["value"] = target[payload]
            elif op == "len":
                reply["value"] = len(target)
            elif op == "iter":
                reply["value"] = iter(target)
            else:
                reply["value"] = next(target)
        except (HarnessStop, protocol.ProtocolViolation):
            raise
        except Exception as exc:  # noqa: BLE001 - the test's code raised: the student's code gets it
            builtin = next((c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"), None)
            reply = {"op": "callback-reply", "error": [type(exc).__name__, builtin, str(exc)[:2000]]}
        finally:
            self._inputs, self._record = saved
        if self.mirrors.tensors:
            reply["sync"] = self.mirrors.dirty()
        if states := self.rng.changed():
            reply["rng"] = states
        buffer = io.BytesIO()
        try:
            Pickler(buffer, self).dump(reply)
        except Exception as exc:  # noqa: BLE001 - a value that cannot reach S: the student's code gets why
            error = f"the tests' value cannot be passed to your code: {exc}"[:2000]
            buffer = io.BytesIO()
            Pickler(buffer, self).dump({"op": "callback-reply", "error": ["TypeError", "TypeError", error]})
        self._send([buffer.getbuffer()])

    def _changed(self, body: dict, decoder: protocol.Decoder) -> None:
        if "rng" in body:
            try:
                self.rng.apply(rng.check_rng(decoder.decode(body["rng"])))
            except (ValueError, TypeError, OverflowError, RuntimeError) as exc:  # a state no generator takes
                raise protocol.ProtocolViolation(str(exc)) from None
        changed = body.get("changed", [])
        if type(changed) is not list:
            raise protocol.ProtocolViolation("a malformed list of changed tensors")
        for node in changed:
            if type(node) is not dict or node.get("t") not in ("mirrored", "module"):
                raise protocol.ProtocolViolation("a malformed changed tensor")
            decoder.decode(node)

    def _answer(self, body: dict, decoder: protocol.Decoder, arrays: list, *, op: str):
        __tracebackhide__ = True
        self._changed(body, decoder)  # first: the value may refer to what changed
        kind = body.get("kind")
        if kind == "value":
            value = decoder.decode(body.get("value"))
            if _copy_back(arrays, body.get("mutated", []), decoder):
                self.mutated = True
            self._grads_back(body.get("grads", []), decoder)
            return value
        if kind == "stop" and op == "next":
            raise StopIteration
        if kind == "error":
            error = self._error(body.get("error"))
            raise exception_class(error["type"], error["builtin"])(
                describe(error, self.cells, during="during this call")
            )
        raise protocol.ProtocolViolation("a reply of an unknown kind")

    def _grads_back(self, grads, decoder: protocol.Decoder) -> None:
        """Set the .grad of the test's tensors whose gradient the student's code changed (zero_grad, say)."""
        if type(grads) is not list:
            raise protocol.ProtocolViolation("a malformed list of changed gradients")
        for entry in grads:
            if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int:
                raise protocol.ProtocolViolation("a malformed changed gradient")
            original = self.input(entry[0])
            grad = None if entry[1] is None else decoder.decode(entry[1])
            if grad is not None and getattr(grad, "shape", None) != original.shape:
                raise protocol.ProtocolViolation("a gradient whose shape is not its tensor's")
            if original.is_leaf:
                original.grad = (
                    None if grad is None else grad.to(device=original.device, dtype=original.dtype)
                )

    def call(self, ident: int, args: tuple, kwargs: dict):
        """Call S's object number ident; tensors in the result carry gradients back to the tests' leaves."""
        __tracebackhide__ = True
        arrays: list = []
        protocol.walk_arrays((args, kwargs), arrays.append, lambda obj: isinstance(obj, Handle | Missing))
        return self.request(
            {"op": "call", "id": ident, "args": args, "kwargs": kwargs}, arrays=arrays, graph=True
        )

    def backward(self, record: mirror.Record, output: int, grad) -> list:
        """The gradients of a recorded call's leaves, given the gradient of its output number `output`."""
        if record.generation != self.generation:
            raise exception_class("RuntimeError", "RuntimeError")(LOST.format(what="result"))
        message = {
            "op": "backward",
            "id": None,
            "record": record.ident,
            "output": output,
            "grad": grad.detach(),
        }
        return self.request(message)

    def check_generation(self, generation: int, what: str) -> None:
        if generation != self.generation:
            raise exception_class("RuntimeError", "RuntimeError")(LOST.format(what=f"{what} object"))

    # ---- what the decoder asks for ----------------------------------------------------------------

    def handle(self, ident: int, type_name: str) -> "Handle":
        """The one Handle for S's object number ident."""
        handle = self.handles.get(ident)
        if handle is None:
            handle = self.handles[ident] = Handle(
                self, ident, "module" if type_name == "package" else type_name
            )
            object.__setattr__(handle, "_package", type_name == "package")
        elif not isinstance(handle, Handle):
            raise protocol.ProtocolViolation("a handle to a module that is mirrored")
        return handle

    def mirrored(self, node: dict, decoder: protocol.Decoder):
        return self.mirrors.tensor(node, decoder)

    def module(self, node: dict, decoder: protocol.Decoder):
        ident, type_name = node.get("id"), node.get("type")
        if type(ident) is not int or type(type_name) is not str or "torch" not in sys.modules:
            raise protocol.ProtocolViolation("a malformed module")
        module = self.handles.get(ident)
        if module is None:
            module = self.handles[ident] = mirror.module_class()(self, ident, type_name[: protocol.MAX_NAME])
        elif not isinstance(module, mirror.module_class()):
            raise protocol.ProtocolViolation("a module that was not a module before")
        module._grader_update(node, decoder)
        return module

    def remote(self, ident: int):
        """One of the tests' objects that S refers to (it was passed to the student's code)."""
        target = self.remote_objects.get(ident, _NOTHING)
        if target is _NOTHING:
            raise protocol.ProtocolViolation("a reference to an object the tests never passed")
        return target

    def remote_id(self, obj) -> int:
        """The number by which S refers to one of the tests' objects."""
        ident = self.remote_ids.get(id(obj))
        if ident is None:
            ident = self.remote_ids[id(obj)] = len(self.remote_objects)
            self.remote_objects[ident] = obj  # kept alive: S may call it later
        return ident

    def input(self, index: int):
        if not 0 <= index < len(self._inputs):
            raise protocol.ProtocolViolation("a reference to an argument that was not passed")
        return self._inputs[index]

    def graph(self, output: int, tensor):
        if self._record is None or output < 0:
            return tensor  # nothing on this side needs its gradient
        link = mirror.Link(self._record, output, tensor)
        return mirror.boundary().apply(link, *self._record.leaves)

    def resolve(self, handle: Handle) -> None:
        """Find a handle's object again, by its path, in a restarted S."""
        path = object.__getattribute__(handle, "_path")
        if path is None:
            raise exception_class("RuntimeError", "RuntimeError")(
                LOST.format(what=f"{object.__getattribute__(handle, '_type')} object")
            )
        value = self.request({"op": "import", "id": None, "name": path[0]})
        for name in path[1:]:
            if not isinstance(value, Handle):
                break
            value = self.request({"op": "getattr", "id": object.__getattribute__(value, "_id"), "name": name})
        if not isinstance(value, Handle):
            raise exception_class("AttributeError", "AttributeError")(
                f"AttributeError: {'.'.join(path)} is no longer what it was before your process restarted"
            )
        ident = object.__getattribute__(value, "_id")
        object.__setattr__(handle, "_id", ident)
        object.__setattr__(handle, "_generation", self.generation)
        self.handles[ident] = handle


def _copy_back(arrays: list, mutated, decoder: protocol.Decoder) -> bool:
    """Copy the post-call contents of arrays the student changed in place into the test's originals;
    whether there were any."""
    if type(mutated) is not list:
        raise protocol.ProtocolViolation("a malformed list of changed arguments")
    for entry in mutated:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int:
            raise protocol.ProtocolViolation("a malformed changed argument")
        if not 0 <= entry[0] < len(arrays):
            raise protocol.ProtocolViolation("a changed argument that does not exist")
        original, new = arrays[entry[0]], decoder.decode(entry[1])
        if type(new).__module__ == "numpy" and getattr(original, "shape", None) == new.shape:
            if original.dtype == new.dtype and original.flags.writeable:
                sys.modules["numpy"].copyto(original, new)
        elif type(new).__module__ == "torch" and getattr(original, "shape", None) == new.shape:
            if original.dtype == new.dtype:
                with sys.modules["torch"].no_grad():
                    original.copy_(new)
    return bool(mutated)

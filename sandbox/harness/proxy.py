"""The student's modules as seen by the tests: proxies that forward a few operations to S over RPC."""

import importlib.abc
import importlib.machinery
import io
import pickle
import socket
import sys
import time

from . import protocol
from .errors import (
    EXITS,
    Cells,
    DeadlineExceeded,
    HarnessStop,
    SubmissionCrashed,
    SubmissionError,
    Tampering,
    check_error,
    describe,
    exception_class,
)

CRASHED = "your code's process ended during this test (it called os._exit, was killed, or ran out of memory)"
TAMPERING = "tampering: malformed reply from the submission process"
# Flags for the instructor; `during` is "while being imported", "during tests/test_x.py::test_y", ...
ENDED = "tampering: the submission's process ended {during}"
EXITED = "tampering: the submission {what} {during}"
# Attribute names forwarded although they are dunders; every other dunder is answered here, so that
# numpy's __array_interface__ or pytest's __test__ probes never reach (and are never answered by) S.
FORWARDED_DUNDERS = frozenset({"__name__", "__qualname__", "__version__", "__all__"})


class Channel:
    """The one connection to S: a request, then its reply, within what is left of the deadline."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        deadline: float,
        deadline_s: float,
        max_bytes: int,
        cells: Cells,
        on_flag,
    ):
        self.sock, self.deadline, self.deadline_s = sock, deadline, deadline_s
        self.max_bytes, self.cells, self.on_flag = max_bytes, cells, on_flag
        self.handles: dict[int, Handle] = {}
        self.stopped: HarnessStop | None = None
        self.collecting = False  # while pytest imports the test modules
        self.during = "while being imported"  # what H is doing, for flags; the plugin keeps it current

    def stop(self, error: HarnessStop) -> HarnessStop:
        """Mark the connection unusable for good; every later request raises the same error."""
        if self.stopped is None:
            self.stopped = error
            if isinstance(error, Tampering):
                self.on_flag(TAMPERING)
            elif isinstance(error, SubmissionCrashed):
                # os._exit, a signal, a closed socket, or memory (grader.sandbox drops it after an OOM kill).
                self.on_flag(ENDED.format(during=self.during))
        return self.stopped

    def receive(self) -> tuple[dict, protocol.Decoder]:
        """One reply from S: its header and a decoder for the values in it."""
        __tracebackhide__ = True
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError()
            self.sock.settimeout(left)
            max_header = protocol.header_limit(self.max_bytes)
            frames = protocol.recv(self.sock, self.max_bytes, max_header=max_header)
            return protocol.parse_header(frames[0]), protocol.Decoder(frames[1:], self.handle)
        except TimeoutError:
            raise self.stop(
                DeadlineExceeded(f"timed out: the whole submission has {self.deadline_s:g} s")
            ) from None
        except (protocol.Closed, OSError):
            raise self.stop(SubmissionCrashed(CRASHED)) from None
        except protocol.ProtocolViolation as exc:
            raise self.stop(Tampering(f"{TAMPERING}: {exc}")) from None

    def request(self, message: dict, *, arrays: list = ()):
        """Send a request; return its value, or raise the student's exception or a HarnessStop."""
        __tracebackhide__ = True
        if self.stopped is not None:
            raise self.stopped
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=5).dump(message)
        try:
            self.sock.settimeout(max(0.001, self.deadline - time.monotonic()))
            protocol.send(self.sock, [buffer.getbuffer()])
        except TimeoutError:
            raise self.stop(
                DeadlineExceeded(f"timed out: the whole submission has {self.deadline_s:g} s")
            ) from None
        except OSError:
            raise self.stop(SubmissionCrashed(CRASHED)) from None
        body, decoder = self.receive()
        try:
            return self._answer(body, decoder, arrays)
        except protocol.ProtocolViolation as exc:
            raise self.stop(Tampering(f"{TAMPERING}: {exc}")) from None

    def _answer(self, body: dict, decoder: protocol.Decoder, arrays: list):
        __tracebackhide__ = True
        kind = body.get("kind")
        if kind == "value":
            value = decoder.decode(body.get("value"))
            _copy_back(arrays, body.get("mutated", []), decoder)
            return value
        if kind == "stop":
            raise StopIteration
        if kind == "error":
            try:
                error = check_error(body.get("error"))
            except ValueError as exc:
                raise protocol.ProtocolViolation(str(exc)) from None
            if error["type"] in EXITS:
                self.on_flag(EXITED.format(what=EXITS[error["type"]], during=self.during))
            raise exception_class(error["type"], error["builtin"])(
                describe(error, self.cells, during="during this call")
            )
        raise protocol.ProtocolViolation("a reply of an unknown kind")

    def handle(self, ident: int, type_name: str) -> "Handle":
        """The one Handle for S's object number ident."""
        if ident not in self.handles:
            if type_name in ("module", "package"):
                self.handles[ident] = ModuleProxy(self, ident, package=type_name == "package")
            else:
                self.handles[ident] = Handle(self, ident, type_name)
        return self.handles[ident]


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        # Student objects go back as references, resolved in S to the objects themselves.
        if isinstance(obj, Handle):
            return ("handle", object.__getattribute__(obj, "_id"))
        if isinstance(obj, Missing):
            obj()
        return None


def _copy_back(arrays: list, mutated, decoder: protocol.Decoder) -> None:
    """Copy the post-call contents of arrays the student changed in place into the test's originals."""
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


def _refused(self, *args):
    raise TypeError(
        f"your function returned a {object.__getattribute__(self, '_type')} object where a value was expected"
    )


class Handle:
    """A reference to an object that lives in S; only getattr, call, iter, next, len and items reach it."""

    __slots__ = ("_channel", "_id", "_type")

    def __init__(self, channel: Channel, ident: int, type_name: str):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_id", ident)
        object.__setattr__(self, "_type", type_name)

    def _request(self, op: str, **fields):
        __tracebackhide__ = True
        return object.__getattribute__(self, "_channel").request(
            {"op": op, "id": object.__getattribute__(self, "_id"), **fields}
        )

    def __getattr__(self, name: str):
        __tracebackhide__ = True
        if name.startswith("__") and name.endswith("__") and name not in FORWARDED_DUNDERS:
            raise AttributeError(name)
        return self._request("getattr", name=name)

    def __setattr__(self, name, value):
        raise AttributeError("tests cannot set attributes on the student's objects")

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        arrays: list = []
        protocol.walk_arrays((args, kwargs), arrays.append, lambda obj: isinstance(obj, Handle | Missing))
        channel = object.__getattribute__(self, "_channel")
        return channel.request(
            {"op": "call", "id": object.__getattribute__(self, "_id"), "args": args, "kwargs": kwargs},
            arrays=arrays,
        )

    def __iter__(self):
        __tracebackhide__ = True
        iterator = self._request("iter")
        if not isinstance(iterator, Handle):
            raise TypeError("iter() of the student's object did not return an iterator")
        return iterator

    def __next__(self):
        __tracebackhide__ = True
        return self._request("next")

    def __len__(self) -> int:
        __tracebackhide__ = True
        size = self._request("len")
        if type(size) is not int or size < 0:
            raise TypeError("len() of the student's object is not a non-negative int")
        return size

    def __getitem__(self, key):
        __tracebackhide__ = True
        return self._request("getitem", key=key)

    def __setitem__(self, key, value):
        __tracebackhide__ = True
        self._request("setitem", key=key, value=value)

    # Identity, not the student's __eq__: a lying object can never compare equal to an expected value.
    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    __hash__ = object.__hash__
    # Conversions to a value are refused rather than asked of S, where the student's code would answer.
    __bool__ = __float__ = __int__ = __index__ = __complex__ = __array__ = _refused

    def __repr__(self) -> str:
        return f"<student's {object.__getattribute__(self, '_type')} object>"

    __str__ = __repr__

    def __reduce_ex__(self, protocol_version):
        raise TypeError("a student's object can only be passed to the student's own functions")


class ModuleProxy(Handle):
    """A student module; a package also answers __path__ so that its submodules can be imported."""

    __slots__ = ("_package",)

    def __init__(self, channel: Channel, ident: int, package: bool):
        super().__init__(channel, ident, "module")
        object.__setattr__(self, "_package", package)

    def __getattr__(self, name: str):
        __tracebackhide__ = True
        if name == "__path__" and object.__getattribute__(self, "_package"):
            return []
        try:
            return super().__getattr__(name)
        except (AttributeError, SubmissionError, HarnessStop) as exc:
            channel = object.__getattribute__(self, "_channel")
            # `from submission import softmax` at the top of a test file: a missing function (or one the
            # student's code fails to give, or a crash) fails the tests that use it, instead of making the
            # whole file a collection error, which would be reported as ours.
            if channel.collecting and not name.startswith("_"):
                return Missing(name, None if isinstance(exc, AttributeError) else exc)
            raise


class Missing:
    """Stands in for a name the student's module lacks, or failed to give while the tests were collected
    (error), raising the AttributeError (or that error again) when used."""

    def __init__(self, name: str, error: BaseException | None = None):
        self.name, self.error = name, error

    def _fail(self, *args, **kwargs):
        __tracebackhide__ = True
        if self.error is not None:
            raise type(self.error)(*self.error.args)
        raise exception_class("AttributeError", "AttributeError")(
            f"AttributeError: your submission has no attribute {self.name!r}"
        )

    def __getattr__(self, name: str):
        __tracebackhide__ = True
        if self.error is not None and name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # the import system's probes of a module that failed to import
        if self.error is not None:
            return Missing(name, self.error)  # `from model import Net` of a failed module still collects
        self._fail()

    __call__ = __iter__ = __len__ = __getitem__ = __bool__ = __float__ = __array__ = _fail

    def __repr__(self) -> str:
        return f"<missing {self.name}>"


class Inert:
    """What the student's module looks like when it failed to import: tests are never run against it."""

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args, **kwargs):
        return self

    __path__: list = []


class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the student's other modules (`from model import Net`) as proxies, last on sys.meta_path."""

    def __init__(self, channel: Channel | None, names: set[str]):
        self.channel, self.names = channel, names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        if self.channel is None:
            return Inert()
        try:
            return self.channel.request({"op": "import", "id": None, "name": spec.name})
        except (SubmissionError, HarnessStop) as exc:
            if not self.channel.collecting:
                raise
            return Missing(spec.name, exc)  # the tests that use the module fail, not the collection

    def exec_module(self, module):
        pass


def install(channel: Channel | None, module, names: set[str]) -> None:
    """Make `submission` and the student's other modules importable in the tests."""
    sys.modules["submission"] = module
    sys.meta_path.append(Finder(channel, names - {"submission"}))

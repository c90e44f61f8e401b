"""The student's modules as seen by the tests: proxies that forward a few operations to S over RPC
(channel.Channel); what they answer is plain data, a handle, or a mirror (mirror.py)."""

import importlib.machinery
import sys
import types

from .errors import HarnessStop, SubmissionError, exception_class

# Attribute names forwarded although they are dunders; every other dunder is answered here, so that
# numpy's __array_interface__ or pytest's __test__ probes never reach (and are never answered by) S.
FORWARDED_DUNDERS = frozenset({"__name__", "__qualname__", "__version__", "__all__"})


def live_id(handle: "Handle") -> int:
    """The handle's number in the current S, looking it up again by name after a restart."""
    channel = object.__getattribute__(handle, "_channel")
    if object.__getattribute__(handle, "_generation") != channel.generation:
        channel.resolve(handle)
    return object.__getattribute__(handle, "_id")


def _refused(self, *args):
    raise TypeError(
        f"your function returned a {object.__getattribute__(self, '_type')} object where a value was expected"
    )


class Handle:
    """A reference to an object that lives in S; only getattr, call, iter, next, len and items reach it.

    `_path` names how it was reached from a module (("submission", "relu")), so that it can be found
    again in a restarted S; objects made by calls have none.
    """

    __slots__ = ("_channel", "_id", "_type", "_path", "_generation", "_package")

    def __init__(self, channel, ident: int, type_name: str):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_id", ident)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_path", None)
        object.__setattr__(self, "_generation", channel.generation)
        object.__setattr__(self, "_package", False)

    def _request(self, op: str, **fields):
        __tracebackhide__ = True
        channel = object.__getattribute__(self, "_channel")
        return channel.request({"op": op, "id": live_id(self), **fields})

    def __getattr__(self, name: str):
        __tracebackhide__ = True
        if name.startswith("__") and name.endswith("__") and name not in FORWARDED_DUNDERS:
            raise AttributeError(name)
        value = self._request("getattr", name=name)
        path = object.__getattribute__(self, "_path")
        if path is not None and isinstance(value, Handle) and object.__getattribute__(value, "_path") is None:
            object.__setattr__(value, "_path", (*path, name))
        return value

    def __setattr__(self, name, value):
        raise AttributeError("tests cannot set attributes on the student's objects")

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        return object.__getattribute__(self, "_channel").call(live_id(self), args, kwargs)

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


class ModuleProxy(types.ModuleType):
    """A student module in the tests' sys.modules: a real module object (so that the import system,
    `import pkg.sub` and `from pkg.sub import f` work) whose missing attributes are asked of S."""

    def __init__(self, name: str, handle: "Handle", channel):
        super().__init__(name)
        package = object.__getattribute__(handle, "_package")
        object.__setattr__(handle, "_path", (name,))
        self.__dict__["_grader_handle"] = handle
        self.__dict__["_grader_channel"] = channel
        self.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
        if package:
            self.__path__ = []

    def __getattr__(self, name: str):
        __tracebackhide__ = True
        if name.startswith("__") and name.endswith("__") and name not in FORWARDED_DUNDERS:
            raise AttributeError(name)
        handle, channel = self.__dict__["_grader_handle"], self.__dict__["_grader_channel"]
        if name == "__all__":
            return self._grader_all(handle)
        try:
            try:
                return getattr(handle, name)
            except AttributeError:
                if self.__name__ != "submission" or not channel.failed_cells:
                    raise
                raise _missing_after_cells(name, channel.failed_cells) from None
        except (AttributeError, SubmissionError, HarnessStop) as exc:
            # `from submission import softmax` at the top of a test file: a missing function (or one the
            # student's code fails to give, or a crash) fails that file's tests, as in one process, where
            # the file would not import; as a collection error it would be reported as ours.
            if channel.collecting and not name.startswith("_"):
                plain = isinstance(exc, AttributeError) and not channel.failed_cells
                missing = Missing(name, None if plain else exc)
                COLLECTION.failed(f"cannot import name {name!r} from {self.__name__!r}: {missing.reason()}")
                return missing
            raise

    def _grader_all(self, handle: Handle) -> list[str]:
        """The names `from submission import *` takes: the module's __all__, else its public names, as
        Python would read them from the module's own namespace."""
        try:
            names = handle.__all__
        except AttributeError:
            names = handle._request("names")
        if type(names) not in (list, tuple) or not all(type(n) is str and n.isidentifier() for n in names):
            raise TypeError(f"__all__ of the student's module {self.__name__} is not a list of names")
        return list(names)

    def __repr__(self) -> str:
        return f"<student's module {self.__name__!r}>"


def _missing_after_cells(name: str, failed: list[tuple[int, str]]) -> BaseException:
    cells = "; ".join(f"cell {cell} raised an error ({message.splitlines()[0]})" for cell, message in failed)
    return exception_class("AttributeError", "AttributeError")(
        f"AttributeError: your submission has no attribute {name!r}: {cells}, so what it defines is missing"
    )


class Collection:
    """Which test files (or folders, for a conftest) could not have imported the student's code in one
    process: pytest collects them with stand-ins, and the plugin fails each of their tests."""

    def __init__(self):
        self.node: str | None = None  # what pytest is collecting now
        self.broken: dict[str, str] = {}  # collector node id -> why its import would fail

    def failed(self, message: str) -> None:
        if self.node is not None:
            self.broken.setdefault(self.node, message)

    def why(self, nodeid: str) -> str | None:
        """Why the test's file would not import, or None."""
        for node, message in self.broken.items():
            if not node or nodeid == node or nodeid.startswith((node + "::", node + "/")):
                return message
        return None


COLLECTION = Collection()


class Missing:
    """Stands in for a name the student's module lacks, or failed to give while the tests were collected
    (error), raising the AttributeError (or that error again) when used."""

    def __init__(self, name: str, error: BaseException | None = None):
        self.name, self.error = name, error

    def _fail(self, *args, **kwargs):
        __tracebackhide__ = True
        if self.error is not None:
            raise type(self.error)(*self.error.args)
        raise exception_class("AttributeError", "AttributeError")(self.reason())

    def reason(self) -> str:
        if self.error is not None:
            return str(self.error)
        return f"AttributeError: your submission has no attribute {self.name!r}"

    def __getattr__(self, name: str):
        __tracebackhide__ = True
        if self.error is not None and name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # the import system's probes of a module that failed to import
        if self.error is not None:
            COLLECTION.failed(f"cannot import name {name!r} from {self.name!r}: {self.reason()}")
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


def no_submission_module() -> Missing:
    """What `import submission` gives when the upload has no submission.py."""
    error = exception_class("ModuleNotFoundError", "ModuleNotFoundError")(
        "ModuleNotFoundError: your upload has no submission.py, which these tests import"
    )
    return Missing("submission", error)


class Finder:
    """Imports the student's other modules (`from model import Net`, `import pkg.sub`) as proxies, last
    on sys.meta_path, so that an installed package of the same name always wins. The names are the
    worker's list of the upload's files, not anything S says. A finder and loader by its methods:
    importlib.abc would cost the student side 17 ms of importing importlib.resources."""

    def __init__(self, channel, names: set[str]):
        self.channel, self.names = channel, names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        if self.channel is None:
            return Inert()
        try:
            handle = self.channel.request({"op": "import", "id": None, "name": spec.name})
            if not isinstance(handle, Handle) or object.__getattribute__(handle, "_type") != "module":
                raise self.channel.violation(f"the student's module {spec.name} is not a module")
        except (SubmissionError, HarnessStop) as exc:
            if not self.channel.collecting:
                raise
            COLLECTION.failed(f"cannot import {spec.name}: {exc}")
            return Missing(spec.name, exc)  # the file's tests fail, not the collection
        return ModuleProxy(spec.name, handle, self.channel)

    def exec_module(self, module):
        pass


def install(channel, module, names: set[str]) -> None:
    """Make `submission` and the student's other modules importable in the tests."""
    sys.modules["submission"] = module
    sys.meta_path.append(Finder(channel, names - {"submission"}))

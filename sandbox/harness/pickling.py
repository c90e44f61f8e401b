"""How H pickles a request for S (H is trusted; S unpickling it is S's own risk).

The student's objects and mirrored tensors go as references, the tests' own tensors as portable copies
(numbered, with their requires_grad and .grad), and what the tests define themselves (functions,
lambdas, classes and their objects) as references that S calls back through.
"""

import os
import pickle
import sys
import types

from . import mirror
from .proxy import Handle, Missing, ModuleProxy, live_id

_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_PLAIN = frozenset(
    {int, float, complex, bool, str, bytes, bytearray, type(None), list, tuple, dict, set, frozenset}
)


class Pickler(pickle.Pickler):
    """Pickles a request: the student's objects and mirrored tensors go as references, the tests' own
    tensors as detached copies with their requires_grad (arguments are numbered in `inputs`)."""

    def __init__(self, file, channel):
        super().__init__(file, protocol=5)
        self.channel = channel
        self.inputs: list = []
        self.grads: list[bool] = []
        self.index: dict[int, int] = {}
        self.copies: set[int] = set()
        self.keep: list = []
        self.local_types: dict[object, bool] = {}
        torch = sys.modules.get("torch")
        self.torch, self.grad = torch, torch is not None and torch.is_grad_enabled()

    def _local(self, obj) -> bool:
        """Whether obj is defined by the tests (or inside a function): S cannot import its definition."""
        if isinstance(obj, Handle | ModuleProxy | Missing | types.ModuleType):
            return False
        if isinstance(obj, types.MethodType):
            return self._local(obj.__self__) or self._local(obj.__func__)
        target = obj if isinstance(obj, types.FunctionType | type) else type(obj)
        known = self.local_types.get(target)
        if known is None:
            qualname = getattr(target, "__qualname__", "")
            module = sys.modules.get(getattr(target, "__module__", None) or "")
            path = getattr(module, "__file__", None) or ""
            known = (
                "<locals>" in qualname
                or "<lambda>" in qualname
                or module is None
                or module.__name__ == "__main__"
                or os.path.abspath(path).startswith(self.channel.root + os.sep)
            )
            self.local_types[target] = known
        return known

    def reducer_override(self, obj):
        # A generator (net.parameters()) or a dict view cannot be pickled; the student's code gets an
        # iterator over, or a list of, the same items, which it can use the same way.
        if isinstance(obj, types.GeneratorType):
            return iter, (list(obj),)
        if type(obj) in _VIEWS:
            return list, (list(obj),)
        return NotImplemented

    def persistent_id(self, obj):
        if isinstance(obj, Handle):
            return ("handle", live_id(obj))
        if isinstance(obj, ModuleProxy):
            return ("handle", live_id(obj.__dict__["_grader_handle"]))
        if isinstance(obj, Missing):
            obj()
        if type(obj) in _PLAIN:
            return None
        torch = self.torch
        if torch is None or not isinstance(obj, torch.Tensor) or id(obj) in self.copies:
            if torch is not None and isinstance(obj, mirror.module_class()):
                channel, ident = obj._grader_live()
                return ("handle", ident)
            if id(obj) not in self.copies and self._local(obj):
                # The test's own function, class or object (a lambda, a loss function, an environment):
                # S could not unpickle it, so the student's code gets a stand-in that calls back here.
                return ("remote", self.channel.remote_id(obj))
            return None
        tid = self.channel.mirrors.tids.get(id(obj))
        if tid is not None:
            return ("tensor", tid)
        if isinstance(obj, torch.nn.Parameter):
            return None  # the tests' own parameters (of their own modules) go by value
        index = self.index.get(id(obj))
        if index is None:
            index = self.index[id(obj)] = len(self.inputs)
            self.inputs.append(obj)
            self.grads.append(bool(self.grad and obj.requires_grad))
        copy = mirror.portable(obj)
        grad = mirror.portable(obj.grad) if obj.is_leaf and obj.grad is not None else None
        for made in (copy, grad):
            self.copies.add(id(made if not isinstance(made, tuple) else made[1]))
            self.keep.append(made)  # so that no other object takes its id while pickling
        return ("input", index, copy, bool(obj.requires_grad), self.grads[index], grad)

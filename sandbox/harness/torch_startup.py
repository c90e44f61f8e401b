"""Three once-per-process imports of torch that change nothing a test can observe, skipped on both sides.

Measured in the sandbox image (torch 2.13, CPU, quiet machine), per process:
- the first optimizer imports torch._dynamo (1.7 s of CPU): torch wraps Optimizer.__init__, step and
  the like in `torch._compile._disable_dynamo`, which imports dynamo on the first call to switch it off
  for that call, and each step (`_use_grad_for_differentiable`) imports it to call `graph_break()`,
  which does nothing outside a compiled function. Until something imports torch._dynamo (torch.compile
  does) nothing can be compiled or have switched dynamo on, so both are no-ops: the wrappers here skip
  them until then, and run torch's own after. The step's wrapper is rewritten, so it is replaced only
  in the torch whose source it was checked against (USE_GRAD_SOURCE).
- the first `torch.testing.assert_close` imports torch.distributed.tensor (0.9 s) to ask whether
  either side is a DTensor. No object is a DTensor unless that module was imported, so until then the
  question is answered without importing it.
- the first `torch._check*` (torch.nn.functional's argument checks call them: multi-head attention
  with a key padding mask, for one) imports torch.fx.experimental.symbolic_shapes, and sympy with it
  (0.6 s), to ask `expect_true(cond)`, which for the plain `True` is `True`. A passing check with a
  plain bool returns at once; any other condition goes to torch's own function.

An honest submission gets the same values, the same failures and the same messages; only sooner (and
a test that raced a timeout in one process has more room here). Each patch applies to the torch module
as it is loaded, before anything is decorated with it, and is left out when the name it replaces is
not there (another torch version): then torch runs as it is.
"""

import functools
import importlib.machinery
import sys

# importlib.abc, inspect and hashlib cost a process that never imports torch 50 ms; torch imports them.
try:
    from importlib._abc import Loader
except ImportError:  # a Python older than 3.10 in an instructor's image
    from importlib.abc import Loader

DYNAMO = "torch._dynamo"
DTENSOR = "torch.distributed.tensor"
# sha256 of the source of torch.optim.optimizer._use_grad_for_differentiable in torch 2.13.0.
USE_GRAD_SOURCE = "d0f1dfc940581f41ed5ca7ac151775cec6b36ff504e4ae3ce20747a37558ab38"


def _lazy_disable_dynamo(module) -> None:
    original = getattr(module, "_disable_dynamo", None)
    if original is None:
        return

    def _disable_dynamo(fn=None, recursive=True):
        if fn is None:  # used as @_disable_dynamo(recursive=False)
            return functools.partial(_disable_dynamo, recursive=recursive)
        torch_wrapper = original(fn, recursive)

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            if DYNAMO not in sys.modules:
                return fn(*args, **kwargs)
            return torch_wrapper(*args, **kwargs)

        return inner

    _disable_dynamo.__doc__ = original.__doc__
    module._disable_dynamo = _disable_dynamo


def _lazy_dtensor_check(module) -> None:
    original = getattr(module, "_unwrap_dtensor_for_comparison", None)
    if original is None:
        return

    @functools.wraps(original)
    def _unwrap_dtensor_for_comparison(actual, expected):
        if DTENSOR not in sys.modules:
            return actual, expected
        return original(actual, expected)

    module._unwrap_dtensor_for_comparison = _unwrap_dtensor_for_comparison


def _lazy_graph_breaks(module) -> None:
    original = getattr(module, "_use_grad_for_differentiable", None)
    if original is None:
        return
    import hashlib
    import inspect

    if hashlib.sha256(inspect.getsource(original).encode()).hexdigest() != USE_GRAD_SOURCE:
        return
    torch = sys.modules["torch"]

    def _use_grad_for_differentiable(func):
        torch_wrapper = original(func)

        def _use_grad(*args, **kwargs):
            if DYNAMO in sys.modules:
                return torch_wrapper(*args, **kwargs)
            # torch's body without its two graph_break() calls
            prev_grad = torch.is_grad_enabled()
            try:
                torch.set_grad_enabled(args[0].defaults["differentiable"])
                return func(*args, **kwargs)
            finally:
                torch.set_grad_enabled(prev_grad)

        functools.update_wrapper(_use_grad, func)
        return _use_grad

    module._use_grad_for_differentiable = _use_grad_for_differentiable


def _quick_passing_checks(module) -> None:
    original = getattr(module, "_check_with", None)
    if original is None:
        return

    @functools.wraps(original)
    def _check_with(error_type, cond, message):
        if cond is True:  # torch: expect_true(True) is True, and then it returns
            return None
        return original(error_type, cond, message)

    module._check_with = _check_with  # torch._check and the like look it up in this module's globals


PATCHES = {
    "torch": _quick_passing_checks,
    "torch._compile": _lazy_disable_dynamo,
    "torch.optim.optimizer": _lazy_graph_breaks,
    "torch.testing._comparison": _lazy_dtensor_check,
}


class _ThenPatch(Loader):
    """The module's own loader, then the patch; anything else is asked of the loader itself."""

    def __init__(self, loader, patch):
        self._loader, self._patch = loader, patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            self._patch(module)
        except Exception:  # noqa: BLE001, S110 - a torch we do not know: leave it as it is
            pass

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder:  # a meta path finder by its method
    def find_spec(self, name, path, target=None):
        patch = PATCHES.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenPatch(spec.loader, patch)
        return spec


def install() -> None:
    """Patch torch as it is imported (call before anything imports torch); once per process."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())

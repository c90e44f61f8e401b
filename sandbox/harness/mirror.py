"""Autograd across the boundary: the student's modules and leaf tensors, kept on both sides.

A student's torch.nn.Module (and any leaf tensor that requires grad) has a *mirror* on the tests side
(H): a genuine nn.Module whose parameters and buffers are H's own tensors, so that torch.optim,
state_dict, train()/eval() and `p.grad` work in the tests as they would in one process. Both sides
number these tensors alike (tid). Before each request H sends the values and gradients it changed;
after it, S sends back the ones the student's code changed (a digest on each side tells).

A call whose result carries the student's graph is recorded in S; on H each such tensor is the output
of a Boundary function whose inputs are H's leaves (the tests' tensors that require grad and the
mirrored tensors). Its backward asks S for the gradients of those leaves (torch.autograd.grad), so
`loss.backward()` in a test reaches both the test's tensors and the student's parameters.
Nothing from S is unpickled here: values arrive as plain data (protocol.Decoder).
"""

import sys

from . import protocol

# ---- both sides ------------------------------------------------------------------------------------


def digest(tensor) -> bytes:
    """What a tensor is now, for telling whether it changed: value, gradient and requires_grad."""
    hasher = protocol.blake2b(digest_size=16)
    hasher.update(f"{tensor.dtype}|{tuple(tensor.shape)}|{tensor.device}|{tensor.requires_grad}|".encode())
    hasher.update(protocol.raw_bytes(tensor))
    grad = tensor.grad
    if grad is None or not protocol.is_array(grad):
        hasher.update(b"|none")
    else:
        hasher.update(f"|{grad.dtype}|{tuple(grad.shape)}|".encode())
        hasher.update(protocol.raw_bytes(grad))
    return hasher.digest()


def portable(tensor):
    """A tensor as H pickles it for S: as a numpy array where numpy has its dtype, which pickles many
    times faster than a tensor does (torch's own pickling goes through its serialization machinery)."""
    tensor = tensor.detach()
    if tensor.dtype in _NUMPY_DTYPES():
        return ("np", tensor.cpu().numpy(), str(tensor.device))
    return tensor


def unportable(value):
    """The tensor portable() made (S's side)."""
    if type(value) is tuple and len(value) == 3 and value[0] == "np":
        import torch  # as unpickling a tensor would: the student's code may not have imported it

        tensor = torch.from_numpy(value[1])
        return tensor if value[2] == "cpu" else tensor.to(value[2])
    return value


def _NUMPY_DTYPES() -> frozenset:
    if "numpy_dtypes" not in _classes:
        torch = sys.modules["torch"]
        names = "bool uint8 int8 int16 int32 int64 float16 float32 float64 complex64 complex128"
        _classes["numpy_dtypes"] = frozenset(getattr(torch, name) for name in names.split())
    return _classes["numpy_dtypes"]


def _set(tensor, value, grad, requires_grad: bool) -> None:
    """Make tensor hold value (replacing its data if the shape, dtype or device differ) and grad."""
    torch = sys.modules["torch"]
    with torch.no_grad():
        if value.shape == tensor.shape and value.dtype == tensor.dtype and value.device == tensor.device:
            tensor.copy_(value)
        else:
            tensor.data = value
    if tensor.is_leaf and (tensor.is_floating_point() or tensor.is_complex() or not requires_grad):
        tensor.requires_grad_(requires_grad)
    tensor.grad = None if grad is None else grad.to(device=tensor.device, dtype=tensor.dtype)


# ---- S: the student's side -------------------------------------------------------------------------


def _signature(module) -> tuple:
    return (
        tuple((name, id(p)) for name, p in module._parameters.items()),
        tuple((name, id(b)) for name, b in module._buffers.items()),
        tuple((name, id(m)) for name, m in module._modules.items()),
        bool(module.training),
    )


class Tensors:
    """S's record of the tensors and modules the tests side mirrors."""

    def __init__(self):
        self.by_tid: dict[int, object] = {}
        self.tids: dict[int, int] = {}  # id(tensor) -> tid; by_tid keeps the tensor alive
        self.synced: dict[int, bytes] = {}  # tid -> digest of what the tests side has
        self.modules: dict[int, tuple[object, tuple]] = {}  # handle id -> (module, signature sent)

    @staticmethod
    def is_tensor(obj) -> bool:
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(obj, torch.Tensor)

    @staticmethod
    def is_module(obj) -> bool:
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(obj, torch.nn.Module)

    def tensor(self, tid: int):
        return self.by_tid[tid]

    def claim(self, tensor, buffers: list, inputs: list) -> dict | None:
        """A reference for a tensor that has an identity on H (an argument, a mirrored one), else None."""
        for index, given in enumerate(inputs):
            if given is tensor:
                return {"t": "input", "i": index}
        if id(tensor) in self.tids or (tensor.is_leaf and tensor.requires_grad):
            return self.node(tensor, buffers)
        return None

    def node(self, tensor, buffers: list) -> dict:
        """A mirrored tensor: its number, and its value when H does not have it yet."""
        tid = self.tids.get(id(tensor))
        if tid is None:
            tid = self.tids[id(tensor)] = len(self.by_tid)
            self.by_tid[tid] = tensor
        node = {"t": "mirrored", "tid": tid}
        now = digest(tensor)
        if self.synced.get(tid) != now:
            torch = sys.modules["torch"]
            grad = tensor.grad
            node["v"] = protocol.array_node(tensor.detach(), buffers)
            node["rg"] = bool(tensor.requires_grad)
            node["param"] = isinstance(tensor, torch.nn.Parameter)
            node["grad"] = (
                protocol.array_node(grad, buffers) if grad is not None and protocol.is_array(grad) else None
            )
            self.synced[tid] = now
        return node

    def module_node(self, module, ident: int, refer, buffers: list) -> dict:
        """A module as H mirrors it: its parameters, buffers and children, by name."""
        node = {
            "t": "module",
            "id": ident,
            "type": type(module).__name__[:200],
            "training": bool(module.training),
            "params": [
                [name, None if p is None else self.node(p, buffers)] for name, p in module._parameters.items()
            ],
            "buffers": [
                [
                    name,
                    None if b is None else self.node(b, buffers),
                    name not in module._non_persistent_buffers_set,
                ]
                for name, b in module._buffers.items()
            ],
            "children": [
                [name, None if m is None else refer(m, buffers)] for name, m in module._modules.items()
            ],
        }
        self.modules[ident] = (module, _signature(module))
        return node

    def changed(self, refer, buffers: list) -> list:
        """Nodes for the mirrored tensors and modules the student's code changed since H last saw them."""
        nodes = [
            self.node(t, buffers) for tid, t in list(self.by_tid.items()) if digest(t) != self.synced[tid]
        ]
        for ident, (module, signature) in list(self.modules.items()):
            if _signature(module) != signature:
                nodes.append(self.module_node(module, ident, refer, buffers))
        return nodes

    def apply(self, entries: list) -> None:
        """Take H's changes: [tid, value, grad, requires_grad] each."""
        for tid, value, grad, requires_grad in entries:
            tensor = self.by_tid[tid]
            _set(tensor, unportable(value), None if grad is None else unportable(grad), requires_grad)
            self.synced[tid] = digest(tensor)


# ---- H: the tests' side ----------------------------------------------------------------------------


class Mirrors:
    """H's mirrored tensors (its own, which tests and optimizers use) for one student process."""

    def __init__(self):
        self.tensors: dict[int, object] = {}
        self.tids: dict[int, int] = {}
        self.synced: dict[int, bytes] = {}

    def dirty(self) -> list:
        """[tid, value, grad, requires_grad] for each mirrored tensor tests changed since the last sync."""
        entries = []
        for tid, tensor in self.tensors.items():
            now = digest(tensor)
            if now != self.synced[tid]:
                grad = tensor.grad
                entries.append(
                    [tid, portable(tensor), None if grad is None else portable(grad), tensor.requires_grad]
                )
                self.synced[tid] = now
        return entries

    def leaves(self) -> list[int]:
        """The mirrored tensors a call's result may need gradients for."""
        return [tid for tid, tensor in self.tensors.items() if tensor.requires_grad]

    def tensor(self, node: dict, decoder) -> object:
        """The mirrored tensor a node names, created or updated from its value when it has one."""
        torch = sys.modules.get("torch")
        tid = node["tid"]
        if torch is None or type(tid) is not int:
            raise protocol.ProtocolViolation("a malformed mirrored tensor")
        tensor = self.tensors.get(tid)
        if "v" not in node:
            if tensor is None:
                raise protocol.ProtocolViolation("a reference to a tensor the tests never received")
            return tensor
        value = decoder.decode(node["v"])
        grad = None if node.get("grad") is None else decoder.decode(node["grad"])
        if not isinstance(value, torch.Tensor) or not (grad is None or isinstance(grad, torch.Tensor)):
            raise protocol.ProtocolViolation("a mirrored tensor that is not a tensor")
        if grad is not None and grad.shape != value.shape:
            raise protocol.ProtocolViolation("a gradient whose shape is not its tensor's")
        requires_grad = node.get("rg") is True and (value.is_floating_point() or value.is_complex())
        if tensor is None:
            if node.get("param") is True:
                tensor = torch.nn.Parameter(value, requires_grad=requires_grad)
            else:
                tensor = value.requires_grad_(requires_grad)
            self.tensors[tid], self.tids[id(tensor)] = tensor, tid
        _set(tensor, value, grad, requires_grad)
        self.synced[tid] = digest(tensor)
        return tensor


_classes: dict[str, type] = {}


def module_class() -> type:
    """StudentModule, made on first use so that tests that never touch torch never import it."""
    if "StudentModule" not in _classes:
        _classes["StudentModule"] = _make_module_class()
    return _classes["StudentModule"]


def boundary() -> type:
    """The autograd function whose backward asks S, made on first use like module_class."""
    if "Boundary" not in _classes:
        torch = sys.modules["torch"]

        class Boundary(torch.autograd.Function):
            @staticmethod
            def forward(ctx, link, *leaves):
                ctx.link = link
                value, link.value = link.value, None
                return value

            @staticmethod
            def backward(ctx, grad):
                return (None, *ctx.link.backward(grad))

        _classes["Boundary"] = Boundary
    return _classes["Boundary"]


class Record:
    """One call of the student's code whose result carries a graph; S forgets it when this goes."""

    def __init__(self, channel, ident: int, leaves: list):
        self.channel, self.ident, self.leaves = channel, ident, leaves
        self.generation = channel.generation

    def __del__(self):
        self.channel.released.append(self.ident)


class Link:
    """What one output's backward needs: its record and which output it is."""

    def __init__(self, record: Record, output: int, value):
        self.record, self.output, self.value = record, output, value

    def backward(self, grad) -> list:
        record = self.record
        grads = record.channel.backward(record, self.output, grad)
        if type(grads) is not list or len(grads) != len(record.leaves):
            raise record.channel.violation("gradients that do not match the call's inputs")
        result = []
        for leaf, value in zip(record.leaves, grads, strict=True):
            if value is not None and (not hasattr(value, "shape") or value.shape != leaf.shape):
                raise record.channel.violation("a gradient whose shape is not its input's")
            result.append(None if value is None else value.to(device=leaf.device, dtype=leaf.dtype))
        return result


def _make_module_class() -> type:
    torch = sys.modules["torch"]

    class StudentModule(torch.nn.Module):
        """The tests' view of one of the student's nn.Modules: its tensors are H's, its code runs in S."""

        def __init__(self, channel, ident: int, type_name: str):
            super().__init__()
            self.__dict__["_grader"] = (channel, ident, type_name, channel.generation)

        def _grader_live(self):
            channel, ident, _, generation = self.__dict__["_grader"]
            channel.check_generation(generation, self.__dict__["_grader"][2])
            return channel, ident

        def _grader_update(self, node: dict, decoder) -> None:
            """Take the parameters, buffers, children and mode S says the module has now."""
            params, buffers, persistent, children = {}, {}, set(), {}
            for name, sub in _pairs(node, "params", 2):
                value = None if sub is None else decoder.decode(sub)
                if value is not None and not isinstance(value, torch.nn.Parameter):
                    raise protocol.ProtocolViolation("a module parameter that is not a parameter")
                params[name] = value
            for name, sub, keep in _pairs(node, "buffers", 3):
                value = None if sub is None else decoder.decode(sub)
                if value is not None and not isinstance(value, torch.Tensor):
                    raise protocol.ProtocolViolation("a module buffer that is not a tensor")
                buffers[name] = value
                if keep is True:
                    persistent.add(name)
            for name, sub in _pairs(node, "children", 2):
                value = None if sub is None else decoder.decode(sub)
                if value is not None and not isinstance(value, StudentModule):
                    raise protocol.ProtocolViolation("a child module that is not a module")
                children[name] = value
            state = self.__dict__
            state["_parameters"], state["_buffers"], state["_modules"] = params, buffers, children
            state["_non_persistent_buffers_set"] = set(buffers) - persistent
            state["training"] = node.get("training") is True

        def forward(self, *args, **kwargs):
            channel, ident = self._grader_live()
            return channel.call(ident, args, kwargs)

        def __getattr__(self, name: str):
            try:
                return super().__getattr__(name)
            except AttributeError:
                if name.startswith("__") or name.startswith("_grader") or "_grader" not in self.__dict__:
                    raise
            channel, ident = self._grader_live()
            return channel.request({"op": "getattr", "id": ident, "name": name})

        def __setattr__(self, name: str, value) -> None:
            plain = not isinstance(value, torch.Tensor | torch.nn.Module)
            if "_grader" in self.__dict__ and plain and not name.startswith("_") and name != "training":
                channel, ident = self._grader_live()  # a hyperparameter of the student's module lives in S
                channel.request({"op": "setattr", "id": ident, "name": name, "value": value})
                return
            super().__setattr__(name, value)

        def train(self, mode: bool = True):
            channel, ident = self._grader_live()
            method = channel.request({"op": "getattr", "id": ident, "name": "train"})
            method(mode)  # the student's train() may do more than set flags
            for module in self.modules():
                module.__dict__["training"] = mode
            return self

        def __getitem__(self, key):
            channel, ident = self._grader_live()
            return channel.request({"op": "getitem", "id": ident, "key": key})

        def __len__(self) -> int:
            channel, ident = self._grader_live()
            size = channel.request({"op": "len", "id": ident})
            if type(size) is not int or size < 0:
                raise TypeError("len() of the student's module is not a non-negative int")
            return size

        def __iter__(self):
            channel, ident = self._grader_live()
            return iter(channel.request({"op": "iter", "id": ident}))

        def __bool__(self) -> bool:
            return True

        def extra_repr(self) -> str:
            return f"the student's {self.__dict__['_grader'][2]}"

        def __reduce_ex__(self, protocol_version):
            raise TypeError("a student's module can only be passed to the student's own functions")

    return StudentModule


def _pairs(node: dict, key: str, size: int) -> list:
    items = node.get(key)
    if type(items) is not list or not all(
        type(item) is list
        and len(item) == size
        and type(item[0]) is str
        and 0 < len(item[0]) <= 200
        and "." not in item[0]
        for item in items
    ):
        raise protocol.ProtocolViolation(f"a module with malformed {key}")
    return items

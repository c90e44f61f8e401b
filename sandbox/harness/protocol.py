"""Framing and the plain-data encoding of what crosses between the tests side (H) and student side (S).

A message is a count of frames, then each frame as a length and its bytes. H -> S: one frame, a
pickle (H is trusted; S unpickling it is S's own risk). S -> H: a JSON header, then raw buffers
(arrays, tensors, bytes) that the header points at by index. Nothing from S is ever unpickled.
"""

import json
import math
import re
import socket
import struct
import sys

# hashlib's own blake2b, for mirror and the student side, without hashlib loading OpenSSL first (the
# random module does the same for sha512).
try:
    from _blake2 import blake2b  # noqa: F401
except ImportError:
    from hashlib import blake2b  # noqa: F401

COUNT = struct.Struct("!I")
LENGTH = struct.Struct("!Q")
MAX_FRAMES = 100_000
MAX_DEPTH = 100
MAX_STR = 16 * 2**20
MAX_NAME = 200
MAX_DIMS = 64
# Numeric kinds only: no object, string, void or structured dtypes, whose contents are not plain data.
NUMPY_DTYPE = re.compile(r"^[<>|=][biufc]\d{1,2}$")
TORCH_DTYPES = frozenset(
    "bool uint8 int8 int16 int32 int64 uint16 uint32 uint64 float16 bfloat16 float32 float64 "
    "complex64 complex128".split()
)
KEY_TYPES = (str, int, float, bool, type(None), tuple)


class ProtocolViolation(Exception):
    """S sent something that is not a well-formed reply."""


class Closed(Exception):
    """The other side closed the connection."""


SMALL = 2**16  # frames up to this size are copied into one buffer: one system call for a whole request


def send(sock: socket.socket, frames: list) -> None:
    """Send frames (bytes-like objects) as one message."""
    pending = bytearray(COUNT.pack(len(frames)))
    for frame in frames:
        view = memoryview(frame).cast("B")
        pending += LENGTH.pack(view.nbytes)
        if view.nbytes <= SMALL:
            pending += view
        else:
            sock.sendall(pending)
            sock.sendall(view)
            pending = bytearray()
    if pending:
        sock.sendall(pending)


def header_limit(max_bytes: int) -> int:
    """The most bytes a reply's JSON header may have: parsed, JSON takes up to ~30 times its size in memory
    (`[{},{},...]`), while arrays and bytes take their own size, so the header gets a much smaller share."""
    return max_bytes // 16


def recv(sock: socket.socket, max_bytes: int, *, max_header: int | None = None) -> list[bytearray]:
    """Receive one message; over max_bytes (max_header for the first frame) or MAX_FRAMES is a violation."""
    (count,) = COUNT.unpack(_exactly(sock, COUNT.size))
    if count == 0 or count > MAX_FRAMES:
        raise ProtocolViolation(f"a message of {count} frames")
    frames, left = [], max_bytes
    for _ in range(count):
        (size,) = LENGTH.unpack(_exactly(sock, LENGTH.size))
        if not frames and max_header is not None and size > max_header:
            raise ProtocolViolation(f"a reply header larger than the limit of {max_header} bytes")
        if size > left:
            raise ProtocolViolation(f"a reply larger than the limit of {max_bytes} bytes")
        left -= size
        frames.append(_exactly(sock, size))
    return frames


def _exactly(sock: socket.socket, size: int) -> bytearray:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise Closed()
        got += n
    return data


# ---- S side: any object -> JSON-able node plus buffers -------------------------------------------


class TooDeep(Exception):
    """The value nests deeper than MAX_DEPTH (or refers to itself)."""


def encode(obj, buffers: list, refer, depth: int = 0, tag=None):
    """A JSON-able node for obj. refer(obj, buffers) is asked first about each tensor (a node, or None to
    send its value) and names every other non-plain object (a handle); tag(tensor) may number a tensor
    that carries an autograd graph (its node gets "g")."""
    if depth > MAX_DEPTH:
        raise TooDeep()
    kind = type(obj)
    # Exact types first: a subclass could override anything, so it goes through its base below.
    if obj is None or kind in (bool, str) or (kind is int and abs(obj) < 2**1000):
        return obj
    if kind is float:
        return obj if math.isfinite(obj) else {"t": "float", "v": repr(obj)}
    if is_array(obj) and type(obj).__module__.startswith("torch"):
        node = refer(obj, buffers)
        if node is not None:
            return node
        node = array_node(obj, buffers)
        if tag is not None and (index := tag(obj)) is not None:
            node["g"] = index
        return node
    # Before the subclass checks: numpy.float64 is a float, but should arrive as a numpy.float64.
    node = _encode_array(obj, buffers)
    if node is not None:
        return node
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int) and abs(int(obj)) < 2**1000:
        return int(obj)
    if isinstance(obj, float):
        return encode(float(obj), buffers, refer, depth)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, complex):
        return {"t": "complex", "v": [_float(obj.real), _float(obj.imag)]}
    if isinstance(obj, bytes | bytearray):
        return {"t": "bytes", "b": _buffer(buffers, bytes(obj))}
    if isinstance(obj, list | tuple):
        # torch.Size and named tuples arrive as plain tuples.
        items = [encode(item, buffers, refer, depth + 1, tag) for item in obj]
        return {"t": "list" if isinstance(obj, list) else "tuple", "v": items}
    if isinstance(obj, dict):
        pairs = [
            [encode(k, buffers, refer, depth + 1, tag), encode(v, buffers, refer, depth + 1, tag)]
            for k, v in obj.items()
        ]
        return {"t": "dict", "v": pairs}
    if isinstance(obj, set | frozenset):
        items = [encode(item, buffers, refer, depth + 1, tag) for item in obj]
        return {"t": "set" if isinstance(obj, set) else "frozenset", "v": items}
    return refer(obj, buffers)


def array_node(obj, buffers: list) -> dict:
    """The value of a plain ndarray or tensor (is_array), as a node."""
    node = _encode_array(obj, buffers)
    assert node is not None
    return node


def _float(value: float):
    return value if math.isfinite(value) else {"t": "float", "v": repr(value)}


def _buffer(buffers: list, data) -> int:
    buffers.append(data)
    return len(buffers) - 1


def _encode_array(obj, buffers: list):
    numpy, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if numpy is not None:
        if isinstance(obj, numpy.ndarray) and NUMPY_DTYPE.match(obj.dtype.str):
            array = numpy.ascontiguousarray(obj)
            return {
                "t": "ndarray",
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "b": _buffer(buffers, raw_bytes(array)),
            }
        if isinstance(obj, numpy.generic) and NUMPY_DTYPE.match(obj.dtype.str):
            return {"t": "npscalar", "dtype": obj.dtype.str, "b": _buffer(buffers, obj.tobytes())}
        if isinstance(obj, numpy.dtype) and NUMPY_DTYPE.match(obj.str):
            return {"t": "npdtype", "v": obj.str}
    if torch is not None:
        if isinstance(obj, torch.Tensor) and _plain_tensor(torch, obj):
            return {
                "t": "tensor",
                "dtype": str(obj.dtype).removeprefix("torch."),
                "shape": list(obj.shape),
                "device": obj.device.type,
                "b": _buffer(buffers, raw_bytes(obj)),
            }
        if isinstance(obj, torch.dtype) and str(obj).removeprefix("torch.") in TORCH_DTYPES:
            return {"t": "torchdtype", "v": str(obj).removeprefix("torch.")}
    return None


def _plain_tensor(torch, tensor) -> bool:
    return (
        tensor.layout == torch.strided
        and not tensor.is_meta
        and not tensor.is_quantized
        and str(tensor.dtype).removeprefix("torch.") in TORCH_DTYPES
    )


def raw_bytes(obj):
    """The contents of a contiguous ndarray or tensor as a flat uint8 ndarray (no copy on the CPU)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    import numpy

    return numpy.ascontiguousarray(obj).reshape(-1).view(numpy.uint8)


def is_array(obj) -> bool:
    """An ndarray or tensor whose contents can cross the boundary (and be copied back after a call)."""
    numpy, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if numpy is not None and isinstance(obj, numpy.ndarray):
        return bool(NUMPY_DTYPE.match(obj.dtype.str))
    return torch is not None and isinstance(obj, torch.Tensor) and _plain_tensor(torch, obj)


def walk_arrays(obj, found, is_leaf, depth: int = 0) -> None:
    """Call found(array) for each array in obj, through lists, tuples and dict values, in order.

    Both sides walk a call's (args, kwargs) with this, so the n-th array found in S is the n-th in H.
    """
    if depth > MAX_DEPTH or is_leaf(obj):
        return
    if isinstance(obj, list | tuple):
        for item in obj:
            walk_arrays(item, found, is_leaf, depth + 1)
    elif isinstance(obj, dict):
        for item in obj.values():
            walk_arrays(item, found, is_leaf, depth + 1)
    elif is_array(obj):
        found(obj)


def header(body: dict) -> bytes:
    """The JSON header frame for a reply from S."""
    return json.dumps(body, separators=(",", ":")).encode()


# ---- H side: header and buffers -> genuine plain values, strictly -------------------------------


def parse_header(frame: bytearray) -> dict:
    """The reply's header; anything but a JSON object is a violation."""
    try:
        body = json.loads(frame.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ProtocolViolation(f"a header that is not JSON ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise ProtocolViolation("a header that is not an object")
    return body


class Decoder:
    """Rebuilds plain values from one reply's nodes; every buffer may be used once.

    host turns references into objects: handle(id, type), mirrored(node, decoder) and module(node,
    decoder) for the tensors and modules both sides keep, input(index) for the tests' own tensors,
    and graph(index, tensor) for a tensor that carries the student's autograd graph.
    """

    def __init__(self, buffers: list[bytearray], host):
        self.buffers, self.used, self.host = buffers, set(), host

    def decode(self, node, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ProtocolViolation(f"a value nested deeper than {MAX_DEPTH}")
        if node is None or type(node) in (bool, int, float):
            return node
        if type(node) is str:
            if len(node) > MAX_STR:
                raise ProtocolViolation(f"a string longer than {MAX_STR}")
            return node
        if type(node) is not dict or type(node.get("t")) is not str:
            raise ProtocolViolation("an untagged value")
        method = getattr(self, "_" + node["t"], None)
        if method is None:
            raise ProtocolViolation(f"an unknown value tag {node['t'][:40]!r}")
        try:
            return method(node, depth + 1)
        except ProtocolViolation:
            raise
        except (
            KeyError,
            TypeError,
            ValueError,
            OverflowError,
            IndexError,
            AttributeError,
            RuntimeError,
        ) as exc:
            # RuntimeError: torch's, when a mirrored tensor cannot take what S sent (a dtype, a shape).
            raise ProtocolViolation(f"a malformed {node['t']} ({type(exc).__name__}: {exc})") from None

    def _items(self, node, depth):
        if type(node["v"]) is not list:
            raise ProtocolViolation("a container that is not a list")
        return [self.decode(item, depth) for item in node["v"]]

    def _list(self, node, depth):
        return self._items(node, depth)

    def _tuple(self, node, depth):
        return tuple(self._items(node, depth))

    def _set(self, node, depth):
        return {self._key(item) for item in self._items(node, depth)}

    def _frozenset(self, node, depth):
        return frozenset(self._set(node, depth))

    def _dict(self, node, depth):
        if type(node["v"]) is not list:
            raise ProtocolViolation("a container that is not a list")
        result = {}
        for pair in node["v"]:
            if type(pair) is not list or len(pair) != 2:
                raise ProtocolViolation("a dict entry that is not a pair")
            result[self._key(self.decode(pair[0], depth))] = self.decode(pair[1], depth)
        return result

    def _key(self, key):
        if not isinstance(key, KEY_TYPES) or (isinstance(key, tuple) and not all(map(self._hashable, key))):
            raise ProtocolViolation(f"a dict key or set item of type {type(key).__name__}")
        return key

    def _hashable(self, item) -> bool:
        return isinstance(item, KEY_TYPES) and (not isinstance(item, tuple) or all(map(self._hashable, item)))

    def _float(self, node, depth):
        if node["v"] not in ("nan", "inf", "-inf"):
            raise ProtocolViolation("a float that is not a number")
        return float(node["v"])

    def _complex(self, node, depth):
        real, imag = (self.decode(part, depth) for part in node["v"])
        if type(real) not in (int, float) or type(imag) not in (int, float):
            raise ProtocolViolation("a complex with non-numeric parts")
        return complex(real, imag)

    def _bytes(self, node, depth):
        return bytes(self._take(node["b"]))

    def _handle(self, node, depth):
        if type(node["id"]) is not int or type(node["type"]) is not str or len(node["type"]) > MAX_NAME:
            raise ProtocolViolation("a malformed handle")
        return self.host.handle(node["id"], node["type"])

    def _mirrored(self, node, depth):
        return self.host.mirrored(node, self)

    def _module(self, node, depth):
        return self.host.module(node, self)

    def _remote(self, node, depth):
        if type(node["id"]) is not int:
            raise ProtocolViolation("a malformed reference to one of the tests' objects")
        return self.host.remote(node["id"])

    def _input(self, node, depth):
        if type(node["i"]) is not int:
            raise ProtocolViolation("a malformed reference to an argument")
        return self.host.input(node["i"])

    def _take(self, index) -> bytearray:
        if type(index) is not int or not 0 <= index < len(self.buffers) or index in self.used:
            raise ProtocolViolation("a bad buffer reference")
        self.used.add(index)
        return self.buffers[index]

    def _shape(self, shape) -> tuple[int, ...]:
        if (
            type(shape) is not list
            or len(shape) > MAX_DIMS
            or not all(type(n) is int and n >= 0 for n in shape)
        ):
            raise ProtocolViolation("a bad array shape")
        return tuple(shape)

    def _numpy_dtype(self, name):
        import numpy

        if type(name) is not str or not NUMPY_DTYPE.match(name):
            raise ProtocolViolation("a non-numeric array dtype")
        return numpy.dtype(name)

    def _ndarray(self, node, depth):
        import numpy

        dtype, shape, data = (
            self._numpy_dtype(node["dtype"]),
            self._shape(node["shape"]),
            self._take(node["b"]),
        )
        if math.prod(shape) * dtype.itemsize != len(data):
            raise ProtocolViolation("an array whose data does not match its shape")
        return numpy.frombuffer(data, dtype=dtype).reshape(shape)

    def _npscalar(self, node, depth):
        import numpy

        dtype, data = self._numpy_dtype(node["dtype"]), self._take(node["b"])
        if len(data) != dtype.itemsize:
            raise ProtocolViolation("a numpy scalar of the wrong size")
        return numpy.frombuffer(data, dtype=dtype)[0]

    def _npdtype(self, node, depth):
        return self._numpy_dtype(node["v"])

    def _torch_dtype(self, name):
        import torch

        if type(name) is not str or name not in TORCH_DTYPES or not hasattr(torch, name):
            raise ProtocolViolation("a tensor dtype that is not numeric")
        return getattr(torch, name)

    def _torchdtype(self, node, depth):
        return self._torch_dtype(node["v"])

    def _tensor(self, node, depth):
        import numpy
        import torch

        dtype, shape, data = (
            self._torch_dtype(node["dtype"]),
            self._shape(node["shape"]),
            self._take(node["b"]),
        )
        count = math.prod(shape)
        if count * dtype.itemsize != len(data):
            raise ProtocolViolation("a tensor whose data does not match its shape")
        tensor = torch.empty(count, dtype=dtype)
        tensor.view(torch.uint8).numpy()[:] = numpy.frombuffer(data, dtype=numpy.uint8)
        tensor = tensor.reshape(shape)
        if node["device"] == "cuda" and torch.cuda.is_available():
            tensor = tensor.to("cuda")
        if "g" in node:
            if type(node["g"]) is not int:
                raise ProtocolViolation("a malformed gradient reference")
            return self.host.graph(node["g"], tensor)
        return tensor

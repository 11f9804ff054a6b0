"""The host protocol's framing (docs/MODELS.md, "Model hosts"), with pyzmq and numpy alone.

A message is a ZeroMQ multipart message: frame 0 is a UTF-8 JSON header, frames 1..n the raw
bytes of the tensors the header lists, in order, each C-contiguous and little-endian:

  request  {"id": 7, "method": "denoise", "args": {...},
            "tensors": [{"name": "latents", "dtype": "float32", "shape": [1, 16, 21, 60, 104]}, ...]}
  reply    {"id": 7, "ok": true, "result": {...}, "tensors": [...]}
           {"id": 7, "ok": false, "error": "what went wrong"}

The arena: a worker may offer shared memory (hello's args.arena, a path to map). A request that
uses it says {"arena": {"bytes": N, "free": F}}; its tensors then carry an "offset" into the
arena's first N bytes and have no frame, and the reply may place tensors at offsets from F on
(64-byte aligned) instead of in frames. Arena is what maps it.
"""

import json
import mmap

import numpy as np

# dtype names on the wire -> numpy dtypes. bfloat16 has no numpy type: it travels as its raw
# 16-bit patterns (the upper half of a float32) and is widened by to_float32.
DTYPES = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "float64": np.dtype("<f8"),
    "int64": np.dtype("<i8"),
    "bool": np.dtype("bool"),
}
_NAMES = {v: k for k, v in DTYPES.items() if k != "bfloat16"}
MAX_RANK = 8


class ProtocolError(Exception):
    pass


class Arena:
    """The worker's shared memory, mapped here (the file is the worker's memfd)."""

    def __init__(self, path):
        self.file = open(path, "r+b")
        self.buffer, self.size = None, 0

    def view(self, size):
        """The first `size` bytes, mapped again when the worker grew it."""
        if not isinstance(size, int) or size <= 0:
            raise ProtocolError(f"arena size {size!r}")
        if size != self.size:
            # An old mapping is dropped, not closed: arrays made from it may still be alive.
            self.buffer, self.size = mmap.mmap(self.file.fileno(), size), size
        return self.buffer


def encode(header, tensors=(), arena=None, free=0):
    """header: a dict; tensors: [(name, array, dtype name or None)] -> frames to send. With an
    arena buffer, tensors that fit from offset `free` on are copied into it instead of frames."""
    descs, frames = [], []
    for name, array, dtype in tensors:
        if dtype is None:
            dtype = _NAMES.get(np.dtype(array.dtype).newbyteorder("<"))
            if dtype is None:
                raise ProtocolError(f"tensor {name!r}: no wire dtype for {array.dtype}")
        a = np.asarray(array)
        desc = {"name": name, "dtype": dtype, "shape": list(a.shape)}
        nbytes = a.size * DTYPES[dtype].itemsize
        if arena is not None and free + nbytes <= len(arena):
            np.copyto(np.frombuffer(arena, DTYPES[dtype], a.size, free).reshape(a.shape), a,
                      casting="unsafe")
            desc["offset"] = free
            free = (free + nbytes + 63) // 64 * 64
        else:
            frames.append(memoryview(np.ascontiguousarray(a, dtype=DTYPES[dtype])).cast("B"))
        descs.append(desc)
    header = dict(header, tensors=descs)
    return [json.dumps(header).encode()] + frames


def decode(frames, arena=None):
    """frames (bytes-like) -> (header dict, {name: array}). Tensors with an offset are read from
    the Arena `arena` without a copy. Raises ProtocolError on bad input."""
    if not frames:
        raise ProtocolError("empty message")
    try:
        header = json.loads(bytes(frames[0]).decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    descs = header.get("tensors", [])
    if not isinstance(descs, list) or not all(isinstance(d, dict) for d in descs):
        raise ProtocolError("header's tensors is not a list of objects")
    framed = [d for d in descs if "offset" not in d]
    if len(framed) != len(frames) - 1:
        raise ProtocolError(f"header lists {len(framed)} tensors in frames, "
                            f"message has {len(frames) - 1}")
    shared = None
    if len(framed) != len(descs):
        spec = header.get("arena")
        if arena is None or not isinstance(spec, dict):
            raise ProtocolError("a tensor has an offset, and there is no arena")
        shared = arena.view(spec.get("bytes"))
    tensors, rest = {}, iter(frames[1:])
    for desc in descs:
        name, dtype, shape = desc.get("name"), desc.get("dtype"), desc.get("shape")
        if not isinstance(name, str) or dtype not in DTYPES:
            raise ProtocolError(f"tensor {name!r}: unknown dtype {dtype!r}")
        if (not isinstance(shape, list) or len(shape) > MAX_RANK or
                not all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ProtocolError(f"tensor {name!r}: bad shape {shape!r}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        nbytes = count * DTYPES[dtype].itemsize
        if "offset" in desc:
            at = desc["offset"]
            if not isinstance(at, int) or at < 0 or at + nbytes > len(shared):
                raise ProtocolError(f"tensor {name!r}: offset {at!r} is outside the arena")
            array = np.frombuffer(shared, DTYPES[dtype], count, at).reshape(shape)
        else:
            buf = memoryview(next(rest))
            if buf.nbytes != nbytes:
                raise ProtocolError(f"tensor {name!r}: {buf.nbytes} bytes for {dtype} {shape}")
            array = np.frombuffer(buf, dtype=DTYPES[dtype]).reshape(shape)
        tensors[name] = (array, dtype)
    return header, tensors


def to_float32(array, dtype):
    """A wire tensor as float32 (bfloat16's patterns widened)."""
    if dtype == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)

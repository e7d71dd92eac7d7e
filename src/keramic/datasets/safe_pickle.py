"""Read the pickled numpy data some Keras datasets ship (CIFAR batches, imdb/reuters object
arrays) without Python's `pickle`: a small interpreter for the opcodes those files use, which can
only ever build dicts, lists, tuples, strings, numbers and numpy arrays. Any other opcode or any
global other than numpy's array and dtype reconstructors is refused with `UnsafeArchiveError`.

>>> batch = read_pickled_arrays(open("data_batch_1", "rb").read())
>>> batch[b"data"].shape
(10000, 3072)
"""

import io
import math
import struct
import zipfile

import numpy as np

from keramic.errors import DataDownloadError

_RECONSTRUCT = "reconstruct"
_NDARRAY = "ndarray"
_DTYPE = "dtype"
_ENCODE = "encode"
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
    ("_codecs", "encode"): _ENCODE,
}


class UnsafeArchiveError(DataDownloadError):
    """A dataset file holds pickled content beyond plain containers and numpy arrays."""


class _Global:
    def __init__(self, kind):
        self.kind = kind


class _Mark:
    pass


class _PendingDtype:
    """`numpy.dtype(code, ...)` as recorded; becomes real when its BUILD state arrives."""

    def __init__(self, code):
        self.code = code
        self.dtype = None


class _PendingArray:
    """`_reconstruct(ndarray, ...)` as recorded; becomes a numpy array at its BUILD."""

    def __init__(self):
        self.array = None


_MARK = _Mark()


class _Reader:
    def __init__(self, data, source):
        self.data = data
        self.pos = 0
        self.source = source
        self.stack = []
        self.memo = {}

    def refuse(self, what):
        raise UnsafeArchiveError(
            f"{self.source}: refused to read {what} at byte {self.pos}; dataset files may only hold "
            "plain containers and numpy arrays."
        )

    def take(self, count):
        if count < 0 or self.pos + count > len(self.data):
            raise DataDownloadError(f"{self.source}: truncated pickle (needed {count} bytes at byte {self.pos}).")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self):
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise DataDownloadError(f"{self.source}: truncated pickle (unterminated line at byte {self.pos}).")
        text = self.data[self.pos : end].decode("ascii")
        self.pos = end + 1
        return text

    def pop_mark(self):
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index] is _MARK:
                items = self.stack[index + 1 :]
                del self.stack[index:]
                return items
        self.refuse("a container without its MARK")

    def pop(self):
        if not self.stack:
            self.refuse("an opcode on an empty stack")
        return self.stack.pop()

    def run(self):
        ops = _OPCODES
        while True:
            code = self.take(1)[0]
            handler = ops.get(code)
            if handler is None:
                self.pos -= 1
                self.refuse(f"pickle opcode {bytes([code])!r}")
            if handler(self):
                return _resolve(self.pop())

    # -- containers and constants
    def _global(self, module, name):
        kind = _ALLOWED_GLOBALS.get((module, name))
        if kind is None:
            self.refuse(f"the global {module}.{name}")
        self.stack.append(_Global(kind))

    def _reduce(self):
        args = self.pop()
        target = self.pop()
        if not isinstance(target, _Global) or not isinstance(args, tuple):
            self.refuse("a call of something other than numpy's reconstructors")
        if target.kind == _RECONSTRUCT and len(args) == 3 and isinstance(args[0], _Global) and args[0].kind == _NDARRAY:
            self.stack.append(_PendingArray())
        elif target.kind == _DTYPE and len(args) == 3 and isinstance(args[0], (str, bytes)):
            # Python 2 pickles carry the type code as a byte string.
            self.stack.append(_PendingDtype(_text(args[0])))
        elif target.kind == _ENCODE and len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            self.stack.append(args[0].encode("latin1"))
        else:
            self.refuse(f"a call of {target.kind} with arguments {args!r:.80}")

    def _build(self):
        state = self.pop()
        target = self.stack[-1] if self.stack else None
        if isinstance(target, _PendingDtype):
            target.dtype = _make_dtype(target.code, state, self.refuse)
        elif isinstance(target, _PendingArray):
            target.array = _make_array(state, self.refuse)
        else:
            self.refuse("a BUILD of something other than a numpy array or dtype")


def _make_dtype(code, state, refuse):
    if not isinstance(state, tuple) or len(state) < 5 or any(part is not None for part in state[2:5]):
        refuse("a structured or sub-array dtype")
    endian = _text(state[1]) if isinstance(state[1], (str, bytes)) else None
    if endian not in ("<", ">", "|", "="):
        refuse(f"dtype byte order {state[1]!r}")
    if code.startswith("O"):
        return np.dtype(object)
    try:
        dtype = np.dtype(code if endian == "|" else endian + code)
    except TypeError:
        refuse(f"dtype {code!r}")
    if dtype.kind not in "biufc":
        refuse(f"dtype {code!r}")
    return dtype


def _text(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


def _make_array(state, refuse):
    if not isinstance(state, tuple) or len(state) != 5:
        refuse("an array state of an unknown layout")
    _, shape, dtype, fortran, payload = state
    dtype = dtype.dtype if isinstance(dtype, _PendingDtype) else None
    if dtype is None or not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        refuse("an array without a plain shape and dtype")
    count = math.prod(shape)
    order = "F" if fortran else "C"
    if dtype == np.dtype(object):
        if not isinstance(payload, list) or len(payload) != count:
            refuse("an object array whose items do not match its shape")
        array = np.empty(count, dtype=object)
        for index, item in enumerate(payload):
            array[index] = _resolve(item)
        return array.reshape(shape, order=order)
    if not isinstance(payload, bytes) or len(payload) != count * dtype.itemsize:
        refuse(f"an array of shape {shape} and dtype {dtype} with {len(payload) if isinstance(payload, bytes) else '?'} bytes")
    return np.frombuffer(payload, dtype=dtype).reshape(shape, order=order).copy()


def _resolve(value):
    """Swap reconstructed placeholders for their numpy values, through containers."""
    if isinstance(value, _PendingArray):
        return value.array
    if isinstance(value, _PendingDtype):
        return value.dtype
    if isinstance(value, dict):
        return {_resolve(key): _resolve(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_resolve(item) for item in value)
    if isinstance(value, (_Global, _Mark)):
        raise UnsafeArchiveError("A pickle ended with an unused global reference.")
    return value


def _push(value):
    return lambda r: r.stack.append(value() if callable(value) else value)


def _setitems(r):
    items = r.pop_mark()
    target = r.stack[-1] if r.stack else None
    if not isinstance(target, dict) or len(items) % 2:
        r.refuse("SETITEMS on something other than a dict")
    for key, value in zip(items[::2], items[1::2]):
        target[_hashable(r, key)] = value


def _setitem(r):
    value, key = r.pop(), r.pop()
    target = r.stack[-1] if r.stack else None
    if not isinstance(target, dict):
        r.refuse("SETITEM on something other than a dict")
    target[_hashable(r, key)] = value


def _hashable(r, key):
    if not isinstance(key, (str, bytes, int, float, bool, type(None))):
        r.refuse(f"a dict key of type {type(key).__name__}")
    return key


def _appends(r):
    items = r.pop_mark()
    target = r.stack[-1] if r.stack else None
    if not isinstance(target, list):
        r.refuse("APPENDS on something other than a list")
    target.extend(items)


def _append(r):
    value = r.pop()
    target = r.stack[-1] if r.stack else None
    if not isinstance(target, list):
        r.refuse("APPEND on something other than a list")
    target.append(value)


def _put(r, index):
    if not r.stack:
        r.refuse("a memo store on an empty stack")
    r.memo[index] = r.stack[-1]


def _get(r, index):
    if index not in r.memo:
        r.refuse(f"a read of memo {index}, never stored")
    r.stack.append(r.memo[index])


def _tuple_of(count):
    def handler(r):
        items = [r.pop() for _ in range(count)][::-1]
        r.stack.append(tuple(items))

    return handler


def _stack_global(r):
    name, module = r.pop(), r.pop()
    if not isinstance(name, str) or not isinstance(module, str):
        r.refuse("STACK_GLOBAL without names")
    r._global(module, name)


def _proto(r):
    if r.take(1)[0] > 5:
        r.refuse("a pickle protocol above 5")


_OPCODES = {
    0x80: _proto,
    0x95: lambda r: r.take(8) and None,  # FRAME: framing only
    ord("."): lambda r: True,  # STOP
    ord("("): _push(_MARK),
    ord("}"): _push(dict),
    ord("]"): _push(list),
    ord(")"): _push(tuple),
    ord("t"): lambda r: r.stack.append(tuple(r.pop_mark())),
    0x85: _tuple_of(1),
    0x86: _tuple_of(2),
    0x87: _tuple_of(3),
    ord("u"): _setitems,
    ord("s"): _setitem,
    ord("e"): _appends,
    ord("a"): _append,
    ord("N"): _push(None),
    0x88: _push(True),
    0x89: _push(False),
    ord("J"): lambda r: r.stack.append(r.unpack("<i")),
    ord("K"): lambda r: r.stack.append(r.unpack("<B")),
    ord("M"): lambda r: r.stack.append(r.unpack("<H")),
    0x8A: lambda r: r.stack.append(int.from_bytes(r.take(r.unpack("<B")), "little", signed=True)),
    ord("G"): lambda r: r.stack.append(r.unpack(">d")),
    ord("U"): lambda r: r.stack.append(r.take(r.unpack("<B"))),  # SHORT_BINSTRING (Python 2 str)
    ord("T"): lambda r: r.stack.append(r.take(r.unpack("<i"))),  # BINSTRING
    ord("C"): lambda r: r.stack.append(r.take(r.unpack("<B"))),
    ord("B"): lambda r: r.stack.append(r.take(r.unpack("<I"))),
    0x8E: lambda r: r.stack.append(r.take(r.unpack("<Q"))),
    0x8C: lambda r: r.stack.append(r.take(r.unpack("<B")).decode("utf-8")),
    ord("X"): lambda r: r.stack.append(r.take(r.unpack("<I")).decode("utf-8")),
    0x8D: lambda r: r.stack.append(r.take(r.unpack("<Q")).decode("utf-8")),
    ord("q"): lambda r: _put(r, r.unpack("<B")),
    ord("r"): lambda r: _put(r, r.unpack("<I")),
    0x94: lambda r: _put(r, len(r.memo)),
    ord("h"): lambda r: _get(r, r.unpack("<B")),
    ord("j"): lambda r: _get(r, r.unpack("<I")),
    ord("c"): lambda r: r._global(r.line(), r.line()),
    0x93: _stack_global,
    ord("R"): lambda r: r._reduce(),
    ord("b"): lambda r: r._build(),
}


def read_pickled_arrays(data, source="<bytes>"):
    """The dict / list / array structure pickled in `data`, built without running any code."""
    return _Reader(memoryview(data).tobytes(), source).run()


def load_npz(path):
    """Every `.npy` member of an `.npz` archive as a dict of arrays; object arrays (ragged
    sequences) are read through `read_pickled_arrays`, everything else with pickling disabled."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            stream = io.BytesIO(archive.read(member))
            major, _ = np.lib.format.read_magic(stream)
            if major == 1:
                _, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif major in (2, 3):
                _, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise DataDownloadError(f"{path}: member {member} has unsupported .npy version {major}.")
            if dtype.hasobject:
                value = read_pickled_arrays(stream.read(), f"{path}:{member}")
                if not isinstance(value, np.ndarray):
                    raise UnsafeArchiveError(f"{path}:{member}: the pickled object array is not an array.")
            else:
                stream.seek(0)
                value = np.lib.format.read_array(stream, allow_pickle=False)
            arrays[member[: -len(".npy")]] = value
    return arrays

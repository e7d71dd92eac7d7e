"""The safetensors container, written and read here: a u64 little-endian header length, a JSON
header (`{key: {"dtype", "shape", "data_offsets": [begin, end]}}` plus optional `__metadata__`
of str -> str), space padding to 8 bytes, then one raw buffer of tensor bytes.

Reading trusts nothing: the header length, the header's size, every dtype, shape and offset are
checked against the file's real length before a single tensor byte is touched, and the entries
must tile the data region exactly (no overlaps, no gaps, nothing after), as the reference
implementation requires. Tensor bytes are then read only on demand, either straight into a
variable's memory (`read_into`, positional reads) or as views over a private memory map
(`tensor`).
"""

import json
import mmap
import os
import struct

import torch

from keramic.errors import FileFormatError, KeramicError
from keramic.saving.stores import atomic, bulk_io

# The reference implementation refuses headers over 100 MB; a header that large already describes
# about a million tensors.
HEADER_LIMIT = 100 * 1000 * 1000
METADATA_KEY = "__metadata__"
_ENTRY_FIELDS = {"dtype", "shape", "data_offsets"}

# safetensors dtype name -> torch dtype (the ones torch can hold without packing).
DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I16": torch.int16,
    "U16": torch.uint16,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I32": torch.int32,
    "U32": torch.uint32,
    "F32": torch.float32,
    "I64": torch.int64,
    "U64": torch.uint64,
    "F64": torch.float64,
    "C64": torch.complex64,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
# numpy has no such dtypes: their bytes travel as integers of the same width.
_NUMPY_STAND_INS = {torch.bfloat16: torch.int16, torch.float8_e4m3fn: torch.uint8, torch.float8_e5m2: torch.uint8}


def host_array(tensor):
    """A numpy array over a CPU tensor's own memory (same bytes; a stand-in dtype where numpy has none)."""
    value = tensor.detach()
    stand_in = _NUMPY_STAND_INS.get(value.dtype)
    return (value if stand_in is None else value.view(stand_in)).numpy()


def looks_like_safetensors(head):
    """True when the first 9 bytes read as a header length followed by `{`.

    A real length is far below 2**56, so its eighth byte is zero; text (JSON) never has a NUL
    there, and HDF5 and zip files have other bytes at offset 8.
    """
    return len(head) >= 9 and head[7] == 0 and head[8:9] == b"{"


class Entry:
    """One tensor of a file: its dtype, shape and absolute byte span [begin, end)."""

    __slots__ = ("key", "dtype_name", "dtype", "shape", "begin", "end")

    def __init__(self, key, dtype_name, shape, begin, end):
        self.key, self.dtype_name, self.dtype = key, dtype_name, DTYPES[dtype_name]
        self.shape, self.begin, self.end = shape, begin, end

    @property
    def nbytes(self):
        return self.end - self.begin


class SafetensorsFile:
    """An open, fully validated safetensors file; tensors are read only when asked for.

    >>> with SafetensorsFile("model.safetensors") as weights:
    ...     kernel = weights.tensor("layers/dense/vars/0")
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._map = None
        atomic.check_regular(self.path)  # a FIFO or a device is refused before `open` could block on it
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self.size = os.fstat(self.fd).st_size
            self.metadata, self.entries, self.data_start = _read_header(self.fd, self.path, self.size)
        except BaseException:
            os.close(self.fd)
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the file; tensors from `tensor()` keep their mapping alive on their own."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self._map = None

    def tensor(self, key):
        """A CPU tensor over a private (copy-on-write) map of the file: pages are read when touched."""
        entry = self.entries[key]
        if entry.nbytes == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        if self._map is None:
            self._map = mmap.mmap(self.fd, 0, access=mmap.ACCESS_COPY)
        count = entry.nbytes // _ITEMSIZES[entry.dtype_name]
        return torch.frombuffer(self._map, dtype=entry.dtype, count=count, offset=entry.begin).reshape(entry.shape)

    def read_into(self, pairs):
        """Fill each variable of `pairs` [(Entry, variable)] from the file (shapes checked by the caller).

        CPU variables of the file's dtype get their bytes by positional reads straight into their
        own memory, in bulk; others (another dtype or device) copy from the mapped tensor.
        """
        jobs, direct = [], []
        for entry, variable in pairs:
            if variable.device.type == "cpu" and variable.dtype == entry.dtype and variable.is_contiguous() and entry.nbytes:
                jobs.append((host_array(variable), entry.begin))
                direct.append(variable)
            else:
                with torch.no_grad():
                    variable.copy_(self.tensor(entry.key))
        if jobs:
            try:
                bulk_io.scatter_read(self.fd, jobs, f"{self.path}: entry 'data'")
            except EOFError as error:
                raise FileFormatError(f"{error} (it was truncated after its header was checked).") from None
            for variable in direct:
                # The write bypassed torch: tell it the value changed (optimizers cache host copies by version).
                torch.autograd.graph.increment_version(variable)


def _itemsize(dtype):
    return torch.empty((), dtype=dtype).element_size()


_ITEMSIZES = {name: _itemsize(dtype) for name, dtype in DTYPES.items()}


def _read_header(fd, path, size):
    """(metadata, {key: Entry} in header order, data start): every check done, no tensor read."""
    if size < 8:
        raise FileFormatError(f"{path}: {size} bytes is too short for a safetensors file (an 8-byte header length comes first).")
    (length,) = struct.unpack("<Q", os.pread(fd, 8, 0))
    if length > HEADER_LIMIT:
        raise FileFormatError(f"{path}: entry 'header': declared length {length} bytes is over the {HEADER_LIMIT}-byte limit.")
    if 8 + length > size:
        raise FileFormatError(f"{path}: entry 'header': declared length {length} bytes runs past the end of the {size}-byte file (truncated?).")
    raw = os.pread(fd, length, 8)
    if len(raw) != length:
        raise FileFormatError(f"{path}: entry 'header': the file ended while reading the header (truncated?).")
    if raw[:1] != b"{":
        raise FileFormatError(f"{path}: entry 'header': does not start with '{{', so it is not a safetensors JSON header.")
    header = atomic.parse_json(raw, f"{path}: entry 'header'")  # size, depth and repeated keys bounded as every JSON read
    if not isinstance(header, dict):
        raise FileFormatError(f"{path}: entry 'header': expected a JSON object, found {type(header).__name__}.")
    metadata = header.pop(METADATA_KEY, None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise FileFormatError(f"{path}: entry '{METADATA_KEY}': expected an object of strings to strings.")
    data_start = 8 + length
    data_size = size - data_start
    entries = {key: _entry(path, key, value, data_start, data_size) for key, value in header.items()}
    _check_tiling(path, entries, data_start, data_size)
    return metadata, entries, data_start


def _entry(path, key, value, data_start, data_size):
    """One header entry, its dtype known, its size exact and its span inside the data region."""

    def error(message):
        return FileFormatError(f"{path}: entry '{key}': {message}")

    if not key:
        raise error("tensor names must not be empty.")
    if not isinstance(value, dict) or set(value) != _ENTRY_FIELDS:
        raise error(f"expected an object with exactly {sorted(_ENTRY_FIELDS)}, found {value!r:.200}.")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if dtype not in DTYPES:
        raise error(f"unknown or unsupported dtype {dtype!r:.40}; known: {', '.join(DTYPES)}.")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise error(f"shape must be a list of non-negative integers, found {shape!r:.200}.")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        raise error(f"data_offsets must be two integers [begin, end], found {offsets!r:.200}.")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise error(f"data_offsets [{begin}, {end}] are not an increasing pair of non-negative offsets.")
    expected = _ITEMSIZES[dtype]
    for dim in shape:
        expected *= dim
    if end - begin != expected:
        raise error(f"data_offsets [{begin}, {end}] span {end - begin} bytes, but {dtype} {tuple(shape)} takes {expected}.")
    if end > data_size:
        raise error(f"data_offsets [{begin}, {end}] end past the data region of {data_size} bytes (file truncated?).")
    return Entry(key, dtype, tuple(shape), data_start + begin, data_start + end)


def _check_tiling(path, entries, data_start, data_size):
    """Entries must cover the data region back to back: overlaps would alias tensors, gaps and
    trailing bytes could hide other content (the reference implementation refuses them too)."""
    cursor, previous = 0, None
    for entry in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        begin, end = entry.begin - data_start, entry.end - data_start
        if begin < cursor:
            raise FileFormatError(f"{path}: entry '{entry.key}': data_offsets [{begin}, {end}] overlap entry '{previous}'.")
        if begin > cursor:
            raise FileFormatError(f"{path}: entry '{entry.key}': data_offsets [{begin}, {end}] leave a gap after byte {cursor}.")
        cursor, previous = end, entry.key
    if cursor != data_size:
        raise FileFormatError(f"{path}: entry 'data': the tensors cover {cursor} bytes, but {data_size} bytes follow the header.")


# ---------------------------------------------------------------- writing
def tensor_bytes(path, key, tensor):
    """(dtype name, shape, numpy array over the tensor's bytes on the CPU) for writing."""
    value = tensor.detach()
    name = DTYPE_NAMES.get(value.dtype)
    if name is None:
        raise KeramicError(f"{path}: entry '{key}': dtype {value.dtype} cannot be stored in a safetensors file.")
    if value.device.type != "cpu":
        value = value.cpu()
    if not value.is_contiguous():
        value = value.contiguous()
    return name, tuple(value.shape), host_array(value)


def layout(path, tensors, metadata=None):
    """The file as buffers: (header bytes with their length prefix, [tensor bytes in data order]).

    `tensors` is [(key, tensor)]; `path` only names the file in errors. The tensor buffers are
    non-empty C-contiguous numpy arrays over the tensors' own memory (CPU tensors are not copied),
    of any shape: write them through `memoryview(buffer).cast("B")`. Tensors are ordered by element
    size, largest first (stable), so each starts at an offset aligned to its element size.
    """
    described = [(key, *tensor_bytes(path, key, tensor)) for key, tensor in tensors]
    described.sort(key=lambda item: -_ITEMSIZES[item[1]])
    header = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise KeramicError(f"{path}: entry '{METADATA_KEY}': safetensors metadata must map strings to strings.")
        header[METADATA_KEY] = dict(metadata)
    cursor = 0
    for key, dtype, shape, array in described:
        if key == METADATA_KEY or key in header:
            raise KeramicError(f"{path}: entry '{key}': duplicate or reserved tensor name.")
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [cursor, cursor + array.nbytes]}
        cursor += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, [array for *_, array in described if array.nbytes]


def write(path, tensors, metadata=None, name=None):
    """Write [(key, tensor)] as a safetensors file at `path` (a temp path: not atomic by itself);
    `name` is the file errors should name (the target, not the temp file)."""
    head, buffers = layout(name or path, tensors, metadata)
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        bulk_io.write_buffers(fd, [head, *buffers], 0, checksum=False)
    finally:
        os.close(fd)

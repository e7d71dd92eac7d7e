"""keramic's tensor index for its own `.keras` files, kept in `metadata.json` (Keras never reads it).

The index lists, for every variable group, each dataset's dtype, shape and byte offset inside
`model.weights.h5`, plus the size of that member and one SHA-256 over the member's HDF5 metadata
(every byte before the first tensor) and the index's own entries. A loader that finds the member's
size unchanged and that digest matching knows both were written together, so the HDF5 structures
say what the index says, and it can read tensors straight from the archive without walking HDF5.
Anything that does not check out (a file Keras wrote, an archive edited or re-saved by another
tool, a malformed index) makes the loader read the HDF5 file instead. Whatever the index says,
offsets and sizes are checked against the member and the model before a byte is read, so even a
deliberately forged index can only choose which in-bounds bytes fill a correctly shaped variable.
"""

import hashlib
import json
import math
import os
import zipfile

import torch

from keramic.errors import FileFormatError
from keramic.saving.stores import atomic, bulk_io
from keramic.saving.stores.h5_weights import GroupStore
from keramic.saving.stores.zip_member import member_data_offset

KEY = "keramic_weights_index"
VERSION = 1
MAX_METADATA_BYTES = 256 * 2**20
MAX_RANK = 64
TORCH_DTYPES = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "uint16": torch.uint16,
    "uint32": torch.uint32,
    "uint64": torch.uint64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}


def build(image):
    """The index entry for a planned `h5_layout.WeightsImage`, or None when a group's datasets are not
    "0", "1", ... in order (a `save_own_variables` override chose the keys: h5py reads that file)."""
    groups = {}
    for dataset in image.datasets:
        group = groups.setdefault(dataset.group_path, [])
        if dataset.index != str(len(group)):
            return None
        group.append([dataset.dtype_name, list(dataset.shape), dataset.offset])
    return {
        "version": VERSION,
        "size": image.size,
        "metadata_size": image.data_start,
        "sha256": _digest(image.metadata, groups),
        "groups": groups,
    }


def _digest(metadata, groups):
    digest = hashlib.sha256(metadata)
    digest.update(json.dumps(groups, separators=(",", ":")).encode())
    return digest.hexdigest()


class Entry:
    """One stored tensor: dtype, shape and absolute offset in the archive file."""

    __slots__ = ("dtype", "shape", "offset", "nbytes")

    def __init__(self, dtype, shape, offset, nbytes):
        self.dtype, self.shape, self.offset, self.nbytes = dtype, shape, offset, nbytes


def _writable_bytes(tensor):
    """The tensor's own memory as a writable byte buffer (any dtype, any rank)."""
    import ctypes

    return (ctypes.c_char * (tensor.numel() * tensor.element_size())).from_address(tensor.data_ptr())


class IndexedWeights:
    """Variable groups read through a checked index: `stored(path)` lists entries, `read(plan)` fills variables."""

    def __init__(self, path, fd, groups):
        self.path, self._fd, self._groups = path, fd, groups

    def stored(self, group_path):
        return self._groups.get(group_path, [])

    def store(self, group_path):
        """The group's entries as "0", "1", ..., for a `load_own_variables` override."""
        items = {str(index): entry for index, entry in enumerate(self.stored(group_path))}
        return GroupStore(items, self._value)

    def _value(self, entry):
        value = torch.empty(entry.shape, dtype=TORCH_DTYPES[entry.dtype])
        if entry.nbytes:
            bulk_io.read_into(self._fd, [(_writable_bytes(value), entry.offset)], self.path)
        return value if value.dtype == torch.bfloat16 else value.numpy()

    def read(self, plan):
        """Fill each variable of `plan` [(entry, variable)]: straight into its memory when it is a
        contiguous CPU tensor of the stored dtype, else through a scratch tensor and a cast."""
        jobs, direct, converted = [], [], []
        for entry, variable in plan:
            if not entry.nbytes:
                continue
            value, dtype = variable.detach(), TORCH_DTYPES[entry.dtype]
            if value.device.type == "cpu" and value.is_contiguous() and value.dtype == dtype:
                direct.append(variable)
            else:
                value = torch.empty(entry.shape, dtype=dtype)
                converted.append((variable, value))
            jobs.append((_writable_bytes(value), entry.offset))
        bulk_io.read_into(self._fd, jobs, self.path)
        for variable in direct:
            # The write bypassed torch: tell it the value changed (optimizers cache host copies by version).
            torch.autograd.graph.increment_version(variable)
        with torch.no_grad():
            for variable, value in converted:
                variable.copy_(value)

    def close(self):
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _metadata(archive, name):
    if name not in archive.namelist():
        return None
    try:
        value = atomic.read_json_member(archive.filename or "", archive, name, MAX_METADATA_BYTES)
    except FileFormatError:
        return None
    return value.get(KEY) if isinstance(value, dict) else None


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entries(index, size, metadata_size, data_start):
    """Checked entries per group, or None when any entry is malformed, out of bounds or overlapping."""
    groups = index.get("groups")
    if not isinstance(groups, dict):
        return None
    checked, spans = {}, []
    for group_path, items in groups.items():
        if not isinstance(items, list):
            return None
        entries = []
        for item in items:
            if not (isinstance(item, list) and len(item) == 3 and item[0] in TORCH_DTYPES and isinstance(item[1], list)):
                return None
            dtype, shape, offset = item
            if len(shape) > MAX_RANK or not all(_is_count(d) for d in shape):
                return None
            nbytes = math.prod(shape) * TORCH_DTYPES[dtype].itemsize
            if nbytes:
                if not (_is_count(offset) and metadata_size <= offset and offset + nbytes <= size):
                    return None
                spans.append((offset, nbytes))
                offset += data_start
            entries.append(Entry(dtype, tuple(shape), offset, nbytes))
        checked[group_path] = entries
    spans.sort()
    for (start, length), (following, _) in zip(spans, spans[1:]):
        if start + length > following:
            return None
    return checked


def open_index(path, archive, member, metadata_member):
    """`IndexedWeights` for `member` when `metadata_member` holds an index that checks out, else None."""
    index = _metadata(archive, metadata_member)
    if not isinstance(index, dict) or index.get("version") != VERSION:
        return None
    size, metadata_size, digest = index.get("size"), index.get("metadata_size"), index.get("sha256")
    if not (_is_count(size) and _is_count(metadata_size) and metadata_size <= size and isinstance(digest, str)):
        return None
    info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != size:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        with os.fdopen(os.dup(fd), "rb") as handle:
            data_start = member_data_offset(handle, info, path)
        if data_start + size > os.fstat(fd).st_size:
            raise EOFError
        header = bytearray(metadata_size)
        bulk_io.read_into(fd, [(header, data_start)], path)
        if _digest(header, index.get("groups")) != digest:
            raise ValueError
        groups = _entries(index, size, metadata_size, data_start)
        if groups is None:
            raise ValueError
    except (ValueError, EOFError, OSError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return IndexedWeights(path, fd, groups)

"""keramic's tensor index for its own `.keras` files, kept in `metadata.json` (Keras never reads it).

The index lists every variable group in the order it was written (its path and its owner's
name) and, per group, each dataset's dtype, shape and byte offset inside `model.weights.h5`, plus
the member's size and where its tensor data starts. The index is never trusted on its own: the
loader lays out the HDF5 metadata that keramic's writer produces for exactly those groups, names,
dtypes and shapes (`h5_layout`: the planning work of a save, no tensor data) and takes the fast path only when that is
byte for byte the member's HDF5 metadata and puts every tensor at the offset the index gives. Then
h5py would read the same datasets at the same offsets, so the index can only say what the HDF5
file says. Anything else (a file Keras wrote, an archive edited or re-saved by another tool, a
malformed or lying index) makes the loader read the HDF5 file instead. Tensors are read straight
into their variables, with the member's CRC-32 checked over every byte on the way.
"""

import os
import struct
import zipfile

import torch

from keramic.errors import FileFormatError
from keramic.saving.stores import atomic, bulk_io, h5_layout, zip_archive
from keramic.saving.stores.h5_weights import GroupStore
from keramic.saving.stores.zip_member import crc_error, member_data_offset

KEY = "keramic_weights_index"
VERSION = 2
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


def _group_path(path):
    return f"{path}/vars" if path else "vars"


def build(image, groups):
    """The index entry for `h5_layout.WeightsImage(groups)`, or None when a group's datasets are not
    "0", "1", ... in order (a `save_own_variables` override chose the keys: h5py reads that file)."""
    entries = _listing(image)
    if entries is None:
        return None
    return {
        "version": VERSION,
        "size": image.size,
        "metadata_size": image.data_start,
        "owners": [[path, str(getattr(owner, "name", ""))] for path, owner, _ in groups],
        "groups": entries,
    }


class _Owner:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


def _laid_out(index):
    """The `WeightsImage` keramic's writer makes for the index's groups, names, dtypes and shapes
    (planned from dtypes and shapes alone, no tensors), or None when the index cannot describe one."""
    owners, groups = index.get("owners"), index.get("groups")
    if not isinstance(owners, list) or not isinstance(groups, dict):
        return None
    if not all(isinstance(o, list) and len(o) == 2 and isinstance(o[0], str) and isinstance(o[1], str) for o in owners):
        return None
    paths = {_group_path(path) for path, _ in owners}
    if len(paths) != len(owners) or not paths.issuperset(groups):
        return None
    planned = []
    try:
        for path, name in owners:
            items = groups.get(_group_path(path), [])
            planned.append((path, _Owner(name), [h5_layout.PlannedTensor(dtype, tuple(shape)) for dtype, shape, _ in items]))
        return h5_layout.WeightsImage(planned)
    except (TypeError, ValueError, OverflowError, struct.error):
        return None


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
    """Variable groups read through a checked index: `stored(path)` lists entries, `read(plan)` fills
    variables, reading the whole member once in order and refusing it unless its CRC-32 matches."""

    def __init__(self, path, fd, groups, member, pending_crc=None):
        self.path, self._fd, self._groups = path, fd, groups
        self._member = member  # (ZipInfo, absolute offset of its data)
        self._pending_crc = pending_crc  # the member's CRC-32, being computed since the index was opened
        self._verified = False

    def stored(self, group_path):
        return self._groups.get(group_path, [])

    def store(self, group_path):
        """The group's entries as "0", "1", ..., for a `load_own_variables` override."""
        items = {str(index): entry for index, entry in enumerate(self.stored(group_path))}
        return GroupStore(items, self._value)

    def _value(self, entry):
        if not self._verified:
            self.verify([])
        value = torch.empty(entry.shape, dtype=TORCH_DTYPES[entry.dtype])
        if entry.nbytes:
            bulk_io.read_into(self._fd, [(_writable_bytes(value), entry.offset)], self.path)
        return value if value.dtype == torch.bfloat16 else value.numpy()

    def read(self, plan):
        """Fill each variable of `plan` [(entry, variable)]: straight into its memory when it is a
        contiguous CPU tensor of the stored dtype, else through a scratch tensor and a cast."""
        if self._pending_crc is not None:
            self.verify([])  # the check begun by `open_index`: it ends before any variable changes
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
        if self._verified:
            # `verify_first` already matched the member's CRC-32 through this descriptor; a save
            # replaces the file by rename, so the bytes behind it cannot have changed since.
            bulk_io.scatter_read(self._fd, jobs, self.path)
        # Checked entries never overlap, so reads overlap only when one entry fills two variables.
        elif len({offset for _, offset in jobs}) == len(jobs):
            # One in-order pass in large reads (not one per tensor); the CRC-32 is checked on the
            # bytes as they land in the variables.
            self.verify(jobs)
        else:  # one entry read into two variables: check the member first
            self.verify([])
            bulk_io.scatter_read(self._fd, jobs, self.path)
        for variable in direct:
            # The write bypassed torch: tell it the value changed (optimizers cache host copies by version).
            torch.autograd.graph.increment_version(variable)
        with torch.no_grad():
            for variable, value in converted:
                variable.copy_(value)

    def verify(self, jobs):
        """Check the whole member's CRC-32 (reading it in order into `jobs` when there are any,
        else over a memory map), refusing it unless it matches."""
        info, start = self._member
        pending, self._pending_crc = self._pending_crc, None
        try:
            if pending is not None:
                crc = pending()
            elif jobs:
                crc = bulk_io.read_checked(self._fd, jobs, start, info.file_size, self.path)
            else:
                crc = bulk_io.span_crc(self._fd, start, info.file_size, self.path)
        except EOFError as error:
            raise FileFormatError(f"{self.path}: member '{info.filename}': {error} (file truncated?)") from None
        if crc != info.CRC:
            raise crc_error(self.path, info, crc)
        self._verified = True

    def close(self):
        _settle(self._pending_crc)
        self._pending_crc = None
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _metadata(archive, name):
    """The index in `name`; a member that cannot be read (a CRC mismatch, bad JSON) is a damaged archive."""
    if name not in archive.namelist():
        return None
    value = atomic.read_json_member(archive.filename or "", archive, name, MAX_METADATA_BYTES)
    return value.get(KEY) if isinstance(value, dict) else None


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entries(image, groups, data_start):
    """Per group, an `Entry` for each dataset of `image` (laid out from the index's `groups`), or None
    when the index puts a tensor anywhere but where the layout does, or names a dtype torch lacks."""
    checked = {}
    for dataset in image.datasets:
        dtype, shape, offset = groups[dataset.group_path][int(dataset.index)]
        if dtype not in TORCH_DTYPES or len(shape) > MAX_RANK or not all(type(d) is int for d in shape):
            return None
        if dataset.nbytes:
            if type(offset) is not int or offset != dataset.offset:
                return None
            offset += data_start
        elif offset is not None:
            return None
        checked.setdefault(dataset.group_path, []).append(Entry(dtype, dataset.shape, offset, dataset.nbytes))
    return checked


def open_index(path, archive, member, metadata_member, verify_first=True):
    """`IndexedWeights` for `member` when `metadata_member` holds an index that is exactly what the
    member's HDF5 metadata says (see the module docstring), else None.

    `verify_first` checks the member's CRC-32 in a pass of its own before any variable is written
    (loading into a user's model), begun on the reading threads as soon as the member is found, so
    it overlaps the index check and the caller's planning; without it the check runs on the bytes as they are read into
    the variables, which suits a model built for this load and dropped if it fails.
    """
    index = _metadata(archive, metadata_member)
    if not isinstance(index, dict) or index.get("version") != VERSION:
        return None
    size, metadata_size = index.get("size"), index.get("metadata_size")
    if not (_is_count(size) and _is_count(metadata_size) and metadata_size <= size):
        return None
    info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != size:
        return None
    fd = zip_archive.archive_fd(archive)  # the version of the file the archive read, not the path anew
    pending = None
    try:
        with os.fdopen(os.dup(fd), "rb") as handle:
            data_start = member_data_offset(handle, info, path)
        if data_start + size > os.fstat(fd).st_size:
            raise EOFError
        if verify_first:  # on the reading threads while the index is checked and the load planned
            pending = bulk_io.span_crc_started(fd, data_start, size, path)
        image = _laid_out(index)
        if image is None or (image.size, image.data_start) != (size, metadata_size):
            raise ValueError
        groups = _entries(image, index["groups"], data_start)
        if groups is None:
            raise ValueError
        header = bytearray(metadata_size)
        bulk_io.read_into(fd, [(header, data_start)], path)
        if header != image.metadata:
            raise ValueError
    except (ValueError, EOFError, OSError):
        _settle(pending)
        os.close(fd)
        return None
    except BaseException:
        _settle(pending)
        os.close(fd)
        raise
    return IndexedWeights(path, fd, groups, (info, data_start), pending)


def _settle(pending):
    """Let a CRC-32 begun on the reading threads finish (its value unused) before its file is closed."""
    if pending is not None:
        try:
            pending()
        except (OSError, EOFError):
            pass


def _listing(image):
    """{group path: [[dtype, shape, offset], ...]} of a laid-out image, as the index records it; None
    when a group's datasets are not "0", "1", ... in order."""
    listing = {}
    for dataset in image.datasets:
        group = listing.setdefault(dataset.group_path, [])
        if dataset.index != str(len(group)):
            return None
        group.append([dataset.dtype_name, list(dataset.shape), dataset.offset])
    return listing

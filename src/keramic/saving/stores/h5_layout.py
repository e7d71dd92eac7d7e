"""Lay out a Keras 3 weights file (HDF5) ourselves: all metadata first, then raw tensor bytes.

Creating datasets through h5py costs ~50 µs each and hides where data lands. A weights file needs
only a few HDF5 structures, the ones h5py writes by default: superblock v0, symbol-table groups
(v1 B-tree, local heap, symbol nodes), v1 object headers, contiguous datasets and one global heap
for the variable-length string attributes. Building them here costs a few µs per tensor, and every
tensor's offset is known before a byte is written, so the data can go out in large direct writes
(straight into a zip member, or a plain file) and an index can point at it. h5py and Keras read the
result as their own files.
"""

import functools
import math
import struct
from typing import NamedTuple

import numpy as np
import torch

from keramic.saving.tree import entries

UNDEFINED = 0xFFFFFFFFFFFFFFFF
SIGNATURE = b"\x89HDF\r\n\x1a\n"
SUPERBLOCK_SIZE = 96
LEAF_K = 4  # a symbol node holds 2 * LEAF_K entries (HDF5's default)
INTERNAL_K = 16  # a group B-tree node holds 2 * INTERNAL_K children (HDF5's default)
SNOD_CAPACITY = 2 * LEAF_K
BTREE_CAPACITY = 2 * INTERNAL_K
SNOD_SIZE = 8 + SNOD_CAPACITY * 40
BTREE_NODE_SIZE = 24 + (BTREE_CAPACITY + 1) * 8 + BTREE_CAPACITY * 8
HEAP_HEADER_SIZE = 32
HEAP_FREE_NULL = 1  # HDF5's "no free block" marker in a local heap
GLOBAL_HEAP_MIN_SIZE = 4096
GLOBAL_HEAP_MAX_OBJECTS = 65535
DATA_ALIGNMENT = 64

# Message types and encodings, as h5py writes them.
_DATASPACE, _DATATYPE, _FILL, _LAYOUT, _ATTRIBUTE, _SYMBOL_TABLE = 0x01, 0x03, 0x05, 0x08, 0x0C, 0x11
_FILL_VALUE = bytes.fromhex("0202020100000000")  # v2: late allocation, fill if set, default value
_VLEN_UTF8 = bytes.fromhex("190101001000000010000000010000000000080000000000")  # + padding to 24
_SCALAR_SPACE = bytes.fromhex("0100000000000000")


def _align(offset):
    return offset + -offset % DATA_ALIGNMENT


def _pad8(size):
    return (size + 7) & ~7


def _message(kind, body, flags=0):
    body = body + b"\0" * (_pad8(len(body)) - len(body))
    return struct.pack("<HHB3x", kind, len(body), flags) + body


_FILL_MESSAGE = _message(_FILL, _FILL_VALUE, flags=1)
_DATATYPES: dict[object, bytes] = {}


def _datatype_message(dtype):
    message = _DATATYPES.get(dtype)
    if message is None:
        import h5py

        message = _message(_DATATYPE, h5py.h5t.py_create(dtype).encode()[2:], flags=1)
        _DATATYPES[dtype] = message
    return message


@functools.lru_cache(maxsize=4096)
def _dataspace_message(shape):
    if not shape:
        return _message(_DATASPACE, _SCALAR_SPACE)
    dims = struct.pack(f"<{len(shape)}Q", *shape)
    return _message(_DATASPACE, struct.pack("<BBB5x", 1, len(shape), 1) + dims + dims)


def _string_attribute(name, reference):
    """Attribute message for a variable-length UTF-8 string stored in the global heap."""
    name = name.encode() + b"\0"
    header = struct.pack("<BBHHH", 1, 0, len(name), 20, 8)
    body = header + name.ljust(_pad8(len(name)), b"\0") + _VLEN_UTF8 + _SCALAR_SPACE + reference
    return _message(_ATTRIBUTE, body)


class PlannedTensor(NamedTuple):
    """A tensor's dtype name and shape, no data: lays out a file (to check an index against) cheaply."""

    dtype_name: str
    shape: tuple


class Dataset:
    """One variable's dataset (`<group_path>/<key>`): where its bytes go and which buffer holds them
    (None for a `PlannedTensor`)."""

    __slots__ = ("group_path", "index", "dtype_name", "file_dtype", "shape", "buffer", "nbytes", "offset", "address", "attribute")

    def __init__(self, group_path, index, variable):
        self.group_path, self.index = group_path, index
        if isinstance(variable, PlannedTensor):
            self.dtype_name, self.file_dtype, self.buffer = variable.dtype_name, file_dtype(variable.dtype_name), None
            self.shape = variable.shape
            self.nbytes = math.prod(self.shape) * self.file_dtype.itemsize
        else:
            self.dtype_name, self.file_dtype, self.buffer = tensor_buffer(variable)
            self.shape = tuple(int(d) for d in variable.shape)
            self.nbytes = self.buffer.nbytes
        self.offset = self.address = self.attribute = None


_FILE_DTYPES = {torch.bfloat16: ("bfloat16", np.dtype("V2"))}  # torch dtype -> (name, dtype in the file)


@functools.lru_cache(maxsize=64)
def file_dtype(dtype_name):
    """The numpy dtype a tensor of `dtype_name` ("float32", "bfloat16", ...) has in the file."""
    return np.dtype("V2") if dtype_name == "bfloat16" else np.dtype(dtype_name).newbyteorder("<")


def tensor_buffer(variable):
    """(dtype name, numpy dtype used in the file, flat uint8 view of the variable's own memory)."""
    value = variable.detach()
    if value.device.type != "cpu":
        value = value.cpu()
    if not value.is_contiguous():
        value = value.contiguous()
    array = value.view(torch.int16).numpy() if value.dtype == torch.bfloat16 else value.numpy()
    described = _FILE_DTYPES.get(value.dtype)
    if described is None:
        described = _FILE_DTYPES[value.dtype] = (array.dtype.name, array.dtype.newbyteorder("<"))
    return described[0], described[1], array.reshape(-1).view(np.uint8)


class _Group:
    __slots__ = ("children", "attribute", "address", "btree_address", "heap_address", "plan")

    def __init__(self):
        self.children = {}
        self.attribute = None


class _Header(NamedTuple):
    """A dataset's object header with zeros where its data address, byte count and (bfloat16)
    string reference go: one template per dtype, shape and attribute, shared by every such dataset."""

    template: bytes
    address_at: int  # where the layout message's data address and size ("<QQ") go


class WeightsImage:
    """A planned HDF5 file: `metadata` holds bytes [0, data_start); tensors follow at their offsets.

    `groups` are `(path, owner, variables)` as `tree.variable_groups` lists them (variables a list,
    or a dict keyed by a `save_own_variables` override). Tensor offsets are
    multiples of DATA_ALIGNMENT (the zip writer aligns the member's start to match).
    """

    def __init__(self, groups):
        self.datasets = []
        self._strings = []
        self._headers = {}
        root = _Group()
        for path, owner, variables in groups:
            group_path = f"{path}/vars" if path else "vars"
            node = root
            for part in group_path.split("/"):
                node = node.children.setdefault(part.encode(), _Group())
            node.attribute = self._string(str(getattr(owner, "name", "")))
            for key, variable in entries(variables):
                dataset = Dataset(group_path, key, variable)
                if dataset.dtype_name == "bfloat16":
                    dataset.attribute = self._string("bfloat16")
                node.children[key.encode()] = dataset
                self.datasets.append(dataset)
        self._cursor = SUPERBLOCK_SIZE
        order = []
        self._allocate_group(root, order)
        collections = _global_heaps(self._strings)
        heap_start = self._cursor
        references = _string_references(self._strings, heap_start, collections)
        self._cursor += sum(len(c) for c in collections)
        self.data_start = cursor = _align(self._cursor)
        for dataset in self.datasets:
            if dataset.nbytes:
                dataset.offset = cursor = cursor + -cursor % DATA_ALIGNMENT
                cursor += dataset.nbytes
        self.size = cursor
        # Every structure is written in place into one zeroed buffer: HDF5's padding and unused
        # slots are zeros, so only the fields that carry something are written.
        out = bytearray(self.data_start)
        out[:SUPERBLOCK_SIZE] = self._superblock(root)
        for item in order:
            if isinstance(item, Dataset):
                _write_dataset(out, item, self._header(item), references)
            else:
                self._write_group(out, item, references)
        out[heap_start : heap_start + sum(len(c) for c in collections)] = b"".join(collections)
        self.metadata = bytes(out)

    def buffers(self):
        """The whole file as consecutive byte buffers: metadata, then each tensor after its zero padding."""
        zeros = bytes(DATA_ALIGNMENT)
        buffers, cursor = [self.metadata], self.data_start
        for dataset in self.datasets:
            if dataset.nbytes:
                buffers.append(zeros[: dataset.offset - cursor])
                buffers.append(dataset.buffer)
                cursor = dataset.offset + dataset.nbytes
        return buffers

    def _string(self, text):
        self._strings.append(text.encode())
        return len(self._strings) - 1

    def _allocate_group(self, group, order):
        """Assign addresses to a group's header, B-tree, heap and symbol nodes, then its children."""
        names = sorted(group.children)
        group.address = cursor = self._cursor
        cursor += 40 + (72 if group.attribute is not None else 0)
        order.append(group)
        heap_offsets, heap_size = {}, 8
        for name in names:
            heap_offsets[name] = heap_size
            heap_size += (len(name) + 8) & ~7  # the name, its NUL and padding to 8
        snods = [names[i : i + SNOD_CAPACITY] for i in range(0, len(names), SNOD_CAPACITY)]
        btree = []
        for count in _btree_levels(len(snods)):
            btree.append(range(cursor, cursor + count * BTREE_NODE_SIZE, BTREE_NODE_SIZE))
            cursor += count * BTREE_NODE_SIZE
        group.btree_address = btree[-1][0]
        group.heap_address = cursor
        cursor += HEAP_HEADER_SIZE + heap_size
        snod_addresses = range(cursor, cursor + len(snods) * SNOD_SIZE, SNOD_SIZE)
        self._cursor = cursor + len(snods) * SNOD_SIZE
        group.plan = (names, heap_offsets, heap_size, snods, snod_addresses, btree)
        children, header = group.children, self._header
        for name in names:
            child = children[name]
            if isinstance(child, _Group):
                self._allocate_group(child, order)
            else:
                child.address = self._cursor
                self._cursor += len(header(child).template)
                order.append(child)

    def _header(self, dataset):
        """The object header template of a dataset: dataspace, datatype, fill value, contiguous
        layout, and the "dtype" attribute for bfloat16."""
        attributed = dataset.attribute is not None
        key = (dataset.file_dtype, dataset.shape, attributed)
        header = self._headers.get(key)
        if header is None:
            prefix = _dataspace_message(dataset.shape) + _datatype_message(dataset.file_dtype) + _FILL_MESSAGE
            size = len(prefix) + 32 + (72 if attributed else 0)
            layout = struct.pack("<HHB3xBB", _LAYOUT, 24, 0, 3, 1).ljust(32, b"\0")
            attribute = _string_attribute_prefix("dtype") + bytes(16) if attributed else b""
            template = struct.pack("<BBHII4x", 1, 0, 5 if attributed else 4, 1, size) + prefix + layout + attribute
            header = self._headers[key] = _Header(template, 16 + len(prefix) + 10)
        return header

    def _superblock(self, root):
        return (
            SIGNATURE
            + struct.pack("<8B", 0, 0, 0, 0, 0, 8, 8, 0)
            + struct.pack("<HHI", LEAF_K, INTERNAL_K, 0)
            + struct.pack("<4Q", 0, UNDEFINED, self.size, UNDEFINED)
            + struct.pack("<QQII2Q", 0, root.address, 1, 0, root.btree_address, root.heap_address)
        )

    def _write_group(self, out, group, references):
        """A group's object header (symbol table, "name" attribute), B-tree, local heap and symbol nodes."""
        names, heap_offsets, heap_size, snods, snod_addresses, btree = group.plan
        at, pack_into, attributed = group.address, struct.pack_into, group.attribute is not None
        messages, size = (2, 96) if attributed else (1, 24)  # symbol table (+ "name" attribute)
        pack_into("<BBHII4xHHB3xQQ", out, at, 1, 0, messages, 1, size, _SYMBOL_TABLE, 16, 0, group.btree_address, group.heap_address)
        if attributed:
            _write_string_attribute(out, at + 40, "name", references[group.attribute])
        if len(snods) <= 1:  # one B-tree node pointing at one symbol node, or at none
            if snods:
                pack_into("<4sBBHQQQQQ", out, btree[0][0], b"TREE", 0, 0, 1, UNDEFINED, UNDEFINED, 0, snod_addresses[0], heap_offsets[names[-1]])
            else:
                pack_into("<4sBBHQQQ", out, btree[0][0], b"TREE", 0, 0, 0, UNDEFINED, UNDEFINED, 0)
        else:
            _write_btree(out, heap_offsets, snods, snod_addresses, btree)
        heap = group.heap_address
        pack_into("<4s4xQQQ", out, heap, b"HEAP", heap_size, HEAP_FREE_NULL, heap + HEAP_HEADER_SIZE)
        start = heap + HEAP_HEADER_SIZE + 8
        out[start : start + heap_size - 8] = b"".join(name.ljust((len(name) + 8) & ~7, b"\0") for name in names)
        children = group.children
        for chunk, at in zip(snods, snod_addresses):
            pack_into("<4sBBH", out, at, b"SNOD", 1, 0, len(chunk))
            at += 8
            for name in chunk:
                child = children[name]
                if child.__class__ is _Group:
                    pack_into("<QQII2Q", out, at, heap_offsets[name], child.address, 1, 0, child.btree_address, child.heap_address)
                else:
                    pack_into("<QQ", out, at, heap_offsets[name], child.address)
                at += 40


def _write_dataset(out, dataset, header, references):
    """A dataset's object header: its template, then its data address and size (and string reference)."""
    at, template = dataset.address, header.template
    out[at : at + len(template)] = template
    struct.pack_into("<QQ", out, at + header.address_at, UNDEFINED if dataset.offset is None else dataset.offset, dataset.nbytes)
    if dataset.attribute is not None:
        end = at + len(template)
        out[end - 16 : end] = references[dataset.attribute]


@functools.lru_cache(maxsize=8)
def _string_attribute_prefix(name):
    """An attribute message for a variable-length UTF-8 string, all but its 16-byte heap reference."""
    message = _string_attribute(name, bytes(16))
    return message[:-16]


def _write_string_attribute(out, at, name, reference):
    prefix = _string_attribute_prefix(name)
    out[at : at + len(prefix)] = prefix
    out[at + len(prefix) : at + len(prefix) + 16] = reference


def _btree_levels(leaf_count):
    """Number of B-tree nodes per level, from level 0 (pointing at symbol nodes) to the root."""
    levels = [max(1, -(-leaf_count // BTREE_CAPACITY))]
    while levels[-1] > 1:
        levels.append(-(-levels[-1] // BTREE_CAPACITY))
    return levels


def _write_btree(out, heap_offsets, snods, snod_addresses, btree):
    """Write every B-tree node. Keys are heap offsets of names: a child's left key is the largest
    name before it ("" at the far left), its right key the largest name in it."""
    children = [(address, chunk[-1]) for address, chunk in zip(snod_addresses, snods)]
    for level, addresses in enumerate(btree):
        above = []
        left_key = 0
        for position, address in enumerate(addresses):
            mine = children[position * BTREE_CAPACITY : (position + 1) * BTREE_CAPACITY]
            left = addresses[position - 1] if position > 0 else UNDEFINED
            right = addresses[position + 1] if position + 1 < len(addresses) else UNDEFINED
            struct.pack_into("<4sBBHQQQ", out, address, b"TREE", 0, level, len(mine), left, right, left_key)
            at = address + 32  # after the header and the first key
            for child_address, largest in mine:
                struct.pack_into("<QQ", out, at, child_address, heap_offsets[largest])
                at += 16
            if mine:
                above.append((address, mine[-1][1]))
                left_key = heap_offsets[mine[-1][1]]
        children = above


def _global_heaps(strings):
    """Global heap collections holding `strings` (objects numbered from 1 in each collection)."""
    collections = []
    for start in range(0, len(strings), GLOBAL_HEAP_MAX_OBJECTS):
        chunk = strings[start : start + GLOBAL_HEAP_MAX_OBJECTS]
        objects = [struct.pack("<HH4xQ", number, 0, len(text)) + text.ljust(_pad8(len(text)), b"\0") for number, text in enumerate(chunk, 1)]
        used = 16 + sum(len(o) for o in objects)
        size = max(GLOBAL_HEAP_MIN_SIZE, used)
        if 0 < size - used < 16:
            size += 16
        if size > used:
            objects.append(struct.pack("<HH4xQ", 0, 0, size - used))
        body = struct.pack("<4sB3xQ", b"GCOL", 1, size) + b"".join(objects)
        collections.append(body.ljust(size, b"\0"))
    return collections


def _string_references(strings, address, collections):
    """Vlen references (length, collection address, object number) for each string, in order."""
    starts = []
    for collection in collections:
        starts.append(address)
        address += len(collection)
    return [
        struct.pack("<IQI", len(text), starts[number // GLOBAL_HEAP_MAX_OBJECTS], number % GLOBAL_HEAP_MAX_OBJECTS + 1) for number, text in enumerate(strings)
    ]

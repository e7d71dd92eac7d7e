"""Guards for reading HDF5 files from anywhere: nothing read outside the file, no unbounded work.

A name read from a file (a layer name, a weight name, a group path) may hold `/`, so h5py would
follow every link along it; here each component is resolved on its own and must be a hard link,
so soft links, external links (another file) and links through them are refused at any depth.
Datasets with external storage (raw bytes in another file) or virtual sources (other files'
datasets) are refused too, and a dataset's declared shape must agree with the bytes it stores
before anything is allocated for it. Walks over groups are iterative, bounded in depth and count,
and visit each object once, so hard-link cycles end. Damaged structures surface as
`FileFormatError`s naming the file and the entry, never as h5py's own exceptions.
"""

import contextlib
from collections.abc import Iterator

import h5py

from keramic.errors import FileFormatError, KeramicError

MAX_DEPTH = 64  # group nesting; Keras nests a few levels per nested model
MAX_OBJECTS = 1_000_000  # groups and datasets one walk visits
MAX_INFLATION = 1000  # a filtered (compressed) dataset may expand at most this much
# Built-in HDF5 filters (deflate, shuffle, fletcher32, szip, nbit, scaleoffset, lzf). Any other
# filter would be a plugin library loaded from disk, so it is refused.
BUILTIN_FILTERS = {1, 2, 3, 4, 5, 6, 32000}

# What h5py raises when the bytes of a damaged file do not decode as HDF5 structures.
H5_DAMAGE = (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeError)


def entry_error(filename: str, entry: str, message: str) -> FileFormatError:
    return FileFormatError(f"{filename}: entry '{entry}': {message}")


@contextlib.contextmanager
def reading(filename: str, entry: str) -> Iterator[None]:
    """Report a damaged HDF5 structure (or a walk too deep for Python) as a FileFormatError naming
    the file and the entry; keramic's own errors pass through."""
    try:
        yield
    except KeramicError:
        raise
    except FileNotFoundError:
        raise
    except (*H5_DAMAGE, RecursionError) as error:
        raise damaged(filename, entry, error) from None


def damaged(filename: str, entry: str, error: BaseException) -> FileFormatError:
    return entry_error(filename, entry, f"cannot be read: the file is damaged ({type(error).__name__}: {error}).")


def name_parts(filename: str, root: h5py.Group, name: str) -> list[str]:
    """The components of a name read from a file, to be looked up below `root`; absolute paths,
    empty, `.` or `..` components and NUL characters are refused (no name Keras writes has them)."""
    if not isinstance(name, str):
        raise entry_error(filename, root.name, f"expected a name, found {type(name).__name__}.")
    parts = name.split("/")
    if "\0" in name or any(part in ("", ".", "..") for part in parts):
        message = f"{name[:200]!r} is not a valid name (absolute, empty, '.' or '..' parts, or NUL)."
        raise entry_error(filename, _join(root, name[:200]), message)
    return parts


def _join(parent: h5py.Group, name: str) -> str:
    return f"{parent.name.rstrip('/')}/{name}"


def hard_child(filename: str, parent: h5py.Group, part: str) -> h5py.Group | h5py.Dataset | None:
    """The object one link component names in `parent` (None when absent); any link but a hard link
    could lead out of the file and is refused."""
    try:
        link = parent.get(part, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.HardLink):
            return parent[part]
    except H5_DAMAGE as error:
        raise damaged(filename, _join(parent, part), error) from None
    raise entry_error(filename, _join(parent, part), f"{type(link).__name__} entries are not allowed in a weights file.")


def resolve(filename: str, root: h5py.Group, name: str) -> h5py.Group | h5py.Dataset | None:
    """The object a (possibly multi-component) name read from the file addresses below `root`,
    every component a hard link to an object inside the file; None when a component is absent."""
    node: h5py.Group | h5py.Dataset = root
    for part in name_parts(filename, root, name):
        if not isinstance(node, h5py.Group):
            raise entry_error(filename, node.name, "expected a group, found a dataset.")
        found = hard_child(filename, node, part)
        if found is None:
            return None
        node = found
    return node


def check_dataset(filename: str, dataset: h5py.Dataset, file_size: int | None = None) -> None:
    """Refuse storage outside the file, plugin filters and declared shapes the stored bytes cannot
    fill. `file_size`: the file's size in bytes, when the caller knows it already."""
    try:
        _check_dataset(filename, dataset, file_size)
    except H5_DAMAGE as error:
        raise damaged(filename, dataset.name, error) from None


def _check_dataset(filename: str, dataset: h5py.Dataset, file_size: int | None) -> None:
    plist = dataset.id.get_create_plist()
    if dataset.is_virtual or plist.get_external_count() > 0:
        raise entry_error(filename, dataset.name, "virtual or external datasets are not allowed in a weights file.")
    for index in range(plist.get_nfilters()):
        code, _, _, filter_name = plist.get_filter(index)
        if code not in BUILTIN_FILTERS:
            message = f"uses the HDF5 filter {code} ({filter_name.decode(errors='replace')}), which is not a built-in filter; refused."
            raise entry_error(filename, dataset.name, message)
    declared = int(dataset.size or 0) * dataset.dtype.itemsize
    if declared == 0:
        return
    stored = dataset.id.get_storage_size()
    layout = plist.get_layout()
    if layout == h5py.h5d.CONTIGUOUS and not plist.get_nfilters():
        offset = dataset.id.get_offset()
        if stored != declared or offset is None:
            raise _size_error(filename, dataset, declared, stored)
        if offset + stored > (dataset.file.id.get_filesize() if file_size is None else file_size):
            message = f"its data lies beyond the end of the file (offset {offset}, {stored} bytes): the file is truncated or damaged."
            raise entry_error(filename, dataset.name, message)
    elif layout == h5py.h5d.COMPACT:
        if stored != declared:
            raise _size_error(filename, dataset, declared, stored)
    elif stored == 0 or declared > stored * MAX_INFLATION:
        raise _size_error(filename, dataset, declared, stored)


def _size_error(filename: str, dataset: h5py.Dataset, declared: int, stored: int) -> FileFormatError:
    message = (
        f"declares shape {tuple(dataset.shape)} of {dataset.dtype} ({declared:,} bytes), but the file stores "
        f"{stored:,} bytes for it; refused before allocating."
    )
    return entry_error(filename, dataset.name, message)


class WalkBudget:
    """How many objects walks over one file may still visit, and how deep they may go."""

    def __init__(self, filename: str, objects: int | None = None, depth: int | None = None):
        self.filename = filename
        self.left = MAX_OBJECTS if objects is None else objects
        self.depth = MAX_DEPTH if depth is None else depth

    def spend(self, entry: str, depth: int) -> None:
        self.left -= 1
        if self.left < 0:
            raise entry_error(self.filename, entry, "the file holds more objects than any weights file; refused.")
        if depth > self.depth:
            raise entry_error(self.filename, entry, f"groups nest deeper than {self.depth} levels; refused.")


def walk(filename: str, root: h5py.Group, skip: tuple[str, ...] = (), budget: WalkBudget | None = None) -> Iterator[tuple[str, h5py.Group | h5py.Dataset]]:
    """(path below `root`, object) for every object under `root`, parents before children, names in
    the file's order; each object once (hard-link cycles end), depth and count bounded by `budget`
    (shared by several walks over one file). Children of `root` named in `skip` are left out."""
    budget = WalkBudget(filename) if budget is None else budget
    seen = {root.id}
    stack: list[tuple[str, h5py.Group, int]] = [("", root, 0)]
    while stack:
        path, group, depth = stack.pop()
        with reading(filename, group.name):
            names = list(group.keys())
        below = []
        for name in names:
            if group is root and name in skip:
                continue
            child = hard_child(filename, group, name)
            if child is None or child.id in seen:
                continue
            seen.add(child.id)
            budget.spend(child.name, depth + 1)
            child_path = f"{path}/{name}" if path else name
            yield child_path, child
            if isinstance(child, h5py.Group):
                below.append((child_path, child, depth + 1))
        stack.extend(reversed(below))

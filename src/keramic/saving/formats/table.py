"""The one table of file formats: what each is called, how it is recognised, saved, loaded and inspected.

Each format module registers its row when it is imported; `saving.api`, `saving.convert`,
`saving.inspect` and the CLI find formats here and never by if/elif chains of their own. Detection
reads what is at the path (magic bytes, a directory's index file), never trusts the name alone,
and tries rows in `order`; a path's suffix only picks the format to write.

>>> table.detect("model.keras").name
'keras_v3'
>>> table.for_target("model.safetensors", holds_model=False).name
'safetensors'
"""

import os
from dataclasses import dataclass
from typing import Any, Callable

from keramic.errors import FileFormatError
from keramic.saving.stores import atomic

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class FileFormat:
    """One row: `recognise(path)` says from the path's content whether it holds this format.

    `save(model, path, **options)` writes it; `load(path, custom_objects=, compile=, safe_mode=)`
    rebuilds a whole model; `load_weights(model, path, skip_mismatch=, by_name=, verify=)` fills a
    model; `inspect(path)` describes the file from metadata only. Missing callables mean "cannot".
    """

    name: str
    description: str  # a sentence for reports and errors
    recognise: Callable[[str], bool]
    title: str = ""  # a few words for one-line listings (`keramic convert`'s report)
    suffixes: tuple[str, ...] = ()
    holds_model: bool = False
    save: Callable[..., Any] | None = None
    load: Callable[..., Any] | None = None
    load_weights: Callable[..., Any] | None = None
    inspect: Callable[[str], dict] | None = None
    hint: str = ""  # what to do instead, when asked for something the format cannot give (a model from weights)
    target_path: Callable[..., str] | None = None  # where a save lands, from the path asked for and the options
    name_based: bool = False  # recognises some paths by name alone (a sharded index for `name.safetensors`)
    order: int = 50  # detection order: specific recognisers (a name-based index) before general ones


_ROWS: dict[str, FileFormat] = {}


def register(row: FileFormat) -> FileFormat:
    """Add (or replace) a row; returns it."""
    _ROWS[row.name] = row
    return row


def formats() -> list[FileFormat]:
    """Every registered row, in detection order."""
    return sorted(_ROWS.values(), key=lambda row: (row.order, row.name))


def get(name: str) -> FileFormat:
    try:
        return _ROWS[name]
    except KeyError:
        raise FileFormatError(f"No file format named {name!r}; known: {', '.join(sorted(_ROWS))}.") from None


def head(path: str, size: int = 8) -> bytes:
    """The first bytes of a file (b"" for a directory)."""
    if os.path.isdir(path):
        return b""
    atomic.check_regular(path)  # a FIFO would block `open`; a device or socket is no file format
    with open(path, "rb") as handle:
        return handle.read(size)


def detect(path: str) -> FileFormat:
    """The row whose recogniser accepts what is at `path`."""
    path = os.fspath(path)
    exists = os.path.lexists(path)
    for row in formats():
        if (exists or row.name_based) and row.recognise(path):
            return row
    if not exists:
        raise FileNotFoundError(f"No file or directory found at {path}")
    what = "a directory" if os.path.isdir(path) else f"a file starting with {head(path)!r}"
    raise FileFormatError(f"{path}: unrecognised file format ({what}); expected one of: " + "; ".join(row.description for row in formats()) + ".")


def for_target(path: str, holds_model: bool | None = None) -> FileFormat | None:
    """The row a target path's suffix names (the longest suffix wins), among model formats, weights
    formats, or (`holds_model=None`) both."""
    path = os.fspath(path)
    best = None
    for row in formats():
        if (holds_model is not None and row.holds_model != holds_model) or row.save is None:
            continue
        for suffix in row.suffixes:
            if path.endswith(suffix) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), row)
    return None if best is None else best[1]


def refuse_by_name(path: str, by_name: bool) -> None:
    """`load_weights(..., by_name=True)` matches layers by name, which only legacy `.h5` layouts support."""
    if by_name:
        raise FileFormatError(f"{path}: `by_name` only supports loading legacy '.h5' or '.hdf5' files.")

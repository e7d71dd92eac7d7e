"""Assets: the files objects write with `save_assets(dir_path)` (a vocabulary, a lookup table).

As in Keras, the object at tree path `p` writes into `assets/p/` (the model itself into
`assets/`), and its `load_assets` gets that directory back, or None when nothing was saved there.
Only objects whose class overrides the hook are called, so models without assets cost nothing.
Archive members are checked before extraction: no absolute or `..` names, bounded count and size.
"""

import contextlib
import os
import shutil
import tempfile
import zipfile
from typing import Any, Iterator

from keramic.errors import FileFormatError
from keramic.saving.tree import asset_owners

DIRECTORY = "assets"
MAX_FILES = 100_000
MAX_BYTES = 16 * 1024**3


def _object_directory(root: str, path: str) -> str:
    return os.path.join(root, *path.split("/")) if path else root


@contextlib.contextmanager
def saved_assets(model: Any) -> Iterator[list[tuple[str, str]]]:
    """Call every `save_assets` override into a temporary directory; yields [(archive name, file path)]."""
    owners = list(asset_owners(model, "save_assets"))
    if not owners:
        yield []
        return
    root = tempfile.mkdtemp(prefix="keramic-assets-")
    try:
        for path, owner in owners:
            directory = _object_directory(root, path)
            os.makedirs(directory, exist_ok=True)
            owner.save_assets(directory)
        files = []
        for folder, _, names in os.walk(root):
            for name in sorted(names):
                full = os.path.join(folder, name)
                relative = os.path.relpath(full, root).replace(os.sep, "/")
                files.append((f"{DIRECTORY}/{relative}", full))
        yield sorted(files)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def copy_into(files: list[tuple[str, str]], directory: str) -> None:
    """Copy `saved_assets` files into a model directory (beside config.json)."""
    for name, full in files:
        target = os.path.join(directory, *name.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(full, target)


def load_from_directory(model: Any, root: str | None) -> None:
    """Call every `load_assets` override with its directory under `root` (None where absent)."""
    for path, owner in asset_owners(model, "load_assets"):
        directory = None if root is None else _object_directory(root, path)
        owner.load_assets(directory if directory is not None and os.path.isdir(directory) else None)


def _checked_members(path: str, archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members, total = [], 0
    for info in archive.infolist():
        if not info.filename.startswith(DIRECTORY + "/") or info.is_dir():
            continue
        parts = info.filename.split("/")
        if "\\" in info.filename or any(part in ("", ".", "..") for part in parts[1:]):
            raise FileFormatError(f"{path}: archive entry '{info.filename}' is not a plain relative asset path.")
        total += info.file_size
        members.append(info)
    if len(members) > MAX_FILES or total > MAX_BYTES:
        raise FileFormatError(f"{path}: the archive's assets hold {len(members)} files, {total} bytes; the limits are {MAX_FILES} files, {MAX_BYTES} bytes.")
    return members


def load_from_archive(model: Any, path: str, archive: zipfile.ZipFile) -> None:
    """Extract the archive's `assets/` entries (checked) and call every `load_assets` override."""
    owners = list(asset_owners(model, "load_assets"))
    if not owners:
        return
    members = _checked_members(path, archive)
    with tempfile.TemporaryDirectory(prefix="keramic-assets-") as root:
        for info in members:
            target = os.path.join(root, *info.filename.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
        base = os.path.join(root, DIRECTORY)
        os.makedirs(base, exist_ok=True)  # the model itself always gets a directory, as in Keras
        for object_path, owner in owners:
            directory = _object_directory(base, object_path)
            owner.load_assets(directory if os.path.isdir(directory) else None)

"""The stores helpers every writer and reader uses: atomic commits, fsync, bounded JSON reads.

Writing: into a temp file (or directory) beside the target, fsync, then one rename, so a crash at
any moment leaves either the old file or the complete new one at the target path. Temp names carry
the writer's PID (`.<target>.keramic-<pid>-<token>.tmp`), so a later save to the same target can
tell the leftovers of a killed writer from a save still running in another process, and remove
only those. Reading: JSON from a file or an archive member is size-capped before it is read,
depth-capped, and refused when an object repeats a key (a second value would silently win).
"""

import atexit
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import threading
import zipfile
from typing import Any, Iterator

from keramic.errors import FileFormatError

TEMP_SUFFIX = ".tmp"


MAX_JSON_BYTES = 64 * 2**20  # far above any real config or index; refuses zip bombs and stray huge files
MAX_JSON_DEPTH = 256  # Keras configs nest a few levels per nested model; hostile files nest thousands


def temp_name(target_name, pid=None):
    """A fresh temp file name for `target_name`, owned by `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f".{target_name}.keramic-{pid}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _temp_regex(target_regex):
    return re.compile(rf"\.(?:{target_regex})\.keramic-(\d+)-[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}")


def _pid_alive(pid):
    if pid <= 0:
        return True  # not a PID we could have written: never treat it as dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def remove_stale_temps(directory, target_regex, directories=False):
    r"""Delete the temp files (with `directories`: temp directories) that keramic writers which no
    longer run left in `directory` for targets whose names match `target_regex`; return their names.

    Only names of this module's exact pattern are considered, only when the PID in the name is not
    a live process, and never a symlink or an entry of the other kind; anything else is left alone.

    >>> remove_stale_temps("models", re.escape("m.keras"))
    >>> remove_stale_temps("run/ckpts", r"ckpt-\d+", directories=True)
    """
    pattern = _temp_regex(target_regex)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        full = os.path.join(directory, name)
        if os.path.islink(full) or os.path.isdir(full) != directories:
            continue
        if directories:
            shutil.rmtree(full, ignore_errors=True)
            removed.append(name)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(full)
                removed.append(name)
    return removed


_REMOVALS: list[threading.Thread] = []  # threads deleting trees that a save has replaced


def remove_tree_later(path):
    """Delete the directory `path` (already renamed to a temp name of this process) on a thread.

    Freeing a large checkpoint's blocks takes a third of a second per GiB here (ext4 with
    `discard`), time a save need not wait for once the new data is safe. A tree left behind by a
    killed process carries its PID, so the next save to the same target removes it.
    """
    thread = threading.Thread(target=shutil.rmtree, args=(path,), kwargs={"ignore_errors": True}, name="keramic-remove", daemon=True)
    thread.start()
    _REMOVALS.append(thread)


def wait_for_removals():
    """Block until every tree given to `remove_tree_later` is gone (also run at interpreter exit)."""
    while _REMOVALS:
        _REMOVALS.pop().join()


atexit.register(wait_for_removals)


def fsync_directory(directory: str) -> None:
    """Flush a directory's entries (a rename inside it) to the disk; best effort where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str, value: Any, fsync: bool = True, indent: int | None = None) -> None:
    """Write `value` as JSON to a new file at `path` (inside a temp directory being built), flushed."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=indent)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())


def _create_temp(directory, target_name):
    """Create an empty temp file with the process umask applied (as a plain `open` would)."""
    while True:
        temporary = os.path.join(directory, temp_name(target_name))
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return temporary


@contextlib.contextmanager
def write_atomically(path, fsync=True):
    """Yield a temporary path to write; on success it replaces `path` in one rename.

    `fsync=False` skips flushing to the disk (faster; a power cut may then lose the new file, but
    a killed process still never leaves a broken one).

    >>> with write_atomically("model.keras") as temporary:
    ...     write_everything_to(temporary)
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temps(directory, re.escape(os.path.basename(path)))
    temporary = _create_temp(directory, os.path.basename(path))
    try:
        yield temporary
        if fsync:
            fsync_file(temporary)
        os.replace(temporary, path)
        if fsync:
            fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


# ---------------------------------------------------------------- directories
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: str, second: str) -> bool:
    """Swap two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    return renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0


def commit_directory(temporary: str, target: str, fsync: bool = True, remove_old_later: bool = False) -> None:
    """Make the complete directory `temporary` appear at `target` by rename.

    An older directory at `target` is swapped out in one step (or, where swapping is unsupported,
    renamed aside first) and then deleted: at once, or on a thread with `remove_old_later` (big
    checkpoints). Readers see the old directory or the new one, never a mix.

    >>> commit_directory(".model.keramic-12-ab12cd34.tmp", "model_dir")
    """
    parent = os.path.dirname(os.path.abspath(target))
    replaced = None
    if not os.path.lexists(target):
        os.rename(temporary, target)
    elif _exchange(temporary, target):
        replaced = temporary
    else:
        replaced = os.path.join(parent, temp_name(os.path.basename(target)))
        os.rename(target, replaced)
        try:
            os.rename(temporary, target)
        except BaseException:
            os.rename(replaced, target)
            raise
    if fsync:
        fsync_directory(parent)
    if replaced is not None:
        if remove_old_later:
            remove_tree_later(replaced)
        else:
            shutil.rmtree(replaced, ignore_errors=True)


@contextlib.contextmanager
def directory_atomically(path: str, fsync: bool = True, remove_old_later: bool = False) -> Iterator[str]:
    """Yield a fresh temp directory beside `path`; on success it replaces `path` (`commit_directory`).

    >>> with directory_atomically("exported/1") as temporary:
    ...     write_every_file_into(temporary)
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temps(parent, re.escape(os.path.basename(path)), directories=True)
    while True:
        temporary = os.path.join(parent, temp_name(os.path.basename(path)))
        try:
            os.mkdir(temporary)
            break
        except FileExistsError:
            continue
    try:
        yield temporary
        if fsync:
            fsync_directory(temporary)
        commit_directory(temporary, path, fsync=fsync, remove_old_later=remove_old_later)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


# ---------------------------------------------------------------- bounded JSON
def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = ""
        for key, _ in pairs:
            if key in seen:
                repeated = key
                break
            seen.add(key)
        raise ValueError(f"the key '{repeated}' appears twice in one object")
    return result


def _check_depth(value: Any, max_depth: int) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"nested more than {max_depth} levels deep")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))


def parse_json(data: bytes, where: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode JSON bytes: UTF-8, no repeated keys, at most `max_depth` levels; `where` starts the error."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys)
        _check_depth(value, max_depth)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise FileFormatError(f"{where}: not valid JSON ({error}).") from None
    return value


def read_json_file(path: str, limit: int | None = None, where: str | None = None, what: str = "a JSON file") -> Any:
    """A JSON file's value, refused unread when over `limit` bytes (default MAX_JSON_BYTES); errors
    start with `where` (default: the path)."""
    limit = MAX_JSON_BYTES if limit is None else limit
    where = where or os.fspath(path)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise FileFormatError(f"{where}: {size:,} bytes is too large for {what} (limit {limit:,}).")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileFormatError(f"{where}: grew past the {limit:,}-byte limit while being read.")
    return parse_json(data, where)


def read_json_member(path: str, archive: zipfile.ZipFile, name: str, limit: int | None = None) -> Any:
    """An archive member's JSON value, read with a hard size limit (default MAX_JSON_BYTES) that does
    not trust the zip header."""
    limit = MAX_JSON_BYTES if limit is None else limit
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise FileFormatError(f"{path}: entry '{name}' declares {info.file_size:,} bytes (limit {limit:,}).")
    try:
        with archive.open(info) as handle:
            data = handle.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise FileFormatError(f"{path}: entry '{name}' cannot be read ({error}).") from None
    if len(data) > limit:
        raise FileFormatError(f"{path}: entry '{name}' is larger than its header says (limit {limit:,} bytes).")
    return parse_json(data, f"{path}: entry '{name}'")

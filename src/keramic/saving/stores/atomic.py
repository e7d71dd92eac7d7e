"""The stores helpers every writer and reader uses: atomic commits, fsync, bounded JSON reads.

Writing: into a temp file (or directory) beside the target, fsync, then one rename, so a crash at
any moment leaves either the old file or the complete new one at the target path. Temp names carry
the writer's PID (`.<target>.keramic-<pid>-<token>.tmp`), so a later save to the same target can
tell the leftovers of a killed writer from a save still running in another process, and remove
only those. Several files (shards and their index, a directory) are committed under a lock file
beside the target, so two processes saving to one path take turns and never mix their files. Reading: JSON
from a file or an archive member is size-capped before it is read, depth-capped, and refused when
an object repeats a key (a second value would silently win); a file named inside a folder is
opened only when it is a regular file inside that folder (no symlink out, no FIFO or device).
"""

import atexit
import contextlib
import ctypes
import dataclasses
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import threading
import zipfile
from typing import Any, Callable, Iterator

import numpy as np

from keramic.errors import FileFormatError

TEMP_SUFFIX = ".tmp"
ASIDE_SUFFIX = ".old"  # a directory renamed aside while its replacement moves in (no RENAME_EXCHANGE)
LOCK_SUFFIX = ".keramic-lock"


MAX_JSON_BYTES = 64 * 2**20  # far above any real config or index; refuses zip bombs and stray huge files
MAX_JSON_DEPTH = 256  # Keras configs nest a few levels per nested model; hostile files nest thousands


def temp_name(target_name, pid=None):
    """A fresh temp file name for `target_name`, owned by `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f".{target_name}.keramic-{pid}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _temp_regex(target_regex):
    return re.compile(rf"\.(?:{target_regex})\.keramic-(\d+)-[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}")


def _aside_regex(target_regex):
    return re.compile(rf"\.(?:{target_regex})\.keramic-(\d+)-[0-9a-f]{{8}}{re.escape(ASIDE_SUFFIX)}")


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


# ---------------------------------------------------------------- one writer per target
def lock_path(target: str) -> str:
    """The lock file beside `target` that writers of several files hold while they commit."""
    target = os.path.abspath(os.fspath(target))
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}{LOCK_SUFFIX}")


@contextlib.contextmanager
def target_lock(target: str) -> Iterator[None]:
    """Hold an exclusive `flock` on a lock file beside `target`; a second writer waits its turn.

    The last holder deletes the file on release, so nothing is left behind; a waiter that then
    wins the lock of a deleted file notices (its inode is no longer at the path) and locks afresh.
    The kernel drops the lock of a killed process by itself.

    >>> with target_lock("ckpt/model.weights.json"):
    ...     write_the_shards_and_the_index()
    """
    fd = _lock(lock_path(target), fcntl.LOCK_EX, os.O_RDWR | os.O_CREAT)
    try:
        yield
    finally:
        _unlock(lock_path(target), fd)


@contextlib.contextmanager
def reading_lock(target: str) -> Iterator[None]:
    """Hold a shared `flock` on `target`'s lock file while a load reads several files: no save of
    `target` commits meanwhile, so the files read all belong to one save. Readers share it.

    Where the lock file can be neither created nor opened (a read-only folder, where no save can
    run either), the read goes on without it (`read_while_replaced` still starts over then).
    """
    path = lock_path(target)
    fd = None
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        with contextlib.suppress(OSError):
            fd = _lock(path, fcntl.LOCK_SH, flags)
            break
    try:
        yield
    finally:
        if fd is not None:
            _unlock(path, fd)


def _lock(path: str, operation: int, flags: int) -> int:
    """A descriptor of the lock file now at `path`, locked with `operation` (LOCK_EX / LOCK_SH)."""
    while True:
        fd = os.open(path, flags | os.O_NOFOLLOW, 0o666)
        try:
            fcntl.flock(fd, operation)
            held = os.fstat(fd)
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
            return fd
        os.close(fd)


def _unlock(path: str, fd: int) -> None:
    """Release a lock; the last holder (the one that can take it exclusively) deletes the file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held, current = os.fstat(fd), os.stat(path, follow_symlinks=False)
        if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
            os.remove(path)
    except OSError:  # another holder goes on (it deletes the file), or the file is already gone
        pass
    finally:
        os.close(fd)


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


def recover_directory(target: str) -> None:
    """Finish what a writer killed between the two renames of `commit_directory`'s fallback left.

    Where swapping is unsupported the old directory is renamed aside (`.<name>.keramic-<pid>-<token>.old`)
    before the new one moves in. If the writer died in between, the target is missing: the old
    directory is renamed back (the old model stays, as if the save had not happened); when the
    target is in place, the aside is deleted. Only asides of dead processes are touched.
    """
    target = os.path.abspath(os.fspath(target))
    parent, name = os.path.split(target)
    pattern = _aside_regex(re.escape(name))
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return
    for entry in names:
        match = pattern.fullmatch(entry)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        aside = os.path.join(parent, entry)
        if os.path.islink(aside) or not os.path.isdir(aside):
            continue
        with contextlib.suppress(OSError):
            if not os.path.lexists(target):
                os.rename(aside, target)
                fsync_directory(parent)
            else:
                shutil.rmtree(aside)


def commit_directory(temporary: str, target: str, fsync: bool = True, remove_old_later: bool = False) -> None:
    """Make the complete directory `temporary` appear at `target` by rename.

    An older directory at `target` is swapped out in one step (or, where swapping is unsupported,
    renamed aside first, which `recover_directory` undoes after a crash) and then deleted: at once,
    or on a thread with `remove_old_later` (big checkpoints). Readers see the old directory or the
    new one, never a mix.

    >>> commit_directory(".model.keramic-12-ab12cd34.tmp", "model_dir")
    """
    parent = os.path.dirname(os.path.abspath(target))
    replaced = None
    if not os.path.lexists(target):
        os.rename(temporary, target)
    elif _exchange(temporary, target):
        replaced = temporary
    else:
        replaced = os.path.join(parent, temp_name(os.path.basename(target))[: -len(TEMP_SUFFIX)] + ASIDE_SUFFIX)
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

    Writers to one path take turns (`target_lock`); leftovers of killed writers are removed or,
    for a directory renamed aside, put back first. Directories get the process umask, as `mkdir` does.

    >>> with directory_atomically("exported/1") as temporary:
    ...     write_every_file_into(temporary)
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    with target_lock(path):
        recover_directory(path)
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


# ---------------------------------------------------------------- a set of files and its index
@dataclasses.dataclass
class FileSet:
    """What a writer fills in: each named file at its temporary path, then the index (which names
    `names`) at `index_temporary`."""

    names: list[str]
    temporaries: dict[str, str]
    index_temporary: str


def _journal_path(index_path: str) -> str:
    directory, name = os.path.split(index_path)
    return os.path.join(directory, f".{name}.keramic-journal")


def _is_plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and os.path.basename(name) == name and "\\" not in name and "\0" not in name


def _settle_file_set(index_path: str, keep: set[str], owned: Callable[[str], bool]) -> None:
    """Remove the files a journal lists (a save's new names and the ones it replaced) that the
    committed index does not name, the journal's writer's temp files, then the journal."""
    directory = os.path.dirname(index_path)
    journal = _journal_path(index_path)
    try:
        listed = read_json_file(journal, 2**20)
    except (OSError, FileFormatError):
        listed = {}
    names = [name for side in ("new", "old") for name in (listed.get(side) or [] if isinstance(listed, dict) else []) if _is_plain_name(name)]
    if names:
        remove_stale_temps(directory, "|".join(re.escape(name) for name in names))
    _remove_unnamed(directory, names, keep, owned)
    remove_stale_temps(directory, re.escape(os.path.basename(journal)))
    with contextlib.suppress(FileNotFoundError):
        os.remove(journal)
        fsync_directory(directory)


def _remove_unnamed(directory: str, names: Any, keep: set[str], owned: Callable[[str], bool]) -> None:
    """Delete the files `names` in `directory` that are not in `keep` (own, regular files only)."""
    for name in names:
        path = os.path.join(directory, name)
        if name not in keep and owned(name) and not os.path.islink(path) and os.path.isfile(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _rename_back(index_path: str, plain_names: dict[str, str], fsync: bool) -> None:
    """Give a committed set its plain names again (readers such as Keras open `<name>_00000` by
    name): link each file under its plain name, commit the index naming those, unlink the others.
    Every step leaves a complete set named by the index; where hard links are unsupported the set
    keeps its tagged names."""
    directory = os.path.dirname(index_path)
    try:
        for tagged, plain in plain_names.items():
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, plain))
            os.link(os.path.join(directory, tagged), os.path.join(directory, plain))
    except OSError:
        _remove_unnamed(directory, plain_names.values(), set(), lambda name: True)
        return
    with open(index_path, encoding="utf-8") as handle:
        text = handle.read()
    for tagged, plain in plain_names.items():  # plain file names: JSON writes them unescaped, in quotes
        text = text.replace(f'"{tagged}"', f'"{plain}"')
    with write_atomically(index_path, fsync=fsync) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    _remove_unnamed(directory, plain_names, set(), lambda name: True)


def _write_small_json(path: str, value: Any) -> None:
    with write_atomically(path) as temporary:
        write_json(temporary, value)


@contextlib.contextmanager
def file_set_atomically(
    index_path: str,
    names: list[str],
    named_by_index: Callable[[str], set[str]],
    renamed: Callable[[list[str], str], list[str]],
    owned: Callable[[str], bool],
    fsync: bool = True,
) -> Iterator[FileSet]:
    """Write a set of files and the index naming them so that, at any kill point, the index names
    either the complete old set or the complete new one.

    The new files get names the current index does not use (`names`, or `renamed(names, token)`
    when those hold the current set), are written and renamed into place, and the index is
    committed last by one rename; the replaced files are removed after, and renamed files get the
    names `names` back (`_rename_back`: hard links, then the index again). A journal beside the index
    lists both sets while this runs, so the next save removes what a killed one left (only names
    that `owned` accepts: a hostile index cannot make a save delete other files). Writers to one
    index take turns (`target_lock`).

    >>> with file_set_atomically("m.weights.json", ["m_00000.weights.h5"], read_names, retag, is_shard) as files:
    ...     write_shards(files.temporaries); write_index(files.index_temporary, files.names)
    """
    index_path = os.path.abspath(os.fspath(index_path))
    directory = os.path.dirname(index_path)
    os.makedirs(directory, exist_ok=True)
    with target_lock(index_path):
        _settle_file_set(index_path, named_by_index(index_path), owned)
        remove_stale_temps(directory, re.escape(os.path.basename(index_path)))
        current = named_by_index(index_path)
        wanted = list(names)
        if current & set(names):
            names = renamed(names, secrets.token_hex(4))
        _write_small_json(_journal_path(index_path), {"new": sorted({*names, *wanted}), "old": sorted(current)})
        files = FileSet(names, {name: _create_temp(directory, name) for name in names}, _create_temp(directory, os.path.basename(index_path)))
        try:
            yield files
            for name, temporary in files.temporaries.items():
                if fsync:
                    fsync_file(temporary)
                os.replace(temporary, os.path.join(directory, name))
            if fsync:
                fsync_file(files.index_temporary)
                fsync_directory(directory)
            os.replace(files.index_temporary, index_path)
            if fsync:
                fsync_directory(directory)
            if names != wanted:
                _remove_unnamed(directory, current, set(names), owned)
                _rename_back(index_path, dict(zip(names, wanted)), fsync)
        finally:
            for temporary in [*files.temporaries.values(), files.index_temporary]:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(temporary)
            _settle_file_set(index_path, named_by_index(index_path), owned)


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns


def read_while_replaced(path: str, read: Callable[[], Any], attempts: int = 5) -> Any:
    """`read()` of the files a save of `path` (an index or a directory) commits together, under
    `reading_lock(path)` so that they all come from one save. Without the lock (a read-only folder
    written by another user) a save may replace `path` while `read()` runs; a failure then starts
    over: readers assign nothing before every file checks out (all keramic loaders). An error
    from a file no save touched is raised at once.

    >>> read_while_replaced("m.weights.json", lambda: load(model, "m.weights.json"))
    """
    with reading_lock(path):
        attempt = 1
        while True:
            before = _identity(path)
            try:
                return read()
            except (FileFormatError, FileNotFoundError):
                if attempt >= attempts or _identity(path) == before:
                    raise
                attempt += 1


# ---------------------------------------------------------------- files named inside a folder
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_regular(path: str, where: str | None = None) -> os.stat_result:
    """`path`'s status (symlinks followed) when it is a regular file; a FIFO, device, socket or
    directory is refused before anything opens it (opening a FIFO would block); a missing file
    raises FileNotFoundError, as `open` would."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise FileFormatError(f"{where or path}: is {_kind(info.st_mode)}, not a regular file; refusing to open it.")
    return info


def contained_file(root: str, relative: str, where: str, single_link: bool = False, what: str = "file") -> str:
    """The path of `relative` (a name read from a file) inside the folder `root`, once it is known to
    be a regular file there: not a symlink, no component resolving outside `root`, and with
    `single_link` no second hard link (which could be a link to a file outside). `where` names the
    file that named it, `what` the kind of file in messages.

    >>> contained_file("ckpt", "model_00000.weights.h5", "ckpt/model.weights.json", single_link=True)
    """
    path = os.path.join(root, *relative.split("/"))
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise FileFormatError(
            f"{where}: {what} '{relative}' resolves through a symbolic link to {real}, outside {root}; refusing to read outside the folder given."
        )
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise FileFormatError(f"{where}: {what} '{relative}' does not exist ({path}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileFormatError(f"{where}: {what} '{relative}' ({path}) is {_kind(info.st_mode)}, not a regular file; refusing to open it.")
    if single_link and info.st_nlink > 1 and not _links_all_inside(os.path.dirname(path), info):
        raise FileFormatError(
            f"{where}: {what} '{relative}' ({path}) has {info.st_nlink} hard links; a file named here must have one "
            "(a second link may be a file outside the folder)."
        )
    return path


def _links_all_inside(folder: str, info: os.stat_result) -> bool:
    """Whether every hard link of a file is a name in `folder` (a save renaming its files back)."""
    count = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            found = entry.stat(follow_symlinks=False)
            count += (found.st_dev, found.st_ino) == (info.st_dev, info.st_ino)
    return count >= info.st_nlink


def check_tree(root: str, where: str) -> None:
    """Every entry under the folder `root` is a regular file or a folder inside it: symlinks, FIFOs,
    devices and sockets are refused before a reader or a hook can open them."""
    for folder, folders, names in os.walk(root):
        for name in folders + names:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise FileFormatError(f"{where}: '{os.path.relpath(path, root)}' ({path}) is {_kind(info.st_mode)}, not a regular file; refusing to open it.")


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


_TOKEN_CLASSES = bytes(1 if byte in b"[{" else 2 if byte in b"]}" else 3 if byte == ord('"') else 0 for byte in range(256))
_SCAN_CHUNK = 2**20


def _check_depth(data: bytes, max_depth: int) -> None:
    """Refuse JSON text nesting containers deeper than `max_depth` before it is parsed: brackets
    outside strings are counted in C-speed passes over 1 MiB chunks, no walk over a parsed value."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return  # too few brackets to nest deeper, wherever they are
    text = data.replace(b"\\\\", b"").replace(b'\\"', b"")  # escapes gone: every '"' left opens or closes a string
    depth, inside = 0, 0
    for start in range(0, len(text), _SCAN_CHUNK):
        classes = np.frombuffer(text[start : start + _SCAN_CHUNK].translate(_TOKEN_CLASSES), np.uint8)
        tokens = classes[np.flatnonzero(classes)]  # brackets and quotes, in order
        if not len(tokens):
            continue
        quotes = np.cumsum(tokens == 3) + inside
        steps = np.where(quotes & 1, 0, (tokens == 1).astype(np.int64) - (tokens == 2))
        running = np.cumsum(steps) + depth
        if int(running.max()) > max_depth:
            raise ValueError(f"nested more than {max_depth} levels deep")
        depth, inside = int(running[-1]), int(quotes[-1]) & 1


def parse_json(data: bytes, where: str, max_depth: int = MAX_JSON_DEPTH, convert: Callable[[dict], Any] | None = None) -> Any:
    """Decode JSON bytes: UTF-8, no repeated keys, at most `max_depth` levels; `where` starts the
    error. `convert` (optional) maps each decoded object, as `json.loads`'s `object_hook` would."""
    hook = _unique_keys if convert is None else (lambda pairs: convert(_unique_keys(pairs)))
    try:
        _check_depth(bytes(data), max_depth)
        value = json.loads(data.decode("utf-8"), object_pairs_hook=hook)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise FileFormatError(f"{where}: not valid JSON ({error}).") from None
    return value


def read_json_file(path: str, limit: int | None = None, where: str | None = None, what: str = "a JSON file") -> Any:
    """A JSON file's value, refused unread when over `limit` bytes (default MAX_JSON_BYTES); errors
    start with `where` (default: the path)."""
    limit = MAX_JSON_BYTES if limit is None else limit
    where = where or os.fspath(path)
    check_regular(path, where)
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FileFormatError(f"{where}: is {_kind(info.st_mode)}, not a regular file; refusing to read it.")
        size = info.st_size
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

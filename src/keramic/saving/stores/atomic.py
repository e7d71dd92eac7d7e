"""The one way keramic writes files: into a temp file beside the target, fsync, then rename.

A crash at any moment leaves either the old file or the complete new one at the target path.
Temp names carry the writer's PID (`.<target>.keramic-<pid>-<token>.tmp`), so a later save to the
same target can tell the leftovers of a killed writer from a save still running in another
process, and remove only those.
"""

import atexit
import contextlib
import os
import re
import secrets
import shutil
import threading

TEMP_SUFFIX = ".tmp"


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
    """Delete the temp files (with `directories`: temp directories) that keramic writers which no
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


_REMOVALS = []  # threads deleting trees that a save has replaced


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


def _fsync_directory(directory):
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
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(temporary, path)
        if fsync:
            _fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise

"""The one way keramic writes files: into a temp file beside the target, fsync, then rename.

A crash at any moment leaves either the old file or the complete new one at the target path.
"""

import contextlib
import os
import tempfile


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


@contextlib.contextmanager
def write_atomically(path, fsync=True):
    """Yield a temporary path to write; on success it replaces `path` in one rename.

    >>> with write_atomically("model.keras") as temporary:
    ...     write_everything_to(temporary)
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield temporary
        if fsync:
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
        if fsync:
            _fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise

"""Read an untrusted HDF5 file's metadata in a forked child before this process parses it.

Some damaged files send the HDF5 C library into an endless loop while it holds the GIL, or crash
it; no Python code in the same process can interrupt either. So before a loader opens a file
with h5py, a child made by `os.fork()` (copy-on-write, a few milliseconds) walks the metadata a
loader reads: every attribute, every group and dataset header reached by hard links, dataset
shapes, dtypes, layouts, filters and storage. The child marks each object it finishes on a pipe;
one that goes MIN_SECONDS without a mark (or outlives the whole budget) is killed, and one that
dies by a signal is reported: both are a `FileFormatError` naming the file. Python
errors in the child are not refusals: the loader meets them again and reports them in its own
words. A file that passed is remembered by (path, device, inode, size, mtime), so one load
preflights once; `open_checked` pins the version it checks with a descriptor, and parses that
version even when a save replaced the path in between.

`KERAMIC_H5_PREFLIGHT=0` turns the check off for trusted bulk jobs. Without `os.fork` (not
Linux or macOS) the check is skipped: spawning an interpreter per file would cost seconds.
"""

import contextlib
import faulthandler
import os
import select
import signal
import stat
import time
import warnings
from collections import OrderedDict
from typing import IO

import h5py
import numpy

from keramic.errors import FileFormatError
from keramic.saving.stores.h5_safety import H5_DAMAGE, MAX_OBJECTS

ENV_SWITCH = "KERAMIC_H5_PREFLIGHT"  # "0" skips the check (trusted files only)
MIN_SECONDS = 2.0  # the longest the child may go without finishing one more object
MAX_SECONDS = 60.0  # and the whole walk, for files of up to TOTAL_BYTES_PER_SECOND * MAX_SECONDS bytes
TOTAL_BYTES_PER_SECOND = 25e6  # larger files get proportionally longer
MAX_ATTRIBUTE_BYTES = 64 * 2**20  # attribute values read in the child up to this size
_REMEMBERED = 256  # files that passed, most recent kept

_passed: "OrderedDict[tuple, None]" = OrderedDict()


def enabled() -> bool:
    return hasattr(os, "fork") and os.environ.get(ENV_SWITCH, "1") != "0"


def file_key(path: str, member: str = "") -> tuple:
    """What identifies one version of a file (and member of it) for the cache."""
    status = os.stat(path)
    return (os.path.abspath(path), status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, member)


def check_file(path: str) -> None:
    """Refuse `path` if reading its HDF5 metadata hangs or crashes a child process.

    >>> h5_preflight.check_file("model.h5")  # then h5py.File("model.h5") is safe to call
    """
    if not enabled():
        return
    key = file_key(path)
    _run(key, path, lambda: h5py.File(path, "r"), key[3])


def check_member(path: str, member: str, handle: IO[bytes], size: int) -> None:
    """Refuse an HDF5 member of an archive (`handle`: a file object over its bytes that reads by
    offset or from memory, so the child's reads do not move the parent's position).

    >>> h5_preflight.check_member("model.keras", "model.weights.h5", window, window.size)
    """
    if not enabled():
        return
    _run(file_key(path, member), f"{path}: entry '{member}'", lambda: h5py.File(handle, "r"), size)


def _version(status: os.stat_result) -> tuple:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _opened_version(h5file: h5py.File) -> tuple | None:
    """The version of the file HDF5 holds open (by its descriptor), or None for a driver without one."""
    try:
        return _version(os.fstat(h5file.id.get_vfd_handle()))
    except _NO_DESCRIPTOR:
        return None


class _PinnedFile(h5py.File):
    """An h5py file reading a pinned descriptor through a Python file object (the version checked,
    though the path now names another file); it names itself by the user's path and closes the
    file object with itself."""

    _keramic_path = ""
    _keramic_handle: IO[bytes] | None = None

    @property
    def filename(self) -> str:
        return self._keramic_path

    def close(self) -> None:
        super().close()
        if self._keramic_handle is not None:
            self._keramic_handle.close()


def _through_python(pinned: int, path: str) -> h5py.File:
    """h5py reading the version of the file `pinned` holds through a file object, named `path`."""
    handle = os.fdopen(os.dup(pinned), "rb")
    try:
        h5file = _PinnedFile(handle, "r")
    except BaseException:
        handle.close()
        raise
    h5file._keramic_path, h5file._keramic_handle = path, handle
    return h5file


def _pinned_for_check(pinned: int, path: str) -> h5py.File:
    """What the child walks: the pinned version, by its /proc alias while it is still linked (HDF5
    needs a real path for that), else through a file object."""
    alias = f"/proc/self/fd/{pinned}"
    try:
        if os.path.exists(alias):
            return h5py.File(alias, "r")
    except H5_DAMAGE:
        pass
    return _through_python(pinned, path)


def open_checked(path: str, subject: str) -> h5py.File:
    """`path` opened with h5py once its metadata passed the check. The version checked is pinned by
    a descriptor; h5py opens the path and must find that version there, else (a save replaced the
    path meanwhile) it reads the pinned version through a file object. A load racing a writer thus
    gets one whole, checked version. A file h5py cannot read is a FileFormatError starting with `subject`."""
    pinned = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO must not block the open
    try:
        status = os.fstat(pinned)
        if not stat.S_ISREG(status.st_mode):
            raise FileFormatError(f"{subject} not a regular file; refusing it.")
        if enabled():
            key = (os.path.abspath(path), *_version(status), "")
            _run(key, path, lambda: _pinned_for_check(pinned, path), status.st_size)
        try:
            h5file = h5py.File(path, "r")
            if _opened_version(h5file) not in (None, _version(status)):
                h5file.close()
                h5file = _through_python(pinned, path)
        except FileNotFoundError:
            raise
        except H5_DAMAGE as error:
            raise FileFormatError(f"{subject} not a readable HDF5 file, it may be truncated or damaged ({error}).") from None
        return h5file
    finally:
        os.close(pinned)


_NO_DESCRIPTOR = (OSError, RuntimeError, TypeError, ValueError)


def time_budget(size: int) -> float:
    """The whole walk's limit; a stall (no object finished) is cut after MIN_SECONDS already."""
    return max(MAX_SECONDS, size / TOTAL_BYTES_PER_SECOND)


def _run(key: tuple, subject: str, open_file, size: int) -> None:
    if key in _passed:
        _passed.move_to_end(key)
        return
    failure = _in_child(lambda progress: _walk(open_file, progress), time_budget(size))
    if failure:
        raise FileFormatError(f"{subject}: HDF5 metadata could not be read safely: {failure}; the file is damaged or hostile.")
    _passed[key] = None
    while len(_passed) > _REMEMBERED:
        _passed.popitem(last=False)


def _in_child(work, seconds: float) -> str:
    """Run `work(progress)` in a forked child within `seconds`, and without a gap of MIN_SECONDS
    between two calls of `progress()`: '' when it ended, else what went wrong."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork in a threaded process: the child only reads a file
        pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        try:
            os.close(read_end)
            faulthandler.disable()  # a crash is the parent's to report, not a traceback dump
            work(lambda: os.write(write_end, b"."))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        stalled = _wait_for_end(read_end, seconds)
        if stalled:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    except BaseException:  # interrupted: leave no child behind
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_end)
    if stalled:
        return stalled
    if os.WIFSIGNALED(status):
        return f"the HDF5 library crashed ({signal.Signals(os.WTERMSIG(status)).name})"
    return ""


def _wait_for_end(read_end: int, seconds: float) -> str:
    """Read the child's progress marks until its end (EOF): '' then, else why it was stopped."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"the HDF5 library did not finish within {seconds:.0f} s (stopped)"
        ready, _, _ = select.select([read_end], [], [], min(left, MIN_SECONDS))
        if not ready and left > MIN_SECONDS:
            return f"the HDF5 library made no progress for {MIN_SECONDS:.1f} s (stopped)"
        if ready and not os.read(read_end, 65536):
            return ""


def _walk(open_file, progress) -> None:
    """Touch, in the child, every piece of metadata a loader may read, through h5py's low-level
    calls (twice as fast as its objects); a Python error skips only the piece it came from."""
    with contextlib.suppress(Exception), open_file() as h5file:
        root = h5py.h5o.open(h5file.id, b"/")
        seen = {root}
        stack = [root]
        budget = MAX_OBJECTS
        while stack and budget > 0:
            group = stack.pop()
            _attributes(group)
            progress()
            for name in _names(group)[:budget]:
                budget -= 1
                child = _hard_child(group, name)
                if child is None or child in seen:
                    continue
                seen.add(child)
                if isinstance(child, h5py.h5g.GroupID):
                    stack.append(child)
                else:
                    _attributes(child)
                    _dataset(child)
                    progress()


def _names(group) -> list[bytes]:
    with contextlib.suppress(Exception):
        return list(group)
    return []


def _hard_child(group, name: bytes):
    """The object a hard link names; other links could lead out of the file and are not followed."""
    with contextlib.suppress(Exception):
        if group.links.get_info(name).type == h5py.h5l.TYPE_HARD:
            return h5py.h5o.open(group, name)
    return None


def _attributes(node) -> None:
    with contextlib.suppress(Exception):
        for index in range(h5py.h5a.get_num_attrs(node)):
            with contextlib.suppress(Exception):
                attribute = h5py.h5a.open(node, index=index)
                if attribute.get_storage_size() <= MAX_ATTRIBUTE_BYTES:
                    attribute.read(numpy.empty(attribute.shape, attribute.dtype))


def _dataset(dataset) -> None:
    for read in (
        lambda: (dataset.shape, dataset.dtype),
        lambda: dataset.get_storage_size(),
        lambda: dataset.get_offset(),
        lambda: _plist(dataset.get_create_plist()),
    ):
        with contextlib.suppress(Exception):
            read()


def _plist(plist) -> None:
    plist.get_layout(), plist.get_external_count(), plist.get_virtual_count() if plist.get_layout() == h5py.h5d.VIRTUAL else 0
    for index in range(plist.get_nfilters()):
        plist.get_filter(index)


def open_checked_member(path: str, member: str, handle: IO[bytes], size: int) -> h5py.File:
    """An archive member (`handle` over its `size` bytes) opened with h5py once its metadata passed
    the check; a member h5py cannot read is a FileFormatError naming the archive and the member."""
    check_member(path, member, handle, size)
    handle.seek(0)
    try:
        return h5py.File(handle, "r")
    except H5_DAMAGE as error:
        raise FileFormatError(f"{path}: entry '{member}' is not a readable HDF5 file ({error}).") from None

"""Write one new file from memory and compute its SHA-256 on the way, at the disk's own speed.

A durable write (on disk when the call returns) of a large file goes around the page cache with
`O_DIRECT` where the file system allows it. Copying into the page cache and the kernel's
write-back cost CPU that hashing needs on a small machine, and a buffered write plus `fsync`
reaches less of the disk's bandwidth than large direct writes with several in flight
(`benchmarks/checkpoint.py` measures both raw ways next to keramic's save). Direct I/O needs
block-aligned memory, offsets and lengths, so the bytes pass through page-aligned staging buffers
(one memcpy), are hashed there (the digest is of exactly the bytes written) and handed to writer
threads; the last block is zero-padded and the file then truncated to its real size.

Small files, non-durable writes and file systems that refuse direct I/O (EINVAL) take the
buffered path: write while hashing the same memory on another thread, and for durable writes ask
the kernel to start writing each chunk back as it lands, so the final `fsync` waits only for the
tail.
"""

import concurrent.futures
import ctypes
import errno
import hashlib
import mmap
import os
import queue
import threading

import numpy as np

CHUNK = 16 * 2**20  # one staging buffer, one write
IN_FLIGHT = 3  # direct writes outstanding per file (the disk wants several to reach full speed)
DIRECT_MIN_BYTES = 4 * CHUNK  # below this, staging costs more than it saves
ALIGNMENT = 4096  # offsets and lengths of direct writes: a page, a multiple of any disk block
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_SYNC_FILE_RANGE_WRITE = 2


class _StagingBuffers:
    """Page-aligned buffers of `CHUNK` bytes kept for reuse: a fresh mapping costs page faults on
    every write (slow on VMs that hand freed memory back to the host), a kept one does not."""

    def __init__(self, keep):
        self._free, self._keep, self._lock = [], keep, threading.Lock()

    def take(self):
        with self._lock:
            if self._free:
                return self._free.pop()
        return np.frombuffer(mmap.mmap(-1, CHUNK), np.uint8)

    def give(self, buffer):
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)


_STAGING = _StagingBuffers(keep=2 * (IN_FLIGHT + 1))  # two files written at once


def _start_writeback():
    """`sync_file_range(fd, offset, n, SYNC_FILE_RANGE_WRITE)` where libc has it, else nothing."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return lambda fd, offset, size: None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return lambda fd, offset, size: call(fd, offset, size, _SYNC_FILE_RANGE_WRITE)


_writeback = _start_writeback()


def _pwrite_all(fd, view, offset):
    while len(view):
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no space left: the write made no progress")
        view, offset = view[written:], offset + written


def write_hashed(path, parts, durable):
    """Create `path` (it must not exist) holding the bytes-like `parts` back to back;
    returns (size, SHA-256 hex digest). With `durable`, the data is on disk on return.

    >>> size, sha256 = write_hashed("data.bin", [header, array], durable=True)
    """
    views = [memoryview(part).cast("B") for part in parts]
    total = sum(len(view) for view in views)
    if durable and _O_DIRECT and total >= DIRECT_MIN_BYTES:
        result = _try_direct(path, views, total)
        if result is not None:
            return result
    return _write_buffered(path, views, durable)


def _try_direct(path, views, total):
    """The direct path, or None (and no file left) where the file system refuses direct I/O."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_DIRECT, 0o666)
    except OSError as error:
        if error.errno == errno.EINVAL:
            return None
        raise
    try:
        return _write_direct(fd, views, total)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
    os.remove(path)
    return None


def _write_direct(fd, views, total):
    """The direct path: fill a staging buffer, hash it, hand it to a writer thread, take the next."""
    digest = hashlib.sha256()
    free = queue.SimpleQueue()
    buffers = [_STAGING.take() for _ in range(IN_FLIGHT + 1)]
    for buffer in buffers:
        free.put(buffer)
    failures = []

    def write(buffer, length, offset):
        try:
            _pwrite_all(fd, memoryview(buffer)[:length], offset)
        except BaseException as error:
            failures.append(error)
        finally:
            free.put(buffer)

    try:
        with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as writers:
            offset, buffer, filled = 0, free.get(), 0
            for view in views:
                source = np.frombuffer(view, np.uint8)
                taken = 0
                while taken < len(source) and not failures:
                    count = min(len(buffer) - filled, len(source) - taken)
                    np.copyto(buffer[filled : filled + count], source[taken : taken + count])
                    filled, taken = filled + count, taken + count
                    if filled == len(buffer):
                        digest.update(buffer)
                        writers.submit(write, buffer, filled, offset)
                        offset, buffer, filled = offset + filled, free.get(), 0
            if filled and not failures:
                digest.update(buffer[:filled])
                padded = -(-filled // ALIGNMENT) * ALIGNMENT
                buffer[filled:padded] = 0
                writers.submit(write, buffer, padded, offset)
            else:
                free.put(buffer)
        if failures:
            raise failures[0]
        os.ftruncate(fd, total)
        os.fsync(fd)
    finally:
        for buffer in buffers:
            _STAGING.give(buffer)
    return total, digest.hexdigest()


def _write_views(fd, views, durable):
    position = 0
    for view in views:
        for start in range(0, len(view), CHUNK):
            chunk = view[start : start + CHUNK]
            _pwrite_all(fd, chunk, position)
            if durable:
                _writeback(fd, position, len(chunk))
            position += len(chunk)


def _write_buffered(path, views, durable):
    """The buffered path: write from one thread while this one hashes the same memory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        digest = hashlib.sha256()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            writing = pool.submit(_write_views, fd, views, durable)
            for view in views:
                digest.update(view)  # hashlib releases the GIL on large buffers
            writing.result()
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    return sum(len(view) for view in views), digest.hexdigest()

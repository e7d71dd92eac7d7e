"""Large positional reads and writes of many buffers, spread over threads.

`os.pwritev`/`os.preadv` and `zlib.crc32` release the GIL, so two threads keep two cores busy
copying tensor bytes to and from the page cache. A zip member's CRC-32 is computed from the
buffers while they are written (never by reading the file back), piece by piece, and the pieces
are joined with CRC-32's combine rule. Reading a zip member checks its CRC-32 the same way, on the
bytes as they arrive, so what is loaded is what the archive's checksum vouches for.
"""

import concurrent.futures
import mmap
import os
import threading
from collections.abc import Callable

_fast_crc32_combine: Callable[[int, int, int], int] | None
try:  # ISA-L's CRC-32 is several times faster than zlib's; used when the `isal` package is installed
    from isal.isal_zlib import crc32
    from isal.isal_zlib import crc32_combine as _fast_crc32_combine
except ImportError:
    from zlib import crc32

    _fast_crc32_combine = None

PIECE_BYTES = 32 * 2**20  # one unit of work for a thread
PARALLEL_BYTES = 64 * 2**20  # below this, threads cost more than they save
# Reads and checksums of the page cache take no file lock and run on threads kept for the process,
# so they pay off from smaller sizes than writes (one file's writes serialize in the kernel).
PARALLEL_READ_BYTES = 8 * 2**20
SMALL_SPAN_BYTES = 2**20  # below this, one read costs less than setting up a memory map
WORKERS = 2
_IOV_MAX = 1024
_readers: concurrent.futures.ThreadPoolExecutor | None = None


def _reader_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process's reading threads, started on first use (and again in a forked child)."""
    global _readers
    if _readers is None:
        _readers = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="keramic-read")
    return _readers


def _forget_reader_pool() -> None:
    global _readers
    _readers = None  # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_forget_reader_pool)

# ---------------------------------------------------------------- CRC-32 combine (zlib's rule)
_CRC_POLYNOMIAL = 0xEDB88320
_ZERO_BYTE_POWERS: list[list[int]] = []  # _ZERO_BYTE_POWERS[k]: the CRC register after 2**k zero bytes, as a 32x32 GF(2) matrix


def _apply(matrix, vector):
    result, row = 0, 0
    while vector:
        if vector & 1:
            result ^= matrix[row]
        vector >>= 1
        row += 1
    return result


def _square(matrix):
    return [_apply(matrix, matrix[row]) for row in range(32)]


def _zero_bytes_power(k):
    if not _ZERO_BYTE_POWERS:
        one_bit = [_CRC_POLYNOMIAL] + [1 << row for row in range(31)]
        _ZERO_BYTE_POWERS.append(_square(_square(_square(one_bit))))
    while len(_ZERO_BYTE_POWERS) <= k:
        _ZERO_BYTE_POWERS.append(_square(_ZERO_BYTE_POWERS[-1]))
    return _ZERO_BYTE_POWERS[k]


def crc32_combine(crc1, crc2, length2):
    """CRC-32 of A + B from crc(A), crc(B) and len(B)."""
    if _fast_crc32_combine is not None:
        return _fast_crc32_combine(crc1, crc2, length2)
    k = 0
    while length2:
        if length2 & 1:
            crc1 = _apply(_zero_bytes_power(k), crc1)
        length2 >>= 1
        k += 1
    return crc1 ^ crc2


# ---------------------------------------------------------------- writing
def _pieces(buffers, position):
    """Cut a sequence of byte buffers into work units of about PIECE_BYTES: (position, views, size)."""
    pieces, views, size, start = [], [], 0, position
    for buffer in buffers:
        view = memoryview(buffer)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        while len(view):
            take = min(len(view), PIECE_BYTES - size)
            views.append(view[:take])
            view = view[take:]
            size += take
            if size == PIECE_BYTES:
                pieces.append((start, views, size))
                start, views, size = start + size, [], 0
    if size:
        pieces.append((start, views, size))
    return pieces


def _write_piece(fd, position, views, checksum):
    crc = 0
    if checksum:
        for view in views:
            crc = crc32(view, crc)
    index = 0
    while index < len(views):
        written = os.pwritev(fd, views[index : index + _IOV_MAX], position)
        position += written
        while written:
            if written >= len(views[index]):
                written -= len(views[index])
                index += 1
            else:
                views[index] = views[index][written:]
                written = 0
    return crc


def write_buffers(fd, buffers, position, checksum=True):
    """Write `buffers` back to back at `position` of `fd`; return (CRC-32 of all bytes, byte count).

    With `checksum=False` the CRC is skipped (and returned as 0).
    """
    pieces = _pieces(buffers, position)
    total = sum(size for _, _, size in pieces)
    if total < PARALLEL_BYTES:
        crcs = [_write_piece(fd, start, views, checksum) for start, views, _ in pieces]
    else:
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            crcs = list(pool.map(lambda piece: _write_piece(fd, piece[0], piece[1], checksum), pieces))
    crc = 0
    for value, (_, _, size) in zip(crcs, pieces):
        crc = crc32_combine(crc, value, size)
    return crc, total


# ---------------------------------------------------------------- reading
def _read_piece(fd, view, position, what):
    while len(view):
        count = os.preadv(fd, [view], position)
        if count <= 0:
            raise EOFError(f"{what}: the file ended {len(view)} bytes early at offset {position}.")
        view = view[count:]
        position += count


def read_into(fd, jobs, what="file"):
    """Fill each writable buffer of `jobs` [(buffer, offset)] from `fd` at its offset (checked by the caller)."""
    work = []
    for buffer, offset in jobs:
        view = memoryview(buffer).cast("B")
        for start in range(0, len(view), PIECE_BYTES):
            work.append((view[start : start + PIECE_BYTES], offset + start))
    total = sum(len(view) for view, _ in work)
    if total < PARALLEL_BYTES:
        for view, offset in work:
            _read_piece(fd, view, offset, what)
        return
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        for future in [pool.submit(_read_piece, fd, view, offset, what) for view, offset in work]:
            future.result()


SCATTER_GAP_BYTES = 4096  # a gap this small between two buffers is read through, not a new system call


def _scatter_runs(jobs, piece_bytes=PIECE_BYTES):
    """Group [(buffer, offset)] into reads of nearby file bytes: (offset, [views], size), each at
    most about `piece_bytes` and _IOV_MAX buffers, small gaps read into a throwaway buffer, so many
    small tensors cost few system calls and big ones still spread over threads."""
    runs, views, start, size = [], [], 0, 0
    gaps = memoryview(bytearray(SCATTER_GAP_BYTES))  # every gap lands here: its bytes are never read
    for buffer, offset in sorted(jobs, key=lambda job: job[1]):
        view = memoryview(buffer).cast("B")
        gap = offset - (start + size)
        if views and 0 < gap <= SCATTER_GAP_BYTES and size < piece_bytes and len(views) < _IOV_MAX - 1:
            views.append(gaps[:gap])
            size += gap
        while len(view):
            if views and (offset != start + size or size >= piece_bytes or len(views) >= _IOV_MAX):
                runs.append((start, views, size))
                views, size = [], 0
            if not views:
                start = offset
            take = min(len(view), piece_bytes - size)
            views.append(view[:take])
            view, offset, size = view[take:], offset + take, size + take
    if views:
        runs.append((start, views, size))
    return runs


def _read_views(fd, offset, views, what):
    while views:
        count = os.preadv(fd, views, offset)
        if count <= 0:
            raise EOFError(f"{what}: the file ended {sum(len(v) for v in views)} bytes early at offset {offset}")
        offset += count
        while views and count >= len(views[0]):
            count -= len(views[0])
            views = views[1:]
        if count:
            views = [views[0][count:], *views[1:]]


def scatter_read(fd, jobs, what="file"):
    """Fill each writable buffer of `jobs` [(buffer, file offset)] from `fd`: nearby buffers are read
    by one `preadv` each run, runs spread over threads when there is much to read."""
    runs = _scatter_runs(jobs)
    total = sum(size for _, _, size in runs)
    if total < PARALLEL_READ_BYTES:
        for offset, views, _ in runs:
            _read_views(fd, offset, views, what)
        return
    # Two pieces a thread, so that one thread's slower piece leaves the other something to take
    # (large reads are few buffers: grouping them again costs little).
    runs = _scatter_runs(jobs, min(PIECE_BYTES, -(-total // (2 * WORKERS))))
    for future in [_reader_pool().submit(_read_views, fd, offset, views, what) for offset, views, _ in runs]:
        future.result()


# ---------------------------------------------------------------- reading a whole span, checksummed
GAP_CHUNK_BYTES = 2**20  # bytes between the requested buffers are read in scratch chunks of at most this
RUN_BYTES = 2**20  # read this much, then checksum it while it is still in the CPU cache


def _checked_segments(jobs, start, size):
    """Views covering [start, start + size) in file order: each job's buffer, and None-marked gaps."""
    segments, cursor = [], start
    for view, offset in sorted(((memoryview(buffer).cast("B"), offset) for buffer, offset in jobs), key=lambda job: job[1]):
        if offset < cursor or offset + len(view) > start + size:
            raise ValueError(f"a read of {len(view)} bytes at {offset} overlaps another or leaves the span")
        segments.extend((None, length) for length in _chunks(offset - cursor, GAP_CHUNK_BYTES))
        segments.extend((view[at : at + RUN_BYTES], None) for at in range(0, len(view), RUN_BYTES))
        cursor = offset + len(view)
    segments.extend((None, length) for length in _chunks(start + size - cursor, GAP_CHUNK_BYTES))
    return segments


def _chunks(total, chunk):
    return [min(chunk, total - at) for at in range(0, total, chunk)]


def _units(segments, start):
    """Consecutive segments grouped into work units of about PIECE_BYTES: (file position, segments, size)."""
    units, current, size, position = [], [], 0, start
    for view, gap in segments:
        length = gap if view is None else len(view)
        current.append((view, gap))
        size += length
        if size >= PIECE_BYTES:
            units.append((position, current, size))
            position, current, size = position + size, [], 0
    if current:
        units.append((position, current, size))
    return units


def _read_unit(fd, position, segments, what, scratches, scratch_size):
    """Read one contiguous unit in runs of about RUN_BYTES (one `preadv` each, gaps into the thread's
    scratch buffer), checksumming each run right after it lands; return the unit's CRC-32."""
    scratch = getattr(scratches, "buffer", None)
    if scratch is None:
        scratch = scratches.buffer = memoryview(bytearray(scratch_size))
    crc, views, used, run = 0, [], 0, 0
    for view, gap in segments:
        length = len(view) if view is not None else gap
        if views and (run + length > RUN_BYTES or (view is None and used + gap > len(scratch))):
            crc = _read_run(fd, views, position, crc, what)
            position += run
            views, used, run = [], 0, 0
        if view is None:
            view, used = scratch[used : used + gap], used + gap
        views.append(view)
        run += length
    return _read_run(fd, views, position, crc, what)


def _read_run(fd, views, position, crc, what):
    """Fill `views` from consecutive bytes of `fd` at `position`; return `crc` continued over them."""
    pending, index = [view for view in views if len(view)], 0
    while index < len(pending):
        count = os.preadv(fd, pending[index : index + _IOV_MAX], position)
        if count <= 0:
            raise EOFError(f"{what}: the file ended {sum(len(v) for v in pending[index:])} bytes early at offset {position}.")
        position += count
        while count:
            if count >= len(pending[index]):
                count -= len(pending[index])
                index += 1
            else:
                pending[index], count = pending[index][count:], 0
    for view in views:
        crc = crc32(view, crc)
    return crc


def span_crc(fd, start, size, what="file"):
    """CRC-32 of [start, start + size) of `fd`, computed over a read-only memory map of the page
    cache (no copy into a buffer: about half the time of reading the span; small spans are read).
    A file that another program shortens in place while this runs faults the process, as it would
    any memory-mapped reader; keramic's own writers replace files by rename."""
    return span_crc_started(fd, start, size, what)()


def span_crc_started(fd, start, size, what="file") -> Callable[[], int]:
    """`span_crc` begun on the reading threads (spans above SMALL_SPAN_BYTES), so the caller can do
    other work meanwhile; the returned function waits for the value (or raises what the reading
    raised), and may be asked again (the parts' results stay with their futures). The map holds its
    own reference to the file, so it does not matter whether `fd` is still open."""
    if start + size > os.fstat(fd).st_size:
        raise EOFError(f"{what}: the file ends before byte {start + size}")
    if size <= SMALL_SPAN_BYTES:
        data = os.pread(fd, size, start) if size else b""
        if len(data) != size:
            raise EOFError(f"{what}: the file ends before byte {start + size}")
        crc = crc32(data)
        return lambda: crc
    base = start - start % mmap.ALLOCATIONGRANULARITY
    try:
        mapped = mmap.mmap(fd, start + size - base, access=mmap.ACCESS_READ, offset=base)
    except (OSError, ValueError):  # a file that cannot be mapped is read instead
        crc = read_checked(fd, [], start, size, what)
        return lambda: crc
    view = memoryview(mapped)
    step = -(-size // WORKERS) if size >= PARALLEL_READ_BYTES else size
    lengths = [min(step, size - at) for at in range(0, size, step)]
    futures = [_reader_pool().submit(_crc_of_part, view, start - base + at, length) for at, length in zip(range(0, size, step), lengths)]

    def result():
        try:
            concurrent.futures.wait(futures)  # every part done (its view released) before the map goes
            crc = 0
            for future, length in zip(futures, lengths):
                crc = crc32_combine(crc, future.result(), length)
            return crc
        finally:
            view.release()
            mapped.close()

    return result


def _crc_of_part(view, start, size):
    with view[start : start + size] as part:
        return crc32(part)


def read_checked(fd, jobs, start, size, what="file"):
    """Read all of [start, start + size) of `fd` in order, filling each buffer of `jobs` [(buffer,
    offset)] (non-overlapping, inside the span) and reading the rest into scratch; return the CRC-32
    of the whole span, computed on the bytes as they arrive."""
    segments = _checked_segments(jobs, start, size)
    units = _units(segments, start)
    scratches = threading.local()  # one gap buffer per thread, reused across its units
    scratch_size = min(GAP_CHUNK_BYTES, sum(gap for view, gap in segments if view is None))
    if size < PARALLEL_BYTES:
        crcs = [_read_unit(fd, position, unit, what, scratches, scratch_size) for position, unit, _ in units]
    else:
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            crcs = list(pool.map(lambda unit: _read_unit(fd, unit[0], unit[1], what, scratches, scratch_size), units))
    crc = 0
    for value, (_, _, length) in zip(crcs, units):
        crc = crc32_combine(crc, value, length)
    return crc

"""Large positional reads and writes of many buffers, spread over threads.

`os.pwritev`/`os.preadv` and `zlib.crc32` release the GIL, so two threads keep two cores busy
copying tensor bytes to and from the page cache. A zip member's CRC-32 is computed from the
buffers while they are written (never by reading the file back), piece by piece, and the pieces
are joined with CRC-32's combine rule.
"""

import concurrent.futures
import os

try:  # ISA-L's CRC-32 is several times faster than zlib's; used when the `isal` package is installed
    from isal.isal_zlib import crc32
except ImportError:
    from zlib import crc32

PIECE_BYTES = 32 * 2**20  # one unit of work for a thread
PARALLEL_BYTES = 64 * 2**20  # below this, threads cost more than they save
WORKERS = 2
_IOV_MAX = 1024

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

"""Read a zip member as a file object: a stored member in place once its CRC-32 checks out, a
compressed one inflated into memory, never past a size budget."""

import io
import os
import struct
import zipfile

from keramic.errors import FileFormatError
from keramic.saving.stores import bulk_io
from keramic.saving.stores.zip_archive import ZIP_ERRORS, archive_fd

MAX_INFLATED_BYTES = 4 * 2**30  # a compressed member is inflated into memory: at most this much
MAX_INFLATION_RATIO = 1000  # and at most this many times its compressed size (zip-bomb guard)

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"


def member_data_offset(handle, info, filename):
    """Byte offset of a member's data (read from its local header, which may differ from the central one)."""
    handle.seek(info.header_offset)
    header = handle.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise FileFormatError(f"{filename}: entry '{info.filename}': bad local zip header (file damaged or truncated).")
    fields = _LOCAL_HEADER.unpack(header)
    name_length, extra_length = fields[-2], fields[-1]
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


class FileWindow(io.RawIOBase):
    """A read-only, seekable view of bytes [start, start + size) of a file.

    `fd`, `start` and `size` stay public so bulk readers can copy checked spans without going
    through this object's per-call overhead.
    """

    def __init__(self, path, start, size, fd=None):
        """`fd`: a descriptor the window takes over (default: `path` opened anew)."""
        super().__init__()
        self.fd = os.open(path, os.O_RDONLY) if fd is None else fd
        self.start, self.size, self._position = start, size, 0
        if os.fstat(self.fd).st_size < start + size:
            os.close(self.fd)
            raise FileFormatError(f"{path}: a zip member extends past the end of the file (truncated file).")

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self.size - self._position))
        done = 0
        while done < count:
            chunk = os.preadv(self.fd, [view[done:count]], self.start + self._position + done)
            if chunk <= 0:
                break
            done += chunk
        self._position += done
        return done

    def close(self):
        if not self.closed:
            os.close(self.fd)
        super().close()


def check_crc(path, info, fd, start):
    """Read a stored member's bytes once, refusing them unless their CRC-32 is the archive's."""
    try:
        crc = bulk_io.span_crc(fd, start, info.file_size, path)
    except EOFError as error:
        raise FileFormatError(f"{path}: member '{info.filename}': {error} (file truncated?)") from None
    if crc != info.CRC:
        raise crc_error(path, info, crc)


def crc_error(path, info, crc):
    return FileFormatError(
        f"{path}: member '{info.filename}' is damaged: its bytes have CRC-32 {crc:#010x}, the archive records {info.CRC:#010x}; refusing to load altered data."
    )


def inflate(path, archive, info):
    """A compressed member's bytes, inflated only up to its declared size, itself within the budget."""
    limit = min(MAX_INFLATED_BYTES, MAX_INFLATION_RATIO * max(info.compress_size, 1))
    if info.file_size > limit:
        raise FileFormatError(
            f"{path}: member '{info.filename}' would inflate from {info.compress_size:,} to {info.file_size:,} "
            f"bytes (limit {limit:,}); refusing it as a zip bomb."
        )
    try:
        with archive.open(info) as handle:
            data = handle.read(info.file_size + 1)  # zipfile stops at the declared size and checks the CRC-32
    except ZIP_ERRORS as error:
        raise FileFormatError(f"{path}: member '{info.filename}' cannot be read ({type(error).__name__}: {error}).") from None
    if len(data) != info.file_size:
        raise FileFormatError(f"{path}: member '{info.filename}' inflates to {len(data):,} bytes, not the {info.file_size:,} its header says.")
    return data


def verify_member(path, archive, name):
    """Refuse a member whose bytes do not match its CRC-32 (or inflate past the budget), unparsed."""
    with open_member(path, archive, name):
        pass


def open_member(path, archive, name):
    """A seekable file object for member `name`: in place when stored (its CRC-32 checked first),
    else inflated to memory within the budget."""
    info = archive.getinfo(name)
    if info.compress_type == zipfile.ZIP_STORED:
        fd = archive_fd(archive)
        try:
            with os.fdopen(os.dup(fd), "rb") as handle:
                start = member_data_offset(handle, info, path)
        except BaseException:
            os.close(fd)
            raise
        window = FileWindow(path, start, info.file_size, fd)
        try:
            check_crc(path, info, window.fd, start)
        except BaseException:
            window.close()
            raise
        return window
    return io.BytesIO(inflate(path, archive, info))

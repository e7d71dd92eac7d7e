"""Read a stored (uncompressed) zip member in place, as a file object, without extracting it."""

import io
import os
import struct
import zipfile

from keramic.errors import FileFormatError

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

    def __init__(self, path, start, size):
        super().__init__()
        self.fd = os.open(path, os.O_RDONLY)
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


def open_member(path, archive, name):
    """A seekable file object for member `name`: in place when stored, else decompressed to memory."""
    info = archive.getinfo(name)
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as handle:
            start = member_data_offset(handle, info, path)
        return FileWindow(path, start, info.file_size)
    return io.BytesIO(archive.read(name))

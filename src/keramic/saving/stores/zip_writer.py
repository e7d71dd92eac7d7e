"""Write a zip of stored (uncompressed) members straight to a file, as Python's zipfile would.

Keras 3 stores every `.keras` member uncompressed, so a member's bytes can be written in place:
the weights go from tensor memory to their final offset in the archive in large writes, with no
temporary HDF5 file and no in-memory image. Sizes are known before writing; the CRC-32 comes
from the buffers as they are written and is patched into the local header afterwards. No member's
data starts where HDF5 looks for a superblock (0, 512, 1024, 2048, ...), so an archive holding an
HDF5 member never also reads as an HDF5 file.
"""

import os
import struct
import time
import zlib

from keramic.saving.stores import bulk_io

ZIP64_LIMIT = (1 << 31) - 1  # Python's zipfile switches to zip64 records above this, so do we
_LOCAL = struct.Struct("<4sHHHHHLLLHH")
_CENTRAL = struct.Struct("<4sBBBBHHHHLLLHHHHHLL")
_END = struct.Struct("<4sHHHHLLH")
_END64 = struct.Struct("<4sQHHLLQQQQ")
_LOCATOR64 = struct.Struct("<4sLQL")
_ALIGNMENT_EXTRA = 0xD935  # the extra field id zipalign uses for padding
_CRC_OFFSET = 14
KERAS_FILE_MODE = 0o600 << 16  # external attributes Keras's members carry


def dos_date_time(date_time):
    year, month, day, hour, minute, second = date_time[:6]
    return (year - 1980) << 9 | month << 5 | day, hour << 11 | minute << 5 | second // 2


def now():
    return time.localtime(time.time())[:6]


def _is_hdf5_probe(offset):
    """HDF5 finds a superblock at offset 0 or at 512 times a power of two."""
    return offset == 0 or (offset >= 512 and offset % 512 == 0 and (offset & (offset - 1)) == 0)


class _Member:
    __slots__ = ("name", "header_offset", "size", "crc", "date_time", "zip64")

    def __init__(self, name, header_offset, size, date_time):
        self.name, self.header_offset, self.size, self.date_time = name.encode("ascii"), header_offset, size, date_time
        self.zip64 = size > ZIP64_LIMIT
        self.crc = 0


class StoredZipWriter:
    """Members go out in order at increasing offsets of `fd` (opened for writing, empty).

    >>> writer = StoredZipWriter(fd)
    >>> writer.add("config.json", b"{}")
    >>> start = writer.begin("model.weights.h5", size, align=64)   # absolute offset of the data
    >>> writer.end(bulk_io.write_buffers(fd, buffers, start)[0])
    >>> writer.close()
    """

    def __init__(self, fd):
        self._fd = fd
        self.position = 0
        self._members = []
        self._open = None

    def _write(self, data, position=None):
        position = self.position if position is None else position
        view = memoryview(data)
        while len(view):
            count = os.pwrite(self._fd, view, position)
            view, position = view[count:], position + count

    def begin(self, name, size, date_time=(1980, 1, 1, 0, 0, 0), align=1):
        """Write the local header of a member of `size` bytes; return where its data starts."""
        member = _Member(name, self.position, size, date_time)
        extra = struct.pack("<HHQQ", 1, 16, size, size) if member.zip64 else b""
        data_start = self.position + _LOCAL.size + len(member.name) + len(extra)
        padding = (-data_start) % align
        while 0 < padding < 6:  # the padding field needs room for its own 4-byte header and 2-byte value
            padding += align
        if _is_hdf5_probe(data_start + padding):
            padding += align * -(-6 // align)  # past the probe offset, still aligned, room for the field
        if padding:
            extra += struct.pack("<HHH", _ALIGNMENT_EXTRA, padding - 4, align) + b"\0" * (padding - 6)
        self._write(self._local_header(member, extra) + member.name + extra)
        self.position = data_start + padding
        self._open = member
        return self.position

    def end(self, crc):
        """Record the member's CRC-32 (patching its local header) once its data is written."""
        member, self._open = self._open, None
        member.crc = crc
        self.position += member.size
        self._write(struct.pack("<L", crc), member.header_offset + _CRC_OFFSET)
        self._members.append(member)

    def add(self, name, data, date_time=(1980, 1, 1, 0, 0, 0)):
        """A small member written whole."""
        self.begin(name, len(data), date_time)
        self._write(data)
        self.end(zlib.crc32(data))

    def _local_header(self, member, extra):
        date, clock = dos_date_time(member.date_time)
        version = 45 if member.zip64 else 20
        size = 0xFFFFFFFF if member.zip64 else member.size
        return _LOCAL.pack(b"PK\x03\x04", version, 0, 0, clock, date, member.crc, size, size, len(member.name), len(extra))

    def close(self):
        """Write the central directory and end records; return the archive's total size."""
        directory = []
        for member in self._members:
            extra_fields, size, offset = [], member.size, member.header_offset
            if member.zip64:
                extra_fields += [member.size, member.size]
                size = 0xFFFFFFFF
            if member.header_offset > ZIP64_LIMIT:
                extra_fields.append(member.header_offset)
                offset = 0xFFFFFFFF
            extra = struct.pack(f"<HH{len(extra_fields)}Q", 1, 8 * len(extra_fields), *extra_fields) if extra_fields else b""
            version = 45 if extra_fields else 20
            date, clock = dos_date_time(member.date_time)
            header = _CENTRAL.pack(
                b"PK\x01\x02",
                version,
                3,
                version,
                0,
                0,
                0,
                clock,
                date,
                member.crc,
                size,
                size,
                len(member.name),
                len(extra),
                0,
                0,
                0,
                KERAS_FILE_MODE,
                offset,
            )
            directory.append(header + member.name + extra)
        directory = b"".join(directory)
        start, count = self.position, len(self._members)
        tail = b""
        if start > ZIP64_LIMIT or start + len(directory) > ZIP64_LIMIT or count >= 0xFFFF:
            end64 = start + len(directory)
            tail += _END64.pack(b"PK\x06\x06", _END64.size - 12, 45, 45, 0, 0, count, count, len(directory), start)
            tail += _LOCATOR64.pack(b"PK\x06\x07", 0, end64, 1)
            tail += _END.pack(b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), 0xFFFFFFFF, 0xFFFFFFFF, 0)
        else:
            tail += _END.pack(b"PK\x05\x06", 0, 0, count, count, len(directory), start, 0)
        self._write(directory + tail)
        self.position += len(directory) + len(tail)
        return self.position


def write_member_buffers(writer, fd, name, size, buffers, date_time, align):
    """Write one stored member made of `buffers` (exactly `size` bytes); return its data offset."""
    start = writer.begin(name, size, date_time, align)
    crc, written = bulk_io.write_buffers(fd, buffers, start)
    if written != size:
        raise ValueError(f"zip member '{name}': planned {size} bytes, wrote {written}.")
    writer.end(crc)
    return start

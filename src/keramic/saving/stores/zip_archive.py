"""Open a zip archive only when it says one thing: every structure checked before a member is trusted.

A zip can be made to mean different things to different readers: a local header that names
another file or size than the central directory, two members with one name, members that
overlap or hide outside the listed spans, a prefix or trailer that another parser reads (an HDF5
superblock at offset 0, 512, 1024, ... makes the same bytes an HDF5 file), encrypted or
exotic members, or a central directory of millions of entries. `open_checked` refuses all of
these with a `FileFormatError` naming the file and the member, and turns every error Python's
`zipfile` raises on damaged input into one.
"""

import io
import os
import struct
import zipfile
import zlib

from keramic.errors import FileFormatError

MAX_MEMBERS = 100_100  # the assets limit (100,000 files) plus the model's own members
MAX_CENTRAL_DIRECTORY_BYTES = 64 * 2**20
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SUPPORTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
# What Python's zipfile raises on damaged input (an OSError is the disk's, and stays one).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, NotImplementedError, UnicodeDecodeError)

_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")
_LOCAL = struct.Struct("<4s5H3L2H")
_ENCRYPTED_FLAGS = 0x0001 | 0x0040 | 0x2000  # traditional, strong, central-directory encryption
_DATA_DESCRIPTOR_FLAG = 0x0008
_UTF8_FLAG = 0x0800
_DATA_DESCRIPTOR_SIZES = (12, 16, 20, 24)  # CRC and sizes (4- or 8-byte), with or without a signature


def _tail(handle, size):
    """The last bytes of the file, where an end-of-archive record (with its comment) must lie, and
    the offset of that record in them (-1 when none ends the file exactly)."""
    tail_size = min(size, _END.size + 0xFFFF)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    position = tail.rfind(b"PK\x05\x06")
    while position >= 0 and (position + _END.size > len(tail) or position + _END.size + _END.unpack_from(tail, position)[-1] != len(tail)):
        position = tail.rfind(b"PK\x05\x06", 0, position)
    return tail, position


def _end_records(handle, path, size):
    """(member count, central directory start) from the end records, which must end the file exactly."""
    tail, position = _tail(handle, size)
    tail_size = len(tail)
    if position < 0:
        raise FileFormatError(f"{path}: not a zip archive, or truncated or followed by other data (no end-of-archive record at its end).")
    _, disk, start_disk, _, count, directory_size, directory_start, _ = _END.unpack_from(tail, position)
    end_offset = size - tail_size + position
    directory_end = end_offset
    if count == 0xFFFF or directory_start == 0xFFFFFFFF or directory_size == 0xFFFFFFFF:
        handle.seek(max(0, end_offset - _LOCATOR64.size))
        locator = handle.read(_LOCATOR64.size)
        if len(locator) != _LOCATOR64.size or locator[:4] != b"PK\x06\x07":
            raise FileFormatError(f"{path}: the zip64 end-of-archive locator is missing or damaged.")
        record_offset = _LOCATOR64.unpack(locator)[2]
        handle.seek(record_offset)
        record = handle.read(_END64.size)
        if len(record) != _END64.size or record[:4] != b"PK\x06\x06" or record_offset + _END64.size > end_offset - _LOCATOR64.size:
            raise FileFormatError(f"{path}: the zip64 end-of-archive record is missing or damaged.")
        _, _, _, _, disk, start_disk, _, count, directory_size, directory_start = _END64.unpack(record)
        directory_end = record_offset
    if disk or start_disk:
        raise FileFormatError(f"{path}: multi-part zip archives are not supported.")
    if count > MAX_MEMBERS or directory_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise FileFormatError(
            f"{path}: the archive lists {count:,} members in a {directory_size:,}-byte directory "
            f"(limits {MAX_MEMBERS:,} members, {MAX_CENTRAL_DIRECTORY_BYTES:,} bytes)."
        )
    if directory_start + directory_size != directory_end:
        raise FileFormatError(f"{path}: the zip central directory does not end where the end-of-archive record begins (other data in between).")
    return count, directory_start


def refuse_zip_ending(path: str) -> None:
    """Refuse a file (an HDF5 one, say) that also ends like a zip archive, as `zipfile` would read it."""
    with open(path, "rb") as handle:
        if _tail(handle, os.fstat(handle.fileno()).st_size)[1] < 0:
            return
    raise FileFormatError(f"{path}: the file also reads as a zip archive (a zip end record closes it); refusing the ambiguous file.")


def _check_name(path, info):
    name = info.orig_filename
    parts = name.rstrip("/").split("/")
    if not name or "\0" in name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":") or any(part in ("", ".", "..") for part in parts):
        raise FileFormatError(f"{path}: member '{name}' is not a plain relative name (absolute, '..', empty or odd parts).")


def _zip64_sizes(extra, usize, csize):
    """The sizes of a local header, read from its zip64 extra field where they are marked 0xFFFFFFFF."""
    position = 0
    while position + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, position)
        if kind == 1:
            values = list(struct.unpack_from(f"<{min(length, len(extra) - position - 4) // 8}Q", extra, position + 4))
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            break
        position += 4 + length
    return usize, csize


def _check_local_header(handle, path, info, encoded_name):
    """The member's data offset, once its local header agrees with the central directory."""
    fd = handle.fileno()
    header = os.pread(fd, _LOCAL.size, info.header_offset)
    if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
        raise FileFormatError(f"{path}: member '{info.filename}': bad local zip header (file damaged or truncated).")
    _, _, flags, method, _, _, crc, csize, usize, name_length, extra_length = _LOCAL.unpack(header)
    rest = os.pread(fd, name_length + extra_length, info.header_offset + _LOCAL.size)
    name, extra = rest[:name_length], rest[name_length:]
    if len(extra) != extra_length:
        raise FileFormatError(f"{path}: member '{info.filename}': the local zip header is truncated.")
    usize, csize = _zip64_sizes(extra, usize, csize)
    disagreements = []
    if name != encoded_name:
        disagreements.append(f"name {name!r}")
    if method != info.compress_type:
        disagreements.append(f"compression method {method}")
    if (flags ^ info.flag_bits) & (_ENCRYPTED_FLAGS | _DATA_DESCRIPTOR_FLAG | _UTF8_FLAG):
        disagreements.append(f"flags {flags:#06x}")
    if not flags & _DATA_DESCRIPTOR_FLAG and (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size):
        disagreements.append(f"CRC {crc:#010x}, sizes {csize:,}/{usize:,}")
    if disagreements:
        raise FileFormatError(
            f"{path}: member '{info.filename}': its local header disagrees with the central directory "
            f"({', '.join(disagreements)}); the archive may read differently in other tools, so it is refused."
        )
    return info.header_offset + _LOCAL.size + name_length + extra_length


def _check_member(path, info):
    if info.flag_bits & _ENCRYPTED_FLAGS:
        raise FileFormatError(f"{path}: member '{info.filename}' is encrypted; encrypted archives are not supported.")
    if info.compress_type not in SUPPORTED_METHODS:
        raise FileFormatError(
            f"{path}: member '{info.filename}' uses compression method {info.compress_type}; supported: {', '.join(SUPPORTED_METHODS.values())}."
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise FileFormatError(f"{path}: member '{info.filename}' is stored but lists {info.compress_size:,} stored and {info.file_size:,} real bytes.")
    _check_name(path, info)


def _check_hdf5_probes(handle, path, size, allowed):
    """HDF5 looks for its superblock at 0, 512, 1024, 2048, ...: none may hold one, except at the
    data start of an allowed stored member (there the HDF5 view is that member itself)."""
    offset, fd = 0, handle.fileno()
    while offset + len(HDF5_SIGNATURE) <= size:
        if os.pread(fd, len(HDF5_SIGNATURE), offset) == HDF5_SIGNATURE and offset not in allowed:
            raise FileFormatError(f"{path}: the file is both a zip archive and an HDF5 file (HDF5 superblock at offset {offset}); refusing the ambiguous file.")
        offset = 512 if offset == 0 else offset * 2


def _check_structure(archive, handle, path, size, hdf5_member, count, directory_start):
    infos = archive.infolist()
    if len(infos) != count:
        raise FileFormatError(f"{path}: the archive's end record lists {count:,} members but its directory holds {len(infos):,}.")
    names = set()
    spans = []
    allowed = set()
    for info in infos:
        _check_member(path, info)
        if info.filename in names:
            raise FileFormatError(f"{path}: member '{info.filename}' appears twice; refusing the ambiguous archive.")
        names.add(info.filename)
        encoded = info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_FLAG else "cp437")
        start = _check_local_header(handle, path, info, encoded)
        end = start + info.compress_size
        spans.append((info.header_offset, end, info.filename, info.flag_bits & _DATA_DESCRIPTOR_FLAG))
        if info.filename == hdf5_member and info.compress_type == zipfile.ZIP_STORED:
            allowed.add(start)
    spans.sort()
    _check_contiguous(path, spans, directory_start)
    _check_hdf5_probes(handle, path, size, allowed)


def _check_contiguous(path, spans, directory_start):
    """Members follow each other from offset 0 to the directory, with nothing in between but data
    descriptors: hidden bytes could be read as other members by a reader that walks local headers."""
    if (spans[0][0] if spans else directory_start) != 0:
        raise FileFormatError(f"{path}: other data precedes the first zip member.")
    following = [(start, f"member '{name}'") for start, _, name, _ in spans[1:]] + [(directory_start, "the zip directory")]
    for (_, end, name, descriptor), (start, other) in zip(spans, following):
        gap = start - end
        if gap < 0:
            raise FileFormatError(f"{path}: member '{name}' overlaps {other}; refusing the ambiguous archive.")
        if gap and not (descriptor and gap in _DATA_DESCRIPTOR_SIZES):
            raise FileFormatError(f"{path}: {gap:,} unlisted bytes lie between member '{name}' and {other}; refusing the ambiguous archive.")


def open_checked(path: str, hdf5_member: str | None = None) -> zipfile.ZipFile:
    """A `zipfile.ZipFile` for `path` once its structure is unambiguous (see the module docstring).

    `hdf5_member` names the stored member whose data may begin at an HDF5 superblock probe offset.

    >>> with open_checked("model.keras", "model.weights.h5") as archive:
    ...     archive.namelist()
    """
    path = os.fspath(path)
    # One open file for the checks and the archive (readers of members take copies of its
    # descriptor, `archive_fd`), so a save replacing the path meanwhile cannot mix two versions.
    handle = open(path, "rb")
    try:
        size = os.fstat(handle.fileno()).st_size
        try:
            count, directory_start = _end_records(handle, path, size)  # bounded before zipfile lists members
            archive = zipfile.ZipFile(handle, "r")
        except (*ZIP_ERRORS, OSError) as error:  # zipfile seeks to offsets the file gives: OSError too
            raise FileFormatError(f"{path}: not a valid zip archive ({type(error).__name__}: {error}).") from None
        archive.filename = path
        archive._filePassed = 0  # type: ignore[attr-defined]  # zipfile's own flag: the archive owns the file and closes it
    except BaseException:
        handle.close()
        raise
    try:
        _check_structure(archive, handle, path, size, hdf5_member, count, directory_start)
    except BaseException as error:
        archive.close()
        if isinstance(error, ZIP_ERRORS):
            raise FileFormatError(f"{path}: not a valid zip archive ({type(error).__name__}: {error}).") from None
        raise
    return archive


def archive_fd(archive: zipfile.ZipFile) -> int:
    """A new descriptor of the file `archive` reads (the caller closes it): the same version of the
    file, whatever happened to its path since it was opened."""
    try:
        return os.dup(archive.fp.fileno())  # type: ignore[union-attr]
    except (AttributeError, OSError, io.UnsupportedOperation):  # an archive over memory: its path, if any
        return os.open(archive.filename or "", os.O_RDONLY)

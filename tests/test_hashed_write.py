"""saving/stores/hashed_write.py: the bytes on disk and the returned SHA-256 are exactly the parts
given, on the direct (O_DIRECT) path and the buffered one, and failures surface as errors."""

import errno
import hashlib
import os

import numpy as np
import pytest

from keramic.saving.stores import hashed_write


def _parts():
    """A header of odd length, then arrays whose sizes are no multiple of a disk block."""
    rng = np.random.default_rng(0)
    return [b"header of 29 bytes, unaligned", rng.random(100_003).astype("float32"), rng.integers(0, 255, 70_001, dtype=np.uint8)]


def _write_and_check(path, parts, durable=True):
    """Write `parts` to `path`; the file holds exactly their bytes and the digest is theirs."""
    size, sha256 = hashed_write.write_hashed(path, parts, durable=durable)
    data = b"".join(bytes(memoryview(part).cast("B")) for part in parts)
    assert path.read_bytes() == data  # on the direct path: the last block's zero padding truncated away
    assert (size, sha256) == (len(data), hashlib.sha256(data).hexdigest())


@pytest.fixture
def small_chunks(monkeypatch):
    """64 KiB staging buffers and no size threshold, so small test files take the direct path."""
    monkeypatch.setattr(hashed_write, "CHUNK", 64 * 1024)
    monkeypatch.setattr(hashed_write, "DIRECT_MIN_BYTES", 0)
    monkeypatch.setattr(hashed_write, "_STAGING", hashed_write._StagingBuffers(keep=8))


def _direct_io_supported(directory):
    if not hashed_write._O_DIRECT:
        return False
    probe = os.path.join(directory, "probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | hashed_write._O_DIRECT, 0o644))
    except OSError:
        return False
    finally:
        if os.path.exists(probe):
            os.remove(probe)
    return True


def test_direct_path_writes_exactly_the_parts(tmp_path, small_chunks, monkeypatch):
    if not _direct_io_supported(tmp_path):
        pytest.skip(f"the file system of {tmp_path} takes no O_DIRECT writes: the buffered path is tested below")
    used = []
    direct = hashed_write._write_direct
    monkeypatch.setattr(hashed_write, "_write_direct", lambda *args: used.append(1) or direct(*args))
    _write_and_check(tmp_path / "data.bin", _parts())
    assert used, "the direct path was not taken"


@pytest.mark.parametrize("length", [4096, 64 * 1024, 3 * 64 * 1024, 3 * 64 * 1024 + 1])
def test_direct_path_at_block_and_chunk_boundaries(tmp_path, small_chunks, length):
    _write_and_check(tmp_path / "data.bin", [np.random.default_rng(length).integers(0, 255, length, dtype=np.uint8)])


@pytest.mark.parametrize("durable", [True, False])
def test_buffered_path_writes_exactly_the_parts(tmp_path, monkeypatch, durable):
    monkeypatch.setattr(hashed_write, "_O_DIRECT", 0)  # as on a system without O_DIRECT
    _write_and_check(tmp_path / "data.bin", _parts(), durable)


def test_a_file_system_refusing_direct_writes_falls_back_to_buffered(tmp_path, small_chunks, monkeypatch):
    def refuses(fd, views, total):
        os.write(fd, b"partial")
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(hashed_write, "_write_direct", refuses)
    _write_and_check(tmp_path / "data.bin", _parts())


def test_a_failing_write_raises_and_does_not_hang(tmp_path, small_chunks, monkeypatch):
    calls = []
    original = hashed_write._pwrite_all

    def disk_full_on_third(fd, view, offset):
        calls.append(offset)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(fd, view, offset)

    monkeypatch.setattr(hashed_write, "_pwrite_all", disk_full_on_third)
    with pytest.raises(OSError) as raised:
        hashed_write.write_hashed(tmp_path / "data.bin", [np.ones(10 * 64 * 1024, np.uint8)], durable=True)
    assert raised.value.errno == errno.ENOSPC


def test_an_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        hashed_write.write_hashed(tmp_path / "data.bin", [b"new"], durable=True)
    assert (tmp_path / "data.bin").read_bytes() == b"keep"

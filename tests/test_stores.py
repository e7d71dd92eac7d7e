"""Stores: the atomic writer, stale temp cleanup, zip writing and reading in place, bulk I/O with
CRC-32, the HDF5 layout writer, and the checks on keramic's tensor index."""

import io
import json
import os
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import keramic
from keramic import layers
from keramic.errors import FileFormatError
from keramic.saving.stores import atomic, bulk_io, h5_layout, weights_index, zip_writer
from keramic.saving.stores.zip_member import FileWindow, open_member

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "keras3")


def dead_pid():
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ---------------------------------------------------------------- atomic writer
def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "m.keras"
    target.write_bytes(b"old")
    with atomic.write_atomically(target) as temporary:
        name = os.path.basename(temporary)
        assert name.startswith(".m.keras.keramic-") and f"-{os.getpid()}-" in name
        with open(temporary, "wb") as handle:
            handle.write(b"new")
        assert target.read_bytes() == b"old"  # nothing visible before the commit
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["m.keras"]


def test_failure_mid_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "m.keras"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic.write_atomically(target) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"half of the ne")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.keras"]


def test_temp_files_get_the_umask_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    with atomic.write_atomically(tmp_path / "m.keras") as temporary:
        open(temporary, "wb").close()
    assert os.stat(tmp_path / "m.keras").st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_stale_temp_cleanup_touches_only_own_pattern_with_dead_pids(tmp_path):
    dead = dead_pid()
    stale = atomic.temp_name("m.keras", pid=dead)
    live = atomic.temp_name("m.keras", pid=os.getpid())
    others = [
        atomic.temp_name("other.keras", pid=dead),  # another target's leftovers
        f".m.keras.{dead}.tmp",  # not our pattern
        stale[1:],  # no leading dot: a user's file
        stale + ".bak",
        f".m.keras.keramic-{dead}-zzzzzzzz.tmp",  # token not hex
    ]
    for name in [stale, live, *others]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / atomic.temp_name("m.keras", pid=dead)).mkdir()  # a directory is never removed

    with atomic.write_atomically(tmp_path / "m.keras") as temporary:
        open(temporary, "wb").close()
    remaining = set(os.listdir(tmp_path))
    assert stale not in remaining
    assert {live, "m.keras", *others} <= remaining
    assert len(remaining) == len(others) + 3  # live temp, target, the directory


def test_stale_temp_directories_are_removed_only_when_asked_for(tmp_path):
    dead = dead_pid()
    stale_dir, stale_file = atomic.temp_name("ckpt-3", pid=dead), atomic.temp_name("ckpt-4", pid=dead)
    live_dir, other = atomic.temp_name("ckpt-5", pid=os.getpid()), atomic.temp_name("notes", pid=dead)
    for name in (stale_dir, live_dir, other):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data").write_bytes(b"x")
    (tmp_path / stale_file).write_bytes(b"x")  # a file: not what a directory target leaves
    assert atomic.remove_stale_temps(tmp_path, r"ckpt-\d+", directories=True) == [stale_dir]
    assert set(os.listdir(tmp_path)) == {live_dir, other, stale_file}


# ---------------------------------------------------------------- bulk I/O and CRC-32
# ---------------------------------------------------------------- directories and bounded JSON
def test_directory_commit_replaces_the_old_directory_whole_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "model_dir"
    with atomic.directory_atomically(target) as temporary:
        (Path(temporary) / "a.txt").write_text("old")
    with atomic.directory_atomically(target) as temporary:
        (Path(temporary) / "b.txt").write_text("new")
    assert os.listdir(target) == ["b.txt"] and sorted(os.listdir(tmp_path)) == ["model_dir"]
    with pytest.raises(RuntimeError, match="crash"):
        with atomic.directory_atomically(target) as temporary:
            (Path(temporary) / "c.txt").write_text("half")
            raise RuntimeError("crash")
    assert os.listdir(target) == ["b.txt"] and sorted(os.listdir(tmp_path)) == ["model_dir"]


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": 1, "a": 2}', "the key 'a' appears twice"),
        ("[" * 300 + "]" * 300, "nested more than"),
        ('{"a": [1, 2', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bounded_json_refuses_repeated_keys_deep_nesting_and_garbage(tmp_path, text, message):
    path = tmp_path / "x.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(FileFormatError, match=message) as caught:
        atomic.read_json_file(path)
    assert "x.json" in str(caught.value)


def _container_depth(value):
    """Nesting depth of a parsed JSON value, counted independently of the reader's byte scan."""
    if isinstance(value, dict):
        return 1 + max(map(_container_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_container_depth, value), default=0)
    return 0


@pytest.mark.parametrize("chunk", [7, 2**20])
def test_bounded_json_depth_scan_counts_only_brackets_outside_strings(monkeypatch, chunk):
    import random

    monkeypatch.setattr(atomic, "_SCAN_CHUNK", chunk)  # 7 bytes: state carried across many chunks
    rng = random.Random(chunk)
    texts = ["a]", '\\"[{', "\\", 'x\\\\"[', "[[[", "}}", "", '"']

    def value(depth):
        draw = rng.random()
        if depth > 10 or draw < 0.3:
            return rng.choice(texts + [1, None, 2.5])
        if draw < 0.65:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(texts) + str(i): value(depth + 1) for i in range(rng.randint(0, 3))}

    for _ in range(400):
        document = value(0)
        data, depth = json.dumps(document).encode(), _container_depth(document)
        if depth:
            assert atomic.parse_json(data, "x", max_depth=depth) == document
            with pytest.raises(FileFormatError, match="nested more than"):
                atomic.parse_json(data, "x", max_depth=depth - 1)
    wide = json.dumps({"s": "[" * 5000, "t": ["{" * 300]}).encode()  # brackets in strings do not nest
    assert atomic.parse_json(wide, "x", max_depth=2)["s"] == "[" * 5000


def test_bounded_json_is_size_capped_before_reading_for_files_and_archive_members(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"k": "v" * 200}))
    with pytest.raises(FileFormatError, match=r"big\.json: 2\d\d bytes is too large for a JSON file \(limit 100\)"):
        atomic.read_json_file(path, 100)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("config.json", path.read_text())
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        with pytest.raises(FileFormatError, match=r"entry 'config\.json' declares 2\d\d bytes \(limit 100\)"):
            atomic.read_json_member(str(tmp_path / "a.zip"), archive, "config.json", 100)
        assert atomic.read_json_member(str(tmp_path / "a.zip"), archive, "config.json") == {"k": "v" * 200}


@pytest.mark.parametrize("split", [0, 1, 7, 4096, 99_999, 100_000])
def test_crc32_combine_matches_crc_of_the_concatenation(split):
    data = np.random.default_rng(split).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    a, b = data[:split], data[split:]
    assert bulk_io.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(data)


@pytest.mark.parametrize("parallel", [False, True])
def test_write_buffers_writes_every_byte_in_order_with_its_crc(tmp_path, monkeypatch, parallel):
    if parallel:
        monkeypatch.setattr(bulk_io, "PIECE_BYTES", 1000)
        monkeypatch.setattr(bulk_io, "PARALLEL_BYTES", 1)
    rng = np.random.default_rng(0)
    buffers = [rng.integers(0, 256, n, dtype=np.uint8) for n in (0, 5, 2500, 1, 999, 3001)] + [b"tail"]
    expected = b"".join(bytes(b) for b in buffers)
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, b"HEAD", 0)
        crc, count = bulk_io.write_buffers(fd, buffers, 4)
        back = [bytearray(len(expected) - 10), bytearray(10)]
        bulk_io.read_into(fd, [(back[0], 4), (back[1], 4 + len(expected) - 10)])
        with pytest.raises(EOFError, match="ended"):
            bulk_io.read_into(fd, [(bytearray(20), len(expected))], "out.bin")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"HEAD" + expected
    assert (crc, count) == (zlib.crc32(expected), len(expected))
    assert bytes(back[0] + back[1]) == expected


@pytest.mark.parametrize("limits", [None, (7, 3, 0)])  # (PIECE_BYTES, _IOV_MAX, PARALLEL_READ_BYTES)
def test_scatter_read_fills_buffers_through_gaps_short_reads_and_limits(tmp_path, monkeypatch, limits):
    data = np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    if limits:
        for name, value in zip(("PIECE_BYTES", "_IOV_MAX", "PARALLEL_READ_BYTES"), limits):
            monkeypatch.setattr(bulk_io, name, value)
        real_preadv = os.preadv
        monkeypatch.setattr(os, "preadv", lambda fd, views, offset: real_preadv(fd, [memoryview(views[0])[:5]], offset))
    # Unsorted, adjacent, small and large gaps, empty buffers, and one range read twice.
    spans = [(100, 30), (0, 10), (10, 5), (64, 0), (200, 1), (9000, 500), (130, 7), (140, 3), (19990, 10), (100, 30)]
    jobs = [(bytearray(size), offset) for offset, size in spans]
    fd = os.open(path, os.O_RDONLY)
    try:
        bulk_io.scatter_read(fd, jobs, "data.bin")
        with pytest.raises(EOFError, match=r"data.bin: the file ended \d+ bytes early"):
            bulk_io.scatter_read(fd, [(bytearray(5), 100), (bytearray(20), 19995)], "data.bin")
    finally:
        os.close(fd)
    for buffer, offset in jobs:
        assert bytes(buffer) == data[offset : offset + len(buffer)]


@pytest.mark.parametrize("parallel", [False, True])
def test_span_crc_is_zlibs_whole_or_in_parts_and_in_a_forked_child(tmp_path, monkeypatch, parallel):
    if parallel:
        monkeypatch.setattr(bulk_io, "PARALLEL_READ_BYTES", 1)  # every span in one part a thread
    data = np.random.default_rng(2).integers(0, 256, 70001, dtype=np.uint8).tobytes()
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    spans = [(0, len(data)), (5, 1000), (4095, 65000), (3, 0), (69999, 2)]
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, size in spans:
            assert bulk_io.span_crc(fd, start, size) == zlib.crc32(data[start : start + size])
        with pytest.raises(EOFError, match="data.bin: the file ends before byte 70002"):
            bulk_io.span_crc(fd, 1, len(data), "data.bin")
        # A child forked after the threads started has none of them: it starts its own.
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                os.write(write_end, str(bulk_io.span_crc(fd, 0, len(data))).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        answer = os.read(read_end, 64)
        os.close(read_end)
        os.waitpid(child, 0)
    finally:
        os.close(fd)
    assert int(answer) == zlib.crc32(data)


def test_a_started_span_crc_outlives_its_descriptor_and_answers_again(tmp_path, monkeypatch):
    monkeypatch.setattr(bulk_io, "SMALL_SPAN_BYTES", 16)  # the threaded, mapped path
    monkeypatch.setattr(bulk_io, "PARALLEL_READ_BYTES", 1)
    data = np.random.default_rng(3).integers(0, 256, 50001, dtype=np.uint8).tobytes()
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    pending = bulk_io.span_crc_started(fd, 7, 49990)
    os.close(fd)  # the map keeps the file
    assert pending() == pending() == zlib.crc32(data[7:49997])


# ---------------------------------------------------------------- zip writing and reading in place
def write_zip(path, members, align=64):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        writer = zip_writer.StoredZipWriter(fd)
        starts = {}
        for name, data in members:
            if name.endswith(".h5"):
                starts[name] = zip_writer.write_member_buffers(writer, fd, name, len(data), [data], zip_writer.now(), align)
            else:
                writer.add(name, data)
        writer.close()
    finally:
        os.close(fd)
    return starts


@pytest.mark.parametrize("zip64", [False, True])
def test_written_zip_reads_back_with_correct_crcs(tmp_path, monkeypatch, zip64):
    if zip64:
        monkeypatch.setattr(zip_writer, "ZIP64_LIMIT", 0)  # force zip64 records on small sizes
    members = [("metadata.json", b'{"a": 1}'), ("config.json", b"{}" * 100), ("model.weights.h5", os.urandom(50_000))]
    path = tmp_path / "a.keras"
    starts = write_zip(path, members)
    assert starts["model.weights.h5"] % 64 == 0
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [name for name, _ in members]
        for name, data in members:
            info = archive.getinfo(name)
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.external_attr == 0o600 << 16
            assert archive.read(name) == data
        with open_member(str(path), archive, "model.weights.h5") as window:
            assert window.start == starts["model.weights.h5"]


def test_crc_is_checked_by_readers_of_our_archives(tmp_path):
    path = tmp_path / "a.keras"
    starts = write_zip(path, [("config.json", b"{}"), ("model.weights.h5", b"x" * 1000)])
    with open(path, "r+b") as handle:
        handle.seek(starts["model.weights.h5"] + 10)
        handle.write(b"y")
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() == "model.weights.h5"


def test_file_window_reads_seeks_and_refuses_truncated_members(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(100)))
    with FileWindow(str(path), 10, 20) as window:
        assert window.read(5) == bytes(range(10, 15))
        window.seek(-3, io.SEEK_END)
        assert window.read() == bytes(range(27, 30))
        assert window.read(10) == b""
        window.seek(18)
        buffer = bytearray(8)
        assert window.readinto(buffer) == 2 and buffer[:2] == bytes([28, 29])
    with pytest.raises(FileFormatError, match="truncated"):
        FileWindow(str(path), 90, 20)


# ---------------------------------------------------------------- HDF5 layout
class Owner:
    def __init__(self, name):
        self.name = name


def write_image(path, groups):
    image = h5_layout.WeightsImage(groups)
    with open(path, "wb") as handle:
        handle.write(image.metadata)
        for dataset in image.datasets:
            if dataset.nbytes:
                handle.seek(dataset.offset)
                handle.write(dataset.buffer)
        handle.truncate(image.size)
    return image


def test_layout_writer_makes_files_h5py_reads_as_its_own(tmp_path):
    many = [torch.full((2, 3), float(i)) for i in range(300)]  # several symbol nodes and B-tree levels
    odd = [
        torch.tensor(7, dtype=torch.int32),
        torch.tensor(0.5, dtype=torch.float64),
        torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        torch.tensor([True, False]),
        torch.zeros(0, 3),
        torch.arange(6, dtype=torch.float16).reshape(2, 3).t(),  # not contiguous
        torch.arange(4, dtype=torch.uint8),
    ]
    groups = [("", Owner("model"), []), ("layers/dense", Owner("d1"), many), ("optimizer", Owner("adam"), odd)]
    path = tmp_path / "w.h5"
    image = write_image(path, groups)
    assert all(d.offset % h5_layout.DATA_ALIGNMENT == 0 for d in image.datasets if d.nbytes)
    with h5py.File(path, "r") as h5file:
        assert dict(h5file.attrs) == {}
        assert h5file["vars"].attrs["name"] == "model"
        assert h5file["layers/dense/vars"].attrs["name"] == "d1"
        assert len(h5file["layers/dense/vars"]) == 300
        for index, value in enumerate(many):
            np.testing.assert_array_equal(h5file[f"layers/dense/vars/{index}"][()], value.numpy())
        stored = h5file["optimizer/vars"]
        assert stored["0"].shape == () and stored["0"][()] == 7 and stored["0"].dtype == np.int32
        assert stored["1"][()] == 0.5
        assert stored["2"].attrs["dtype"] == "bfloat16" and stored["2"].dtype == np.dtype("V2")
        assert torch.equal(torch.from_numpy(stored["2"][()].view(np.int16).copy()).view(torch.bfloat16), odd[2])
        assert stored["3"].dtype == bool and stored["3"][()].tolist() == [True, False]
        assert stored["4"].shape == (0, 3)
        np.testing.assert_array_equal(stored["5"][()], odd[5].numpy())
        assert stored["6"].dtype == np.uint8
        plist = stored["1"].id.get_create_plist()
        assert plist.get_layout() == h5py.h5d.CONTIGUOUS and plist.get_nfilters() == 0


def test_a_layout_planned_from_dtypes_and_shapes_equals_the_one_from_tensors():
    # The index check lays files out from dtypes and shapes only; it must match the writer's bytes.
    tensors = [
        torch.tensor(7, dtype=torch.int32),
        torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        torch.tensor([True, False]),
        torch.zeros(0, 3),
        torch.ones(2, 3, dtype=torch.complex64),
        torch.zeros(4, dtype=torch.uint16),
    ]
    groups = [("", Owner("model"), []), ("layers/a", Owner("a"), tensors), ("layers/b", Owner("b"), [torch.ones(3)] * 20)]
    planned = [(path, owner, [h5_layout.PlannedTensor(str(t.dtype).removeprefix("torch."), tuple(t.shape)) for t in values]) for path, owner, values in groups]
    from_tensors, from_plan = h5_layout.WeightsImage(groups), h5_layout.WeightsImage(planned)
    assert from_plan.metadata == from_tensors.metadata and from_plan.size == from_tensors.size
    assert [(d.offset, d.nbytes) for d in from_plan.datasets] == [(d.offset, d.nbytes) for d in from_tensors.datasets]
    assert all(d.buffer is None for d in from_plan.datasets)


def test_string_attributes_spread_over_several_global_heaps(tmp_path, monkeypatch):
    monkeypatch.setattr(h5_layout, "GLOBAL_HEAP_MAX_OBJECTS", 3)
    groups = [(f"layers/d{i}", Owner(f"name_{i}"), [torch.ones(2, dtype=torch.bfloat16)]) for i in range(5)]
    write_image(tmp_path / "w.h5", groups)
    with h5py.File(tmp_path / "w.h5", "r") as h5file:
        for i in range(5):
            assert h5file[f"layers/d{i}/vars"].attrs["name"] == f"name_{i}"
            assert h5file[f"layers/d{i}/vars/0"].attrs["dtype"] == "bfloat16"


def test_layout_writer_files_stay_editable_by_h5py(tmp_path):
    groups = [("layers/dense", Owner("d"), [torch.full((3,), float(i)) for i in range(100)])]
    path = tmp_path / "w.h5"
    write_image(path, groups)
    with h5py.File(path, "r+") as h5file:
        h5file["layers/dense/vars"].create_dataset("extra", data=np.arange(3))
        del h5file["layers/dense/vars/50"]
    with h5py.File(path, "r") as h5file:
        assert len(h5file["layers/dense/vars"]) == 100
        np.testing.assert_array_equal(h5file["layers/dense/vars/99"][()], np.full(3, 99.0))


# ---------------------------------------------------------------- keramic's index in .keras files
def small_model():
    model = keramic.Sequential([keramic.Input((4,)), layers.Dense(3), layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(np.ones((2, 4), "float32"), np.ones((2, 3), "float32"))
    return model


def rewrite_metadata(source, target, change):
    with zipfile.ZipFile(source) as old:
        metadata = json.loads(old.read("metadata.json"))
        change(metadata[weights_index.KEY])
        with zipfile.ZipFile(target, "w") as new:
            for info in old.infolist():
                data = json.dumps(metadata).encode() if info.filename == "metadata.json" else old.read(info.filename)
                new.writestr(info, data)


def open_index(path):
    with zipfile.ZipFile(path) as archive:
        return weights_index.open_index(str(path), archive, "model.weights.h5", "metadata.json")


def test_our_keras_files_carry_an_index_that_checks_out(tmp_path):
    model = small_model()
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert archive.testzip() is None
    indexed = open_index(path)
    assert indexed is not None
    with indexed:
        kernel = indexed.stored("layers/dense/vars")[0]
        assert kernel.dtype == "float32" and kernel.shape == (4, 3)
        with open(path, "rb") as handle:
            handle.seek(kernel.offset)
            np.testing.assert_array_equal(np.frombuffer(handle.read(48), "<f4").reshape(4, 3), model.layers[0].kernel.numpy())


def test_keras_written_files_have_no_index(tmp_path):
    assert open_index(os.path.join(FIXTURES, "seed_mlp", "model.keras")) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda index: index["groups"]["layers/dense/vars"].reverse(),  # offsets no longer match HDF5
        lambda index: index.update(size=index["size"] + 1),
        lambda index: index["groups"]["layers/dense/vars"][0].__setitem__(2, index["size"] - 4),  # past the end
        lambda index: index["groups"]["layers/dense/vars"][0].__setitem__(0, "object"),
        lambda index: index.update(version=99),
        lambda index: index.update(groups=[]),
    ],
)
def test_an_index_that_does_not_check_out_is_ignored_and_hdf5_is_read(tmp_path, damage):
    model = small_model()
    path, edited = tmp_path / "m.keras", tmp_path / "edited.keras"
    model.save(path)
    rewrite_metadata(path, edited, damage)
    assert open_index(edited) is None
    loaded = keramic.models.load_model(edited)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_overlapping_index_entries_are_refused(tmp_path):
    model = small_model()
    path, edited = tmp_path / "m.keras", tmp_path / "edited.keras"
    model.save(path)

    def overlap(index):
        entries = index["groups"]["layers/dense/vars"]
        entries[1][2] = entries[0][2] + 4

    rewrite_metadata(path, edited, overlap)
    with zipfile.ZipFile(edited) as archive:
        metadata = json.loads(archive.read("metadata.json"))[weights_index.KEY]
    image = weights_index._laid_out(metadata)  # the layout puts tensors apart; the index disagrees
    assert image is not None and weights_index._entries(image, metadata["groups"], 0) is None


@pytest.mark.parametrize("units", [100, 2200])  # weights of 0.2 MB (read, checked in the caller) and 9 MB (threads)
def test_load_weights_checks_the_member_on_threads_before_changing_a_variable(tmp_path, units):
    """The member's CRC-32 runs on the reading threads while the index is checked; a damaged tensor
    is refused and every variable keeps its value, and the honest file loads exactly."""
    model = keramic.Sequential([keramic.Input((1024,)), layers.Dense(units)])
    path, damaged = tmp_path / "m.keras", tmp_path / "damaged.keras"
    model.save(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
        index = json.loads(archive.read("metadata.json"))[weights_index.KEY]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    offset = start + index["groups"]["layers/dense/vars"][0][2] + 4 * (1024 * units - 1)  # the kernel's last value
    data[offset] ^= 0x40
    damaged.write_bytes(bytes(data))
    target = keramic.Sequential([keramic.Input((1024,)), layers.Dense(units)])
    before = [w.copy() for w in target.get_weights()]
    with pytest.raises(keramic.errors.KeramicError, match="CRC") as caught:
        target.load_weights(damaged)
    assert "damaged.keras" in str(caught.value)
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)
    target.load_weights(path)
    for a, b in zip(model.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)

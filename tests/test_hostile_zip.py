"""Hostile `.keras` zip archives: each is built from a real file (written by keramic or by real
Keras 3 in the test), altered byte-wise here, and must either load exactly what the file truly holds
or be refused with a keramic error naming the file, through every entry point: `load_model`,
`load_weights` (leaving the model as it was) and `inspect`."""

import io
import json
import os
import pathlib
import struct
import tracemalloc
import zipfile
import zlib

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keramic
from keramic.errors import KeramicError
from keramic.saving.inspect import inspect_file
from keramic.saving.stores import bulk_io, weights_index, zip_archive, zip_writer

WEIGHTS, CONFIG, METADATA = "model.weights.h5", "config.json", "metadata.json"


def build(module):
    model = module.Sequential([module.Input((4,)), module.layers.Dense(3), module.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.normal(size=(2, 4)).astype("float32"), rng.normal(size=(2, 3)).astype("float32"))
    return model


KERAS_FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "keras3", "seed_mlp")  # written by Keras 3.15.1 (README there)


class Case:
    """A real `.keras` file, the weights it truly holds, and a built model of its architecture."""

    def __init__(self, path, expected, make_target):
        self.path, self.expected, self.make_target = path, expected, make_target


def small_model():
    return keramic.Sequential([keramic.Input((4,)), keramic.layers.Dense(3), keramic.layers.Dense(3)])


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """A .keras keramic wrote (Adam state included), and the saved model's own weights."""
    model = small_model()
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.normal(size=(2, 4)).astype("float32"), rng.normal(size=(2, 3)).astype("float32"))
    path = tmp_path_factory.mktemp("ours") / "ours.keras"
    model.save(path)
    return Case(path, [w.copy() for w in model.get_weights()], small_model)


@pytest.fixture(scope="module")
def theirs():
    """A .keras real Keras 3 wrote, and its weights as h5py reads them from the archive."""
    path = os.path.join(KERAS_FIXTURE, "model.keras")
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read(WEIGHTS)), "r") as h5file:
        expected = [h5file[f"layers/{layer}/vars/{index}"][()] for layer in ("dense", "dense_1", "dense_2") for index in (0, 1)]
    with open(os.path.join(KERAS_FIXTURE, "config.json")) as handle:
        config = handle.read()
    return Case(pathlib.Path(path), expected, lambda: keramic.models.model_from_json(config))


@pytest.fixture(params=["ours", "theirs"])
def original(request):
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------- the three entry points
def entry_points(case):
    def via_load_model(path):
        return keramic.models.load_model(path).get_weights()

    def via_load_weights(path):
        model = case.make_target()
        model.load_weights(path)
        return model.get_weights()

    return {"load_model": via_load_model, "load_weights": via_load_weights, "inspect": lambda path: inspect_file(str(path))}


ENTRY_POINTS = ["load_model", "load_weights", "inspect"]


def assert_refused(case, path, entry, match=None):
    """`entry` raises a keramic error naming the file (and `match`); load_weights leaves the model as it was."""
    if entry == "load_weights":
        model = case.make_target()
        before = [w.copy() for w in model.get_weights()]
        with pytest.raises(KeramicError, match=match) as caught:
            model.load_weights(path)
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)
    else:
        with pytest.raises(KeramicError, match=match) as caught:
            entry_points(case)[entry](path)
    assert os.path.basename(path) in str(caught.value)
    return caught.value


def assert_loads_exactly(case, path):
    for entry in ("load_model", "load_weights"):
        loaded = entry_points(case)[entry](path)
        assert len(loaded) == len(case.expected)
        for a, b in zip(loaded, case.expected):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- reading and patching zip bytes
def member_offsets(data):
    """{name: (local header offset, central header offset, data offset, info)}, read independently."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    end = data.rindex(b"PK\x05\x06")
    count, _, directory = struct.unpack_from("<HLL", data, end + 10)
    offsets, position = {}, directory
    for _ in range(count):
        name_length, extra_length, comment_length = struct.unpack_from("<3H", data, position + 28)
        name = data[position + 46 : position + 46 + name_length].decode()
        local = struct.unpack_from("<L", data, position + 42)[0]
        local_name, local_extra = struct.unpack_from("<2H", data, local + 26)
        offsets[name] = (local, position, local + 30 + local_name + local_extra, archive.getinfo(name))
        position += 46 + name_length + extra_length + comment_length
    return offsets


def patched(data, *edits):
    data = bytearray(data)
    for offset, value in edits:
        data[offset : offset + len(value)] = value
    return bytes(data)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rebuilt(source, replace=None, extra=(), compress=None):
    """The archive's members re-written by Python's zipfile (CRCs and sizes made consistent),
    with members replaced, added or compressed."""
    replace = replace or {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(buffer, "w") as new:
        for info in old.infolist():
            data = replace.get(info.filename, old.read(info.filename))
            new.writestr(info.filename, data, compress_type=(compress or {}).get(info.filename, zipfile.ZIP_STORED))
        for name, data in extra:
            new.writestr(name, data)
    return buffer.getvalue()


def dataset_offset(data, member, dataset):
    """Absolute offset of an HDF5 dataset's bytes in the archive, as h5py reads the member."""
    local, _, start, info = member_offsets(data)[member]
    with h5py.File(io.BytesIO(data[start : start + info.file_size]), "r") as h5file:
        return start + h5file[dataset].id.get_offset()


# ---------------------------------------------------------------- the checked reader itself
@pytest.mark.parametrize("small_pieces", [False, True])
def test_read_checked_fills_buffers_and_checksums_the_whole_span(tmp_path, monkeypatch, small_pieces):
    if small_pieces:  # many units, several gap chunks, read on threads
        monkeypatch.setattr(bulk_io, "PIECE_BYTES", 1000)
        monkeypatch.setattr(bulk_io, "PARALLEL_BYTES", 1)
        monkeypatch.setattr(bulk_io, "GAP_CHUNK_BYTES", 300)
        monkeypatch.setattr(bulk_io, "RUN_BYTES", 700)
    data = np.random.default_rng(2).bytes(20000)
    path = write(tmp_path, "span.bin", data)
    fd = os.open(path, os.O_RDONLY)
    try:
        first, second = bytearray(2500), bytearray(4000)
        crc = bulk_io.read_checked(fd, [(second, 9000), (first, 1200)], 1000, 18000)
        assert crc == zlib.crc32(data[1000:19000])
        assert first == data[1200:3700] and second == data[9000:13000]
        assert bulk_io.read_checked(fd, [], 0, len(data)) == zlib.crc32(data)
        with pytest.raises(EOFError):
            bulk_io.read_checked(fd, [], 100, len(data))
        with pytest.raises(ValueError):
            bulk_io.read_checked(fd, [(bytearray(10), 5), (bytearray(10), 10)], 0, 100)  # overlapping
    finally:
        os.close(fd)


# ---------------------------------------------------------------- honest files, the reference
def test_honest_files_load_exactly_and_ours_through_the_index(original, tmp_path):
    case = original
    path = case.path
    assert_loads_exactly(case, path)
    assert inspect_file(str(path))["format"] == "keras_v3"
    with zipfile.ZipFile(path) as archive:
        indexed = weights_index.open_index(str(path), archive, WEIGHTS, METADATA)
    assert (indexed is not None) == (path.name == "ours.keras")
    if indexed is not None:
        indexed.close()


def test_a_deflated_archive_loads_exactly(original, tmp_path):
    case = original
    path = case.path
    deflated = write(tmp_path, "deflated.keras", rebuilt(path, compress={WEIGHTS: zipfile.ZIP_DEFLATED, CONFIG: zipfile.ZIP_DEFLATED}))
    assert_loads_exactly(case, deflated)


# ---------------------------------------------------------------- 1. CRC-32: altered bytes are refused
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_flipped_bit_in_a_tensor_is_refused(original, tmp_path, entry):
    case = original
    path = case.path
    data = path.read_bytes()
    offset = dataset_offset(data, WEIGHTS, "layers/dense/vars/0") + 5
    damaged = write(tmp_path, "flipped.keras", patched(data, (offset, bytes([data[offset] ^ 0x10]))))
    error = assert_refused(case, damaged, entry, match="CRC")
    assert WEIGHTS in str(error)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_flipped_bit_in_the_hdf5_metadata_is_refused(original, tmp_path, entry):
    case = original
    path = case.path
    data = path.read_bytes()
    _, _, start, _ = member_offsets(data)[WEIGHTS]
    offset = start + 200  # inside the superblock's root group entry and object headers
    damaged = write(tmp_path, "flipped.keras", patched(data, (offset, bytes([data[offset] ^ 0x01]))))
    assert_refused(case, damaged, entry)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_changed_letter_in_config_json_is_refused(original, tmp_path, entry):
    case = original
    path = case.path
    data = path.read_bytes()
    _, _, start, info = member_offsets(data)[CONFIG]
    offset = data.index(b'"Dense"', start, start + info.file_size) + 1
    damaged = write(tmp_path, "config.keras", patched(data, (offset, b"d")))  # "dense": still valid JSON
    error = assert_refused(case, damaged, entry, match="CRC")
    assert CONFIG in str(error)


@keramic.saving.register_keras_serializable(package="hostile_zip")
class WordList(keramic.layers.Layer):
    """A layer with an asset file (its word list), as lookup layers keep their vocabularies."""

    def __init__(self, words=None, **kwargs):
        super().__init__(**kwargs)
        self.words = words or []

    def call(self, inputs):
        return inputs

    def save_assets(self, directory):
        pathlib.Path(directory, "words.txt").write_text("\n".join(self.words))

    def load_assets(self, directory):
        self.words = pathlib.Path(directory, "words.txt").read_text().split("\n")


def test_a_changed_byte_in_an_asset_is_refused_naming_the_member(tmp_path):
    model = keramic.Sequential([keramic.Input((2,)), WordList(["alpha", "beta"] * 20, name="words")])
    model.save(tmp_path / "assets.keras")
    data = (tmp_path / "assets.keras").read_bytes()
    member = "assets/layers/word_list/words.txt"  # Keras names list members by class, not layer name
    _, _, start, info = member_offsets(data)[member]
    assert info.compress_type == zipfile.ZIP_STORED
    damaged = write(tmp_path, "damaged.keras", patched(data, (start + 6, b"B")))  # "alpha\nbeta": b -> B
    with pytest.raises(KeramicError, match="CRC") as error:
        keramic.saving.load_model(damaged)
    assert member in str(error.value) and "damaged.keras" in str(error.value)
    assert keramic.saving.load_model(tmp_path / "assets.keras").get_layer("words").words == ["alpha", "beta"] * 20


# ---------------------------------------------------------------- 2. keramic's index never decides alone
def index_of(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(METADATA))


def swap_kernel_with_its_adam_slot(index):
    groups = index["groups"]
    kernel = groups["layers/dense/vars"][0]
    slot = next(e for e in groups["optimizer/vars"] if e[1] == kernel[1] and e[2] != kernel[2])
    kernel[2], slot[2] = slot[2], kernel[2]


def retype_kernel(index):
    index["groups"]["layers/dense/vars"][0][0] = "int32"


def reshape_kernel(index):
    index["groups"]["layers/dense/vars"][0][1] = [3, 4]


def shift_bias(index):
    entry = index["groups"]["layers/dense_1/vars"][1]
    entry[2] -= 4  # into the padding before it: in bounds, no overlap


@pytest.mark.parametrize("lie", [swap_kernel_with_its_adam_slot, retype_kernel, reshape_kernel, shift_bias])
def test_an_index_that_lies_loads_the_true_hdf5_content(ours, tmp_path, lie):
    case = ours
    path = case.path
    metadata = index_of(path)
    lie(metadata[weights_index.KEY])
    liar = write(tmp_path, "liar.keras", rebuilt(path, replace={METADATA: json.dumps(metadata).encode()}))
    with zipfile.ZipFile(liar) as archive:
        assert archive.testzip() is None  # every CRC matches: only the index lies
        assert weights_index.open_index(str(liar), archive, WEIGHTS, METADATA) is None
    assert_loads_exactly(case, liar)


def test_an_index_naming_other_owners_is_not_trusted(ours, tmp_path):
    case = ours
    path = case.path
    metadata = index_of(path)
    metadata[weights_index.KEY]["owners"][1][1] = "renamed"
    liar = write(tmp_path, "liar.keras", rebuilt(path, replace={METADATA: json.dumps(metadata).encode()}))
    with zipfile.ZipFile(liar) as archive:
        assert weights_index.open_index(str(liar), archive, WEIGHTS, METADATA) is None
    assert_loads_exactly(case, liar)


# ---------------------------------------------------------------- 3. ambiguous archives are refused
def local_field(offsets, name, field):
    return offsets[name][0] + {"flags": 6, "method": 8, "crc": 14, "csize": 18, "usize": 22, "name": 30}[field]


def central_field(offsets, name, field):
    return offsets[name][1] + {"flags": 8, "method": 10, "crc": 16, "csize": 20, "usize": 24}[field]


LOCAL_LIES = {
    "name": lambda o, d: [(local_field(o, CONFIG, "name") + 10, b"X")],
    "sizes": lambda o, d: [(local_field(o, WEIGHTS, "csize"), struct.pack("<2L", o[WEIGHTS][3].file_size - 8, o[WEIGHTS][3].file_size - 8))],
    "method": lambda o, d: [(local_field(o, CONFIG, "method"), struct.pack("<H", 8))],
    "crc": lambda o, d: [(local_field(o, WEIGHTS, "crc"), struct.pack("<L", o[WEIGHTS][3].CRC ^ 1))],
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("field", LOCAL_LIES)
def test_local_headers_that_disagree_with_the_directory_are_refused(original, tmp_path, entry, field):
    case = original
    path = case.path
    data = path.read_bytes()
    damaged = write(tmp_path, f"local_{field}.keras", patched(data, *LOCAL_LIES[field](member_offsets(data), data)))
    assert_refused(case, damaged, entry, match="local header disagrees")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_members_flagged_encrypted_are_refused(original, tmp_path, entry):
    case = original
    path = case.path
    data = path.read_bytes()
    offsets = member_offsets(data)
    flags = offsets[CONFIG][3].flag_bits | 1
    damaged = write(
        tmp_path,
        "encrypted.keras",
        patched(data, (local_field(offsets, CONFIG, "flags"), struct.pack("<H", flags)), (central_field(offsets, CONFIG, "flags"), struct.pack("<H", flags))),
    )
    assert_refused(case, damaged, entry, match="encrypted")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_duplicate_member_names_are_refused(original, tmp_path, entry):
    case = original
    path = case.path
    with zipfile.ZipFile(path) as archive:
        weights = archive.read(WEIGHTS)
    other = tmp_path / "other.weights.h5"
    with h5py.File(io.BytesIO(weights), "r") as source, h5py.File(other, "w") as copy:
        for key in source:
            source.copy(source[key], copy)
        copy["layers/dense/vars/0"][...] = 7.0
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = rebuilt(path, extra=[(WEIGHTS, other.read_bytes())])
    assert_refused(case, write(tmp_path, "twice.keras", data), entry, match="twice")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "assets/../../evil", "C:/evil", "assets//x", "a\\..\\b"])
def test_members_with_escaping_names_are_refused(ours, tmp_path, entry, name):
    case = ours
    path = case.path
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(buffer, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, old.read(info.filename))
        info = zipfile.ZipInfo("x")
        info.filename = name  # ZipInfo normalises some of these; write the raw name as an attacker would
        new.writestr(info, b"x")
    assert_refused(case, write(tmp_path, "escape.keras", buffer.getvalue()), entry, match="plain relative name")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_hidden_member_between_listed_ones_is_refused(original, tmp_path, entry):
    """A reader walking local headers would find the hidden config.json; one reading the directory would not."""
    case = original
    data = case.path.read_bytes()
    offsets = member_offsets(data)
    hidden = io.BytesIO()
    with zipfile.ZipFile(hidden, "w") as other:
        other.writestr(CONFIG, b'{"class_name": "Sequential", "config": {}}')
    blob = hidden.getvalue()[: hidden.getvalue().index(b"PK\x01\x02")]  # its local header and data only
    at = offsets[WEIGHTS][0]
    data = data[:at] + blob + data[at:]
    end = data.rindex(b"PK\x05\x06")
    directory = struct.unpack_from("<L", data, end + 16)[0] + len(blob)
    edits = [(end + 16, struct.pack("<L", directory))]
    for local, central, _, _ in offsets.values():
        if local >= at:
            edits.append((central + len(blob) + 42, struct.pack("<L", local + len(blob))))
    damaged = patched(data, *edits)
    assert zipfile.ZipFile(io.BytesIO(damaged)).testzip() is None  # Python's zipfile sees a sound archive
    assert_refused(case, write(tmp_path, "hidden.keras", damaged), entry, match="unlisted bytes")


def hdf5_bytes(tmp_path):
    path = tmp_path / "planted.weights.h5"
    small_model().save_weights(path)
    return path.read_bytes()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_zip_with_an_hdf5_superblock_at_512_is_refused(ours, tmp_path, entry):
    case = ours
    path = case.path
    planted = hdf5_bytes(tmp_path)
    name = "pad.bin"
    pad = b"\0" * (512 - 30 - len(name)) + planted  # pad.bin's data starts at 37: the superblock lands on 512
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(buffer, "w") as new:
        new.writestr(name, pad)
        for info in old.infolist():
            new.writestr(info.filename, old.read(info.filename))
    data = buffer.getvalue()
    with h5py.File(io.BytesIO(data), "r") as h5file:  # it truly is an HDF5 file as well
        assert "layers" in h5file
    assert_refused(case, write(tmp_path, "polyglot.keras", data), entry, match="both a zip archive and an HDF5 file")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_hdf5_file_with_a_zip_appended_is_refused(ours, tmp_path, entry):
    case = ours
    path = case.path
    data = hdf5_bytes(tmp_path) + path.read_bytes()
    assert zipfile.is_zipfile(io.BytesIO(data))  # Python's zipfile reads it as the archive
    assert_refused(case, write(tmp_path, "polyglot.keras", data), entry)


def test_weights_starting_at_an_hdf5_probe_offset_still_load(ours, tmp_path):
    """Keras's own writer can place model.weights.h5 at 1024 (or 2048, ...) by chance: that is no ambiguity, as the
    HDF5 view of the archive is then that member itself."""
    case = ours
    path = case.path
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    before = sum(30 + len(name) + len(members[name]) for name in (METADATA, CONFIG)) + 30 + len(WEIGHTS)
    probe = 512
    while probe < before:
        probe *= 2
    members[METADATA] = members[METADATA] + b" " * (probe - before)  # JSON whitespace moves the weights onto a probe
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as new:
        for name in (METADATA, CONFIG, WEIGHTS):
            new.writestr(name, members[name])
    data = buffer.getvalue()
    assert member_offsets(data)[WEIGHTS][2] == probe and data[probe : probe + 8] == b"\x89HDF\r\n\x1a\n"
    assert_loads_exactly(case, write(tmp_path, "probe.keras", data))


def test_our_writer_never_starts_a_member_at_an_hdf5_probe_offset():
    offsets = [offset for offset in range(0, 70000) if zip_writer._is_hdf5_probe(offset)]
    assert offsets == [0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
    for before in range(400, 1100):  # any member length before the weights
        fd = os.memfd_create("zip")
        try:
            writer = zip_writer.StoredZipWriter(fd)
            writer.add("a", b"x" * before)
            start = writer.begin(WEIGHTS, 8, align=64)
            assert start % 64 == 0 and not zip_writer._is_hdf5_probe(start)
        finally:
            os.close(fd)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_more_members_than_the_limit_are_refused(ours, tmp_path, entry, monkeypatch):
    case = ours
    path = case.path
    data = rebuilt(path, extra=[(f"assets/{index}.txt", b"x") for index in range(4)])
    monkeypatch.setattr(zip_archive, "MAX_MEMBERS", 5)
    assert_refused(case, write(tmp_path, "crowded.keras", data), entry, match="members")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_end_record_claiming_more_members_than_listed_is_refused(ours, tmp_path, entry):
    case = ours
    path = case.path
    data = path.read_bytes()
    end = data.rindex(b"PK\x05\x06")
    damaged = patched(data, (end + 8, struct.pack("<2H", 60000, 60000)))
    assert_refused(case, write(tmp_path, "count.keras", damaged), entry, match="members")


# ---------------------------------------------------------------- 6. bounded inflation
@pytest.fixture(scope="module")
def bomb(ours, tmp_path_factory):
    """`ours` with model.weights.h5 replaced by 64 MiB of zeros, deflated, declared as 5000 bytes."""
    data = rebuilt(ours.path, replace={WEIGHTS: bytes(64 * 2**20)}, compress={WEIGHTS: zipfile.ZIP_DEFLATED})
    offsets = member_offsets(data)
    small = struct.pack("<L", 5000)
    data = patched(data, (local_field(offsets, WEIGHTS, "usize"), small), (central_field(offsets, WEIGHTS, "usize"), small))
    return write(tmp_path_factory.mktemp("bomb"), "bomb.keras", data)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_member_that_inflates_past_its_declared_size_is_cut_there(ours, bomb, entry):
    case, bombed = ours, bomb
    tracemalloc.start()
    try:
        assert_refused(case, bombed, entry)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_member_declaring_a_huge_size_is_refused_unread(ours, tmp_path, entry):
    case = ours
    path = case.path
    data = rebuilt(path, compress={WEIGHTS: zipfile.ZIP_DEFLATED})
    offsets = member_offsets(data)
    huge = struct.pack("<L", 0xFFFF0000)
    damaged = patched(data, (local_field(offsets, WEIGHTS, "usize"), huge), (central_field(offsets, WEIGHTS, "usize"), huge))
    assert_refused(case, write(tmp_path, "huge.keras", damaged), entry, match="zip bomb")


# ---------------------------------------------------------------- 4. typed errors for damaged archives
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("keep", [0.5, 0.9, -10, -23])
def test_truncated_archives_are_refused(original, tmp_path, entry, keep):
    case = original
    path = case.path
    data = path.read_bytes()
    cut = int(len(data) * keep) if keep > 0 else len(data) + keep
    assert_refused(case, write(tmp_path, "cut.keras", data[:cut]), entry)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unknown_compression_method_is_refused(original, tmp_path, entry):
    case = original
    path = case.path
    data = path.read_bytes()
    offsets = member_offsets(data)
    method = struct.pack("<H", 99)
    damaged = patched(data, (local_field(offsets, WEIGHTS, "method"), method), (central_field(offsets, WEIGHTS, "method"), method))
    assert_refused(case, write(tmp_path, "method.keras", damaged), entry, match="compression method 99")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_garbage_after_a_zip_signature_is_refused(ours, tmp_path, entry):
    case = ours
    data = b"PK\x03\x04" + np.random.default_rng(1).bytes(3000)
    assert_refused(case, write(tmp_path, "garbage.keras", data), entry)


# ---------------------------------------------------------------- mutated files: refused or exact
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255), cut=st.booleans())
def test_a_mutated_archive_is_refused_or_loads_exactly(ours, tmp_path, position, xor, cut):
    data = ours.path.read_bytes()
    at = int(position * len(data))
    data = data[:at] if cut else patched(data, (at, bytes([data[at] ^ xor])))
    path = write(tmp_path, "mutated.keras", data)
    model = small_model()
    try:
        model.load_weights(path)
    except KeramicError as error:
        assert "mutated.keras" in str(error)
        return
    for a, b in zip(model.get_weights(), ours.expected, strict=True):
        np.testing.assert_array_equal(a, b)

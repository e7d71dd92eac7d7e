"""Hostile and broken weights files: each is refused with a keramic error that names the file and
the entry, before any variable changes; bfloat16 (an opaque HDF5 type) round-trips and interoperates."""

import os
import shutil
import zipfile

import h5py
import numpy as np
import pytest
import torch

import keramic
from keramic.errors import FileFormatError, KeramicError, WeightsMismatchError

TARGET = "layers/dense_1/vars"  # the last group read: an eager loader would have changed the rest


def model():
    return keramic.Sequential([keramic.Input((4,)), keramic.layers.Dense(3), keramic.layers.Dense(2)])


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.weights.h5"
    model().save_weights(path)
    return path


def weights(m):
    return [w.numpy().copy() for w in m.weights]


def assert_refused(path, error=KeramicError, match=None):
    """Loading `path` raises `error` naming the file (and `match`), and leaves the model as it was."""
    target = model()
    before = weights(target)
    with pytest.raises(error, match=match) as caught:
        target.load_weights(path)
    assert os.path.basename(path) in str(caught.value)
    for a, b in zip(before, weights(target)):
        np.testing.assert_array_equal(a, b)
    return caught.value


def hostile_copy(good, tmp_path, name, change):
    path = tmp_path / f"{name}.weights.h5"
    shutil.copy(good, path)
    with h5py.File(path, "a") as h5file:
        change(h5file, tmp_path)
    return path


def external_link(h5file, folder):
    with h5py.File(folder / "other.h5", "w") as other:
        other["data"] = np.ones(2, "float32")
    del h5file[TARGET]["1"]
    h5file[TARGET]["1"] = h5py.ExternalLink(str(folder / "other.h5"), "/data")


def soft_link(h5file, folder):
    h5file["stash"] = np.ones(2, "float32")
    del h5file[TARGET]["1"]
    h5file[TARGET]["1"] = h5py.SoftLink("/stash")


def virtual_dataset(h5file, folder):
    with h5py.File(folder / "source.h5", "w") as source:
        source["data"] = np.ones(2, "float32")
    layout = h5py.VirtualLayout(shape=(2,), dtype="float32")
    layout[:] = h5py.VirtualSource(str(folder / "source.h5"), "data", shape=(2,))
    del h5file[TARGET]["1"]
    h5file[TARGET].create_virtual_dataset("1", layout)


def external_storage(h5file, folder):
    (folder / "raw.bin").write_bytes(np.ones(2, "float32").tobytes())
    del h5file[TARGET]["1"]
    h5file[TARGET].create_dataset("1", shape=(2,), dtype="float32", external=[(str(folder / "raw.bin"), 0, 8)])


def group_for_dataset(h5file, folder):
    del h5file[TARGET]["1"]
    h5file[TARGET].create_group("1")


def linked_group(h5file, folder):
    h5file.copy(h5file[TARGET], "stash")
    del h5file[TARGET]
    h5file["layers/dense_1"]["vars"] = h5py.SoftLink("/stash")


def external_group(h5file, folder):
    with h5py.File(folder / "other.h5", "w") as other:
        h5file.copy(h5file[TARGET], other, "vars")
    del h5file["layers/dense_1"]
    h5file["layers/dense_1"] = h5py.ExternalLink(str(folder / "other.h5"), "/")


@pytest.mark.parametrize(
    "change, entry, what",
    [
        (external_link, f"/{TARGET}/1", "ExternalLink"),
        (soft_link, f"/{TARGET}/1", "SoftLink"),
        (virtual_dataset, f"/{TARGET}/1", "virtual"),
        (external_storage, f"/{TARGET}/1", "external"),
        (group_for_dataset, f"/{TARGET}/1", "expected a dataset, found a group"),
        (linked_group, f"/{TARGET}", "SoftLink"),
        (external_group, "/layers/dense_1", "ExternalLink"),
    ],
)
def test_links_and_foreign_storage_are_refused(good, tmp_path, change, entry, what):
    path = hostile_copy(good, tmp_path, change.__name__, change)
    error = assert_refused(path, match=f"entry '{entry}'")
    assert what in str(error)


def test_declared_shape_that_disagrees_with_the_model(good, tmp_path):
    def wrong_shape(h5file, folder):
        del h5file[TARGET]["1"]
        h5file[TARGET]["1"] = np.ones(5, "float32")

    path = hostile_copy(good, tmp_path, "shape", wrong_shape)
    error = assert_refused(path, WeightsMismatchError, match=f"{TARGET}/1")
    assert "file (5,), model (2,)" in str(error)


@pytest.mark.parametrize("data", [np.array([b"ab", b"cd"]), np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]), np.zeros(2, "V4")])
def test_non_numeric_dataset_is_refused_before_assigning(good, tmp_path, data):
    def replace(h5file, folder):
        del h5file[TARGET]["1"]
        h5file[TARGET]["1"] = data

    assert_refused(hostile_copy(good, tmp_path, "dtype", replace), match=f"entry '/{TARGET}/1'")


def test_non_hdf5_bytes_and_empty_files(tmp_path):
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"\x00\x01not hdf5 at all" * 20)
    assert_refused(junk, FileFormatError, match="unrecognised file format")
    empty = tmp_path / "empty.weights.h5"
    empty.write_bytes(b"")
    assert_refused(empty, FileFormatError)


@pytest.mark.parametrize("fraction", [0.0005, 0.01, 0.1, 0.5, 0.9, 0.999])
def test_truncated_hdf5_file(good, tmp_path, fraction):
    data = good.read_bytes()
    cut = tmp_path / "cut.weights.h5"
    cut.write_bytes(data[: max(8, int(len(data) * fraction))])
    assert_refused(cut, FileFormatError, match="truncated or damaged")


def test_hostile_weights_member_inside_a_keras_archive(tmp_path):
    m = model()
    m.save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as archive:
        (tmp_path / "member.h5").write_bytes(archive.read("model.weights.h5"))
        members = {name: archive.read(name) for name in archive.namelist()}
    with h5py.File(tmp_path / "member.h5", "a") as h5file:
        soft_link(h5file, tmp_path)
    members["model.weights.h5"] = (tmp_path / "member.h5").read_bytes()
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(KeramicError, match=rf"evil\.keras:model\.weights\.h5: entry '/{TARGET}/1': SoftLink"):
        keramic.models.load_model(tmp_path / "evil.keras")
    assert_refused(tmp_path / "evil.keras", match="SoftLink")


# ---------------------------------------------------------------- bfloat16
def bf16_model(module):
    return module.Sequential([module.Input((4,)), module.layers.Dense(3, dtype="bfloat16"), module.layers.Dense(2)])


def assert_bitwise_equal(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        a = a.detach().cpu() if isinstance(a, torch.Tensor) else a.value.detach().cpu()
        b = b.detach().cpu() if isinstance(b, torch.Tensor) else b.value.detach().cpu()
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_bfloat16_round_trips_as_keras_stores_it(tmp_path):
    m = bf16_model(keramic)
    with torch.no_grad():
        m.weights[0].copy_(torch.tensor([[1.0, -2.5, 3.140625]] * 4, dtype=torch.bfloat16))
    m.save_weights(tmp_path / "b.weights.h5")
    with h5py.File(tmp_path / "b.weights.h5", "r") as h5file:
        kernel = h5file["layers/dense/vars/0"]
        assert kernel.dtype == np.dtype("V2") and kernel.attrs["dtype"] == "bfloat16"
        assert h5file["layers/dense_1/vars/0"].dtype == np.float32
    other = bf16_model(keramic)
    other.load_weights(tmp_path / "b.weights.h5")
    assert_bitwise_equal(other.weights, m.weights)


def test_string_attributes_may_be_bytes_or_str(tmp_path):
    m = bf16_model(keramic)
    m.save_weights(tmp_path / "b.weights.h5")
    with h5py.File(tmp_path / "b.weights.h5", "a") as h5file:
        h5file["layers/dense/vars/0"].attrs.create("dtype", np.bytes_(b"bfloat16"))  # fixed-length ASCII
        h5file["layers/dense/vars"].attrs.create("name", np.bytes_(b"dense"))
        assert isinstance(h5file["layers/dense/vars/0"].attrs["dtype"], bytes)
    other = bf16_model(keramic)
    other.load_weights(tmp_path / "b.weights.h5")
    assert_bitwise_equal(other.weights, m.weights)


@pytest.mark.interop
def test_keras_bfloat16_weights_and_slots_load_here(keras, tmp_path):
    theirs = bf16_model(keras)
    theirs.compile(optimizer="adam", loss="mse")
    theirs.train_on_batch(np.ones((2, 4), "float32"), np.ones((2, 2), "float32"))
    theirs.save_weights(tmp_path / "k.weights.h5")
    ours = bf16_model(keramic)
    ours.compile(optimizer="adam", loss="mse")
    ours.optimizer.build(ours.trainable_variables)
    ours.load_weights(tmp_path / "k.weights.h5")
    assert_bitwise_equal(ours.weights, theirs.weights)
    assert_bitwise_equal(ours.optimizer.variables, theirs.optimizer.variables)


@pytest.mark.interop
def test_our_bfloat16_weights_load_in_keras(keras, tmp_path):
    ours = bf16_model(keramic)
    ours.save_weights(tmp_path / "o.weights.h5")
    theirs = bf16_model(keras)
    theirs.load_weights(tmp_path / "o.weights.h5")
    assert_bitwise_equal(ours.weights, theirs.weights)

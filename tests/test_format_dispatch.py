"""Format dispatch: saving picks the format from the path (and `zipped`), loading from the bytes
actually there; the directory form is written atomically and interoperates with Keras."""

import json
import os
import shutil
import zipfile

import h5py
import numpy as np
import pytest

import keramic
from keramic.errors import FileFormatError, KeramicError
from keramic.saving import api
from keramic.saving.formats import keras_v3, legacy_h5

X = np.linspace(-1, 1, 24, dtype="float32").reshape(4, 6)
Y = np.array([0, 1, 2, 1])


def trained(module):
    inputs = module.Input((6,), name="features")
    hidden = module.layers.Dense(5, activation="relu", name="hidden")(inputs)
    outputs = module.layers.Dense(3, activation="softmax", name="probs")(hidden)
    model = module.Model(inputs, outputs, name="classifier")
    model.compile(optimizer=module.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.train_on_batch(X, Y)
    return model


def assert_same_model(a, b):
    np.testing.assert_allclose(a.predict(X, verbose=0), b.predict(X, verbose=0), rtol=1e-6, atol=1e-7)
    for x, y in zip(a.optimizer.variables, b.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(x.numpy()), np.asarray(y.numpy()))


def head(path, count=8):
    with open(path, "rb") as handle:
        return handle.read(count)


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


# ---------------------------------------------------------------- saving by name
def test_keras_extension_writes_a_zip_and_zipped_false_a_directory(tmp_path):
    model = trained(keramic)
    model.save(tmp_path / "m.keras")
    assert head(tmp_path / "m.keras", 4) == api.ZIP_MAGIC
    model.save(tmp_path / "m_dir", zipped=False)
    assert sorted(os.listdir(tmp_path / "m_dir")) == ["config.json", "metadata.json", "model.weights.h5"]
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "m_dir"]  # no temporaries left behind
    metadata = json.loads((tmp_path / "m_dir" / "metadata.json").read_text())
    assert metadata["keras_version"] == keras_v3.KERAS_FORMAT_VERSION
    assert_same_model(model, keramic.models.load_model(tmp_path / "m.keras"))
    assert_same_model(model, keramic.models.load_model(tmp_path / "m_dir"))


@pytest.mark.parametrize(
    "name, zipped, message",
    [
        ("m.bin", None, "Invalid filepath extension"),
        ("m", True, "Invalid filepath extension"),
        ("m.keras", False, "must not end in `.keras`"),
    ],
)
def test_unsupported_save_targets(tmp_path, name, zipped, message):
    with pytest.raises(FileFormatError, match=message) as caught:
        trained(keramic).save(tmp_path / name, zipped=zipped)
    assert name in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_directory_options_compile_and_include_optimizer(tmp_path):
    model = trained(keramic)
    api.save_model(model, tmp_path / "no_opt", zipped=False, include_optimizer=False)
    with h5py.File(tmp_path / "no_opt" / "model.weights.h5", "r") as h5file:
        assert "optimizer" not in h5file
    assert not keramic.models.load_model(tmp_path / "no_opt", compile=False).compiled


# ---------------------------------------------------------------- loading by bytes
def test_names_do_not_decide_the_format(tmp_path):
    model = trained(keramic)
    model.save(tmp_path / "m.keras")
    shutil.copy(tmp_path / "m.keras", tmp_path / "archive.h5")
    assert_same_model(model, keramic.models.load_model(tmp_path / "archive.h5"))

    model.save_weights(tmp_path / "w.weights.h5")
    shutil.copy(tmp_path / "w.weights.h5", tmp_path / "weights.keras")
    with pytest.raises(FileFormatError, match=r"weights\.keras: an HDF5 file without a model architecture.*load_weights"):
        keramic.models.load_model(tmp_path / "weights.keras")
    other = trained(keramic)
    other.load_weights(tmp_path / "weights.keras")  # it is a weights file, and loads as one
    assert_same_model(model, other)



def test_legacy_hdf5_is_chosen_by_extension_on_save_and_by_content_on_load(tmp_path):
    model = trained(keramic)
    model.save(tmp_path / "m.h5")
    assert head(tmp_path / "m.h5") == api.HDF5_MAGIC
    with h5py.File(tmp_path / "m.h5", "r") as h5file:
        assert "model_config" in h5file.attrs
    shutil.copy(tmp_path / "m.h5", tmp_path / "legacy.keras")
    assert_same_model(model, keramic.models.load_model(tmp_path / "legacy.keras"))

    legacy_h5.save_weights(model, tmp_path / "legacy_weights.bin")
    for by_name in (False, True):
        other = trained(keramic)
        api.load_weights(other, tmp_path / "legacy_weights.bin", by_name=by_name)
        np.testing.assert_allclose(other.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6)

    model.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(FileFormatError, match=r"w\.weights\.h5: `by_name` only supports loading legacy"):
        api.load_weights(trained(keramic), tmp_path / "w.weights.h5", by_name=True)


@pytest.mark.parametrize(
    "content, message",
    [
        (bytes(range(1, 200)), "unrecognised file format"),
        (b"", "unrecognised file format"),
        (b"\x89HDF\r\n\x1a\n" + b"\x00" * 40, "truncated or damaged"),
        (b"PK\x03\x04 broken zip", "not a valid zip archive"),
    ],
)
def test_unrecognised_or_damaged_files(tmp_path, content, message):
    path = tmp_path / "mystery.keras"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message) as caught:
        keramic.models.load_model(path)
    assert "mystery.keras" in str(caught.value)


def test_json_is_not_a_model_file(tmp_path):
    model = trained(keramic)
    (tmp_path / "config.json").write_text(model.to_json())
    with pytest.raises(FileFormatError, match="model_from_json") as caught:
        keramic.models.load_model(tmp_path / "config.json")
    assert "config.json" in str(caught.value)
    assert isinstance(keramic.models.model_from_json((tmp_path / "config.json").read_text()), keramic.Model)


def test_missing_paths_and_directories_without_a_config(tmp_path):
    with pytest.raises(FileNotFoundError):
        keramic.models.load_model(tmp_path / "nothing.keras")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileFormatError, match=r"empty_dir: a directory without 'config.json'"):
        keramic.models.load_model(tmp_path / "empty_dir")
    with pytest.raises(FileFormatError, match="empty_dir"):
        trained(keramic).load_weights(tmp_path / "empty_dir")


def test_load_weights_dispatch_by_content(tmp_path):
    model = trained(keramic)
    model.save_weights(tmp_path / "w.weights.h5")
    shutil.copy(tmp_path / "w.weights.h5", tmp_path / "weights.bin")
    api.save_weights(model, tmp_path / "s.weights.json", max_shard_size=1.0)
    shutil.copy(tmp_path / "s.weights.json", tmp_path / "index.txt")
    model.save(tmp_path / "m.keras")
    for source in ("weights.bin", "index.txt", "m.keras"):
        other = trained(keramic)
        other.load_weights(tmp_path / source)
        assert_same_model(model, other)


@pytest.mark.parametrize(
    "name, damaged, missing",
    [
        ("config.json", "not valid JSON", "a directory without 'config.json'"),
        ("model.weights.h5", "not an HDF5 file", "has no 'model.weights.h5'"),
    ],
)
def test_damaged_or_missing_directory_entries_are_named(tmp_path, name, damaged, missing):
    trained(keramic).save(tmp_path / "m", zipped=False)
    (tmp_path / "m" / name).write_bytes(b"\x00garbage")
    with pytest.raises(FileFormatError, match=damaged) as caught:
        keramic.models.load_model(tmp_path / "m")
    assert os.path.join("m", name) in str(caught.value)
    (tmp_path / "m" / name).unlink()
    with pytest.raises(FileFormatError, match=missing) as caught:
        keramic.models.load_model(tmp_path / "m")
    assert str(tmp_path / "m") in str(caught.value)


# ---------------------------------------------------------------- directory commits
def test_directory_save_replaces_a_previous_model_atomically(tmp_path, monkeypatch):
    model = trained(keramic)
    model.save(tmp_path / "m", zipped=False)
    before = snapshot(tmp_path)
    model.train_on_batch(X, Y)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(keras_v3, "write_weights_file", crash)
        with pytest.raises(OSError, match="disk full"):
            model.save(tmp_path / "m", zipped=False)
    assert snapshot(tmp_path) == before

    model.save(tmp_path / "m", zipped=False)
    assert sorted(os.listdir(tmp_path)) == ["m"]
    assert_same_model(model, keramic.models.load_model(tmp_path / "m"))


def test_directory_save_never_replaces_foreign_content(tmp_path):
    model = trained(keramic)
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(KeramicError, match=r"home: exists and holds entries that are not part of a saved model \(thesis\.tex\)"):
        model.save(home, zipped=False)
    assert os.listdir(home) == ["thesis.tex"]
    (tmp_path / "file").write_text("a file")
    with pytest.raises(KeramicError, match="not a plain directory"):
        model.save(tmp_path / "file", zipped=False)
    with pytest.raises(FileExistsError):
        model.save(home, zipped=False, overwrite=False)
    (tmp_path / "empty").mkdir()
    model.save(tmp_path / "empty", zipped=False)
    assert_same_model(model, keramic.models.load_model(tmp_path / "empty"))


# ---------------------------------------------------------------- real Keras
@pytest.mark.interop
def test_keras_directory_loads_here_and_ours_loads_in_keras(keras, tmp_path):
    theirs = trained(keras)
    theirs.save(tmp_path / "keras_dir", zipped=False)
    assert {"config.json", "metadata.json", "model.weights.h5"} <= set(os.listdir(tmp_path / "keras_dir"))
    ours = keramic.models.load_model(tmp_path / "keras_dir")
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0), rtol=1e-6, atol=1e-7)
    assert int(ours.optimizer.iterations.numpy()) == 1

    mine = trained(keramic)
    mine.save(tmp_path / "our_dir", zipped=False)
    loaded = keras.saving.load_model(tmp_path / "our_dir")
    np.testing.assert_allclose(loaded.predict(X, verbose=0), mine.predict(X, verbose=0), rtol=1e-6, atol=1e-7)
    assert int(loaded.optimizer.iterations.numpy()) == 1


@pytest.mark.interop
def test_keras_legacy_hdf5_with_a_keras_name_loads(keras, tmp_path):
    theirs = trained(keras)
    theirs.save(tmp_path / "k.h5")
    os.rename(tmp_path / "k.h5", tmp_path / "misnamed.keras")
    ours = keramic.models.load_model(tmp_path / "misnamed.keras")
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0), rtol=1e-6, atol=1e-7)


@pytest.mark.interop
def test_keras_archive_with_any_name_loads(keras, tmp_path):
    theirs = trained(keras)
    theirs.save(tmp_path / "k.keras")
    os.rename(tmp_path / "k.keras", tmp_path / "download.bin")
    with zipfile.ZipFile(tmp_path / "download.bin") as archive:
        assert "config.json" in archive.namelist()
    ours = keramic.models.load_model(tmp_path / "download.bin")
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0), rtol=1e-6, atol=1e-7)

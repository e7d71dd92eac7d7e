"""Keras 3's unzipped model form (`model.save(dir, zipped=False)`): a directory holding
config.json, metadata.json and model.weights.h5 (keras-v3-format.md section 1).

The directory is written whole under a temporary name beside the target and renamed into place,
so readers see the old model or the new one, never a mix.
"""

import datetime
import json
import os
import shutil
import tempfile

import h5py

import keramic
from keramic.errors import FileFormatError, KeramicError
from keramic.saving import registry
from keramic.saving.formats import keras_v3
from keramic.saving.serialize import deserialize_keras_object, safe_mode_scope

# What a saved model directory may hold; anything else in a target means it is someone's directory.
MODEL_ENTRIES = {keras_v3.CONFIG, keras_v3.METADATA, keras_v3.WEIGHTS, "assets"}
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CONFIG_SIZE_LIMIT = 64 * 1024**2


def save(model, path, include_optimizer=True):
    """Write `model` as a directory at `path`, replacing a previous model directory in one rename.

    >>> save(model, "exported/my_model")
    """
    keras_v3.check_saveable(model)
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        _check_replaceable(path)
    config = keras_v3.model_config(model)
    if not include_optimizer and "compile_config" in config:
        config["compile_config"] = {}
    metadata = {
        "keras_version": keras_v3.KERAS_FORMAT_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "keramic_version": keramic.__version__,
    }
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        _write_json(os.path.join(temporary, keras_v3.METADATA), metadata)
        _write_json(os.path.join(temporary, keras_v3.CONFIG), config)
        weights = os.path.join(temporary, keras_v3.WEIGHTS)
        keras_v3.write_weights_file(model, weights, include_optimizer)
        _fsync(weights)
        _fsync(temporary)
        _move_into_place(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _check_replaceable(path):
    """Only a model directory may be replaced: saving onto any other directory would delete it."""
    if not os.path.isdir(path) or os.path.islink(path):
        raise KeramicError(f"{path}: exists and is not a plain directory (a file or a link); cannot save a model directory there.")
    foreign = sorted(set(os.listdir(path)) - MODEL_ENTRIES)
    if foreign:
        raise KeramicError(
            f"{path}: exists and holds entries that are not part of a saved model ({', '.join(foreign[:5])}); "
            "refusing to replace it. Choose a new path or remove the directory first."
        )


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(temporary, path):
    """Rename the finished directory onto `path`; an old one is first moved aside, then deleted."""
    parent = os.path.dirname(path)
    if not os.path.lexists(path):
        os.rename(temporary, path)
        _fsync(parent)
        return
    aside = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
    os.replace(path, aside)  # onto the empty directory just made: the name is ours, nothing is lost
    try:
        os.rename(temporary, path)
    except BaseException:
        os.replace(aside, path)
        raise
    _fsync(parent)
    shutil.rmtree(aside, ignore_errors=True)


def load(path, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model from a directory holding config.json and model.weights.h5."""
    path = os.fspath(path)
    config_path = os.path.join(path, keras_v3.CONFIG)
    if not os.path.isfile(config_path):
        raise FileFormatError(f"{path}: a directory without '{keras_v3.CONFIG}' is not a saved model.")
    config = _read_config(config_path)
    if not compile and isinstance(config, dict):
        config = {key: value for key, value in config.items() if key != "compile_config"}
    try:
        with safe_mode_scope(safe_mode), registry.custom_object_scope(custom_objects):
            model = deserialize_keras_object(config, ("keras", "keras.models"), custom_objects, safe_mode)
    except KeramicError as error:
        raise type(error)(f"{config_path}: {error}") from None
    weights_path = os.path.join(path, keras_v3.WEIGHTS)
    with _open_weights(path, weights_path) as h5file:
        keras_v3.load_weights_from_h5(model, h5file, weights_path, skip_mismatch=False)
    return model


def _read_config(config_path):
    size = os.path.getsize(config_path)
    if size > CONFIG_SIZE_LIMIT:
        raise FileFormatError(f"{config_path}: {size} bytes is over the {CONFIG_SIZE_LIMIT}-byte limit for a model config.")
    try:
        with open(config_path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise FileFormatError(f"{config_path}: not valid JSON ({error}).") from None


def _open_weights(path, weights_path):
    if not os.path.isfile(weights_path):
        raise FileFormatError(f"{path}: the model directory has no '{keras_v3.WEIGHTS}'.")
    with open(weights_path, "rb") as handle:
        head = handle.read(len(HDF5_MAGIC))
    if head != HDF5_MAGIC:
        raise FileFormatError(f"{weights_path}: not an HDF5 file (starts with {head!r}).")
    try:
        return h5py.File(weights_path, "r")
    except OSError as error:
        raise FileFormatError(f"{weights_path}: not a readable HDF5 file, it may be truncated or damaged ({error}).") from None

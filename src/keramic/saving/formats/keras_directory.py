"""Keras 3's unzipped model form (`model.save(dir, zipped=False)`): a directory holding
config.json, metadata.json and model.weights.h5 (keras-v3-format.md section 1).

The directory is written whole under a temporary name beside the target and renamed into place,
so readers see the old model or the new one, never a mix.
"""

import json
import os
import shutil
import tempfile

from keramic.errors import FileFormatError, KeramicError
from keramic.saving.formats import keras_v3
from keramic.saving.stores import h5_weights

# What a saved model directory may hold; anything else in a target means it is someone's directory.
MODEL_ENTRIES = {keras_v3.CONFIG, keras_v3.METADATA, keras_v3.WEIGHTS, "assets"}
CONFIG_SIZE_LIMIT = 64 * 1024**2


def save(model, path, include_optimizer=True):
    """Write `model` as a directory at `path`, replacing a previous model directory in one rename.

    >>> save(model, "exported/my_model")
    """
    keras_v3.check_saveable(model)
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        check_replaceable(path, MODEL_ENTRIES, "save a model directory", "a saved model")
    config = keras_v3.model_config(model, include_optimizer)
    metadata = keras_v3.saving_metadata()
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        _write_json(os.path.join(temporary, keras_v3.METADATA), metadata)
        _write_json(os.path.join(temporary, keras_v3.CONFIG), config)
        weights = os.path.join(temporary, keras_v3.WEIGHTS)
        keras_v3.write_weights_file(model, weights, include_optimizer)
        fsync(weights)
        fsync(temporary)
        move_into_place(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def check_replaceable(path, entries, action, kind):
    """Only a directory holding nothing but `entries` may be replaced: writing onto any other would delete it."""
    if not os.path.isdir(path) or os.path.islink(path):
        raise KeramicError(f"{path}: exists and is not a plain directory (a file or a link); cannot {action} there.")
    foreign = sorted(set(os.listdir(path)) - entries)
    if foreign:
        raise KeramicError(
            f"{path}: exists and holds entries that are not part of {kind} ({', '.join(foreign[:5])}); "
            "refusing to replace it. Choose a new path or remove the directory first."
        )


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
        handle.flush()
        os.fsync(handle.fileno())


def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(temporary, path):
    """Rename the finished directory onto `path`; an old one is first moved aside, then deleted."""
    parent = os.path.dirname(path)
    if not os.path.lexists(path):
        os.rename(temporary, path)
        fsync(parent)
        return
    aside = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
    os.replace(path, aside)  # onto the empty directory just made: the name is ours, nothing is lost
    try:
        os.rename(temporary, path)
    except BaseException:
        os.replace(aside, path)
        raise
    fsync(parent)
    shutil.rmtree(aside, ignore_errors=True)


def load(path, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model from a directory holding config.json and model.weights.h5."""
    path = os.fspath(path)
    config_path = os.path.join(path, keras_v3.CONFIG)
    if not os.path.isfile(config_path):
        raise FileFormatError(f"{path}: a directory without '{keras_v3.CONFIG}' is not a saved model.")
    model = keras_v3.model_from_config(_read_config(config_path), config_path, custom_objects, compile, safe_mode)
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
    return h5_weights.open_hdf5(weights_path, f"{weights_path}:")

"""Keras 3's unzipped model form (`model.save(dir, zipped=False)`): a directory holding
config.json, metadata.json and model.weights.h5 (keras-v3-format.md section 1).

The directory is written whole under a temporary name beside the target and renamed into place
(`atomic.directory_atomically`), so readers see the old model or the new one, never a mix.
"""

import os

from keramic.errors import FileFormatError, KeramicError
from keramic.saving import assets, inspect_hdf5, inspect_summary
from keramic.saving.formats import keras_v3, table
from keramic.saving.stores import atomic, h5_weights

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
    with assets.saved_assets(model) as asset_files, atomic.directory_atomically(path) as temporary:
        atomic.write_json(os.path.join(temporary, keras_v3.METADATA), metadata)
        atomic.write_json(os.path.join(temporary, keras_v3.CONFIG), config)
        weights = os.path.join(temporary, keras_v3.WEIGHTS)
        keras_v3.write_weights_file(model, weights, include_optimizer)
        atomic.fsync_file(weights)
        assets.copy_into(asset_files, temporary)


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


def load(path, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model from a directory holding config.json and model.weights.h5; every entry must
    be a regular file inside the directory (no symlink out, no FIFO or device)."""
    path = os.fspath(path)
    atomic.recover_directory(path)
    return atomic.read_while_replaced(path, lambda: _load_once(path, custom_objects, compile, safe_mode))


def _load_once(path, custom_objects, compile, safe_mode):
    if not os.path.lexists(os.path.join(path, keras_v3.CONFIG)):
        raise FileFormatError(f"{path}: a directory without '{keras_v3.CONFIG}' is not a saved model.")
    config_path = atomic.contained_file(path, keras_v3.CONFIG, path, what="entry")
    config = atomic.read_json_file(config_path, CONFIG_SIZE_LIMIT, what="a model config")
    model = keras_v3.model_from_config(config, config_path, custom_objects, compile, safe_mode)
    weights_path = os.path.join(path, keras_v3.WEIGHTS)
    with _open_weights(path, weights_path) as h5file:
        keras_v3.load_weights_from_h5(model, h5file, weights_path, skip_mismatch=False)
    assets.load_from_directory(model, checked_assets(path))
    return model


def checked_assets(path):
    """The directory's `assets` folder once every entry in it is a regular file or folder inside it
    (a hook must not be handed a symlink out); None when there is none."""
    root = os.path.join(path, assets.DIRECTORY)
    if not os.path.lexists(root):
        return None
    if os.path.islink(root) or not os.path.isdir(root):
        raise FileFormatError(f"{path}: entry '{assets.DIRECTORY}' is not a plain folder (a link or a file); refusing to read it.")
    atomic.check_tree(root, path)
    return root


def _open_weights(path, weights_path):
    if not os.path.lexists(weights_path):
        raise FileFormatError(f"{path}: the model directory has no '{keras_v3.WEIGHTS}'.")
    atomic.contained_file(path, keras_v3.WEIGHTS, path, what="entry")
    return h5_weights.open_hdf5(weights_path, f"{weights_path}:")


# ---------------------------------------------------------------- the table row
DESCRIPTION = "Keras 3 whole model in directory form (config.json, metadata.json, model.weights.h5)"


def inspect_model_directory(path, name, description):
    """Config, metadata and weights layout of a directory holding the `.keras` entries as files."""
    config_path = os.path.join(path, keras_v3.CONFIG)
    if not os.path.lexists(config_path):
        raise FileFormatError(
            f"{path}: a directory without '{keras_v3.CONFIG}' (nor any other format's index); `keramic inspect` reads "
            + "; ".join(row.description for row in table.formats())
            + "."
        )
    atomic.contained_file(path, keras_v3.CONFIG, path, what="entry")
    config = atomic.read_json_file(config_path, where=f"{path}: entry '{keras_v3.CONFIG}'")
    metadata_path = os.path.join(path, keras_v3.METADATA)
    metadata = {}
    if os.path.lexists(metadata_path):
        atomic.contained_file(path, keras_v3.METADATA, path, what="entry")
        metadata = atomic.read_json_file(metadata_path, where=f"{path}: entry '{keras_v3.METADATA}'")
    if not isinstance(metadata, dict):
        raise FileFormatError(f"{path}: entry '{keras_v3.METADATA}': expected a JSON object, found {type(metadata).__name__}.")
    weights = None
    weights_path = os.path.join(path, keras_v3.WEIGHTS)
    if os.path.lexists(weights_path):
        atomic.contained_file(path, keras_v3.WEIGHTS, path, what="entry")
        with inspect_hdf5.open_hdf5(weights_path) as h5file:
            weights = inspect_hdf5.weights_summary(h5file, weights_path)
    return inspect_summary.summarize(path, name, description, config, metadata, weights, entry=keras_v3.CONFIG)


KERAS_DIRECTORY = table.register(
    table.FileFormat(
        name="keras_directory",
        title="Keras 3 model directory",
        description=DESCRIPTION,
        recognise=os.path.isdir,
        holds_model=True,
        save=save,
        load=load,
        inspect=lambda path: inspect_model_directory(path, "keras_directory", DESCRIPTION),
        hint="a directory is not a weights file; pass its model.weights.h5 or load_model() it.",
        order=90,
    )
)

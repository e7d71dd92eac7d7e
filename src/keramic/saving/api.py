"""save_model / load_model / save_weights / load_weights: pick the format by extension on save,
and by the file's own bytes on load (never by trusting the name alone)."""

import json
import os

import h5py

from keramic.errors import FileFormatError, NotBuiltError
from keramic.saving import registry
from keramic.saving.formats import keras_v3
from keramic.saving.serialize import deserialize_keras_object, safe_mode_scope
from keramic.saving.stores.atomic import write_atomically

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def sniff(path):
    """'zip', 'hdf5', 'directory' or 'json' from what is actually at `path`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "directory"
    if not os.path.exists(path):
        raise FileNotFoundError(f"No file or directory found at {path}")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head == HDF5_MAGIC:
        return "hdf5"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    raise FileFormatError(
        f"{path}: unrecognised file format (starts with {head!r}); expected a .keras zip archive, "
        "an HDF5 file or a keramic directory."
    )


def save_model(model, filepath, overwrite=True, zipped=None, include_optimizer=True, **kwargs):
    """Save the whole model (architecture, weights, compile and optimizer state) to `filepath`.

    `.keras` -> Keras 3's zip archive.
    """
    if kwargs:
        raise ValueError(f"Unknown arguments to save_model: {sorted(kwargs)}")
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    if filepath.endswith(".keras"):
        return keras_v3.save(model, filepath, include_optimizer=include_optimizer)
    if filepath.endswith((".h5", ".hdf5")):
        raise NotImplementedError(f"{filepath}: saving the legacy HDF5 (.h5) format is not available yet; use a .keras path.")
    raise ValueError(f"Invalid filepath extension for saving: {filepath}. Use a `.keras` path (Keras 3's format).")


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a model saved by keramic or Keras (`.keras`), recognised by its contents."""
    filepath = os.fspath(filepath)
    kind = sniff(filepath)
    if kind == "zip":
        return keras_v3.load(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    if kind == "hdf5":
        raise NotImplementedError(f"{filepath}: loading legacy HDF5 (.h5) models is not available yet.")
    raise FileFormatError(f"{filepath}: a {kind} is not a saved model; expected a .keras archive.")


def save_weights(model, filepath, overwrite=True):
    """Save weights (and optimizer state when compiled) to `*.weights.h5`, Keras 3's layout."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={filepath}")
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    if not model.built:
        raise NotBuiltError(f"Model '{model.name}' has not been built yet; call it on data or build() it before saving weights.")
    with write_atomically(filepath) as temporary:
        keras_v3.write_weights_file(model, temporary)


def load_weights(model, filepath, skip_mismatch=False):
    """Load weights from `*.weights.h5` or a `.keras` archive into a built model (strict by default)."""
    filepath = os.fspath(filepath)
    kind = sniff(filepath)
    if kind == "zip":
        with keras_v3.open_archive(filepath) as archive:
            if keras_v3.WEIGHTS not in archive.namelist():
                raise FileFormatError(f"{filepath}: the archive has no '{keras_v3.WEIGHTS}' entry.")
            keras_v3.load_weights_from_member(model, filepath, archive, keras_v3.WEIGHTS, skip_mismatch)
        return
    if kind == "hdf5":
        with h5py.File(filepath, "r") as h5file:
            if "model_weights" in h5file or "layer_names" in h5file.attrs:
                raise NotImplementedError(f"{filepath}: legacy HDF5 weights are not supported yet.")
            keras_v3.load_weights_from_h5(model, h5file, filepath, skip_mismatch)
        return
    raise FileFormatError(f"{filepath}: a {kind} is not a weights file.")


def model_from_json(json_string, custom_objects=None, safe_mode=True):
    """Rebuild a model (new weights) from `model.to_json()` output."""
    try:
        config = json.loads(json_string)
    except ValueError as error:
        raise FileFormatError(f"model_from_json: not valid JSON ({error}).") from None
    with safe_mode_scope(safe_mode), registry.custom_object_scope(custom_objects):
        return deserialize_keras_object(config, ("keras", "keras.models"), custom_objects, safe_mode)

"""save_model / load_model / save_weights / load_weights: pick the format by extension on save,
and by the file's own bytes on load (never by trusting the name alone)."""

import json
import os

from keramic.errors import FileFormatError, NotBuiltError
from keramic.serialization import registry
from keramic.saving.formats import checkpoint, keras_directory, keras_v3, legacy_h5, safetensors_weights, sharded_weights
from keramic.serialization.serialize import deserialize_keras_object, safe_mode_scope
from keramic.saving.stores import h5_weights
from keramic.saving.stores.atomic import write_atomically
from keramic.saving.stores.h5_layout import SIGNATURE as HDF5_MAGIC

ZIP_MAGIC = b"PK\x03\x04"


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
        "an HDF5 file, a JSON file or a model directory."
    )


def save_model(model, filepath, overwrite=True, zipped=None, include_optimizer=True, **kwargs):
    """Save the whole model (architecture, weights, compile and optimizer state) to `filepath`.

    `.keras` -> Keras 3's zip archive; `zipped=False` -> the same three entries in a directory;
    `.h5` / `.hdf5` -> the legacy single-file HDF5 format.

    >>> save_model(model, "model.keras")
    >>> save_model(model, "model_dir", zipped=False)
    """
    if kwargs:
        raise ValueError(f"Unknown arguments to save_model: {sorted(kwargs)}")
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    if zipped is False:
        if filepath.endswith(".keras"):
            raise FileFormatError(f"{filepath}: with zipped=False the path names a directory and must not end in `.keras`.")
        return keras_directory.save(model, filepath, include_optimizer=include_optimizer)
    if filepath.endswith(".keras"):
        return keras_v3.save(model, filepath, include_optimizer=include_optimizer)
    if filepath.endswith((".h5", ".hdf5")):
        return legacy_h5.save(model, filepath, include_optimizer=include_optimizer)
    raise FileFormatError(
        f"Invalid filepath extension for saving: {filepath}. Use a `.keras` path (Keras 3's format), "
        "`.h5` (legacy HDF5), or `zipped=False` to write a directory."
    )


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a model saved by keramic or Keras (`.keras` archive, its directory form, legacy `.h5`).

    The format comes from the file's bytes, whatever its name.

    >>> model = load_model("model.keras")
    """
    filepath = os.fspath(filepath)
    if safetensors_weights.recognise(filepath) is not None:
        raise FileFormatError(
            f"{filepath}: a safetensors weights file holds no model architecture: build the model in code and "
            "call `model.load_weights(...)` on it."
        )
    kind = sniff(filepath)
    if kind == "zip":
        return keras_v3.load(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    if kind == "directory":
        from keramic.export import artifact

        if artifact.is_artifact(filepath):
            return artifact.load_artifact(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
        return keras_directory.load(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    if kind == "hdf5":
        with h5_weights.open_hdf5(filepath, f"{filepath}:") as h5file:
            whole_model = legacy_h5.is_legacy_model_file(h5file)
        if whole_model:
            return legacy_h5.load(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
        raise FileFormatError(
            f"{filepath}: an HDF5 file without a model architecture (no 'model_config' attribute), e.g. a "
            "weights file: build the model in code and call `model.load_weights(...)` on it."
        )
    raise FileFormatError(
        f"{filepath}: is a JSON file, not a saved model. For an architecture (`model.to_json()`, config.json) use "
        "`keramic.models.model_from_json(text)`; for a sharded weights index (`*.weights.json`) build the model "
        "and call `model.load_weights(...)`."
    )


def save_weights(model, filepath, overwrite=True, max_shard_size=None, format=None):
    """Save weights (and optimizer state when compiled) in Keras 3's layout.

    `*.weights.h5` -> one file; with `max_shard_size` (GiB) -> `*.weights.json` plus its shards;
    any other `.h5` -> the legacy tf.keras weights layout (which Keras 3 cannot write);
    `*.safetensors` -> safetensors, with `max_shard_size` as `*.safetensors.index.json` plus shards.

    >>> save_weights(model, "model.weights.h5")
    >>> save_weights(model, "big/model.weights.json", max_shard_size=2.0)
    >>> save_weights(model, "model.safetensors")
    >>> save_weights(model, "ckpt", format="checkpoint")  # object-keyed, deferred restoration

    `format="checkpoint"` writes keramic's checkpoint directory (docs/checkpoint.md); it also works
    for a model that was never called.
    """
    filepath = os.fspath(filepath)
    if format == "checkpoint":
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(f"{filepath} exists and overwrite=False.")
        options = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
        return checkpoint.save_checkpoint(model, filepath, **options)
    if format is not None:
        raise ValueError(f"Unknown weights format {format!r}; use None (chosen by extension) or 'checkpoint'.")
    safetensors = safetensors_weights.is_safetensors_path(filepath)
    legacy = max_shard_size is None and filepath.endswith((".h5", ".hdf5")) and not filepath.endswith(".weights.h5")
    if safetensors:
        filepath = safetensors_weights.target_path(filepath, max_shard_size)
    elif max_shard_size is not None:
        filepath = sharded_weights.index_path(filepath)
    elif not filepath.endswith(".weights.h5") and not legacy:
        raise FileFormatError(
            f"The filename must end in `.weights.h5` (or `.h5` for the legacy layout, `.safetensors` for safetensors). "
            f"Received: filepath={filepath}"
        )
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    if not model.built:
        raise NotBuiltError(f"Model '{model.name}' has not been built yet; call it on data or build() it before saving weights.")
    if safetensors:
        return safetensors_weights.save(model, filepath, max_shard_size)
    if max_shard_size is not None:
        return sharded_weights.save(model, filepath, max_shard_size)
    if legacy:
        return legacy_h5.save_weights(model, filepath)
    with write_atomically(filepath) as temporary:
        keras_v3.write_weights_file(model, temporary)


def load_weights(model, filepath, skip_mismatch=False, by_name=False, verify=True):
    """Load weights into a built model from `*.weights.h5`, a sharded `*.weights.json` index, a
    `.keras` archive, a legacy `.h5` file or safetensors (recognised by their bytes; a sharded
    `*.safetensors.index.json` by its name); strict by default, nothing assigned on a mismatch.
    `by_name` matches layers by name, for legacy `.h5` files only (as Keras).

    >>> load_weights(model, "model.weights.h5")

    A checkpoint directory restores even into a model that is not built yet (values wait for their
    variables) and returns a status (`assert_consumed()`, ...); `verify` checks its file hashes.
    """
    filepath = os.fspath(filepath)
    if checkpoint.is_checkpoint(filepath):
        if by_name:
            raise FileFormatError(f"{filepath}: `by_name` only supports loading legacy '.h5' or '.hdf5' files.")
        return checkpoint.load_checkpoint(model, filepath, verify=verify)
    safetensors = safetensors_weights.recognise(filepath)
    if safetensors is not None:
        if by_name:
            raise FileFormatError(f"{filepath}: `by_name` only supports loading legacy '.h5' or '.hdf5' files.")
        return safetensors_weights.load(model, safetensors, skip_mismatch)
    kind = sniff(filepath)
    if kind == "hdf5":
        with h5_weights.open_hdf5(filepath, f"{filepath}:") as h5file:
            legacy = legacy_h5.is_legacy_weights_file(h5file)
            if not legacy and not by_name:
                return keras_v3.load_weights_from_h5(model, h5file, filepath, skip_mismatch)
        if legacy:
            return legacy_h5.load_weights(model, filepath, by_name=by_name, skip_mismatch=skip_mismatch)
    if by_name:
        raise FileFormatError(f"{filepath}: `by_name` only supports loading legacy '.h5' or '.hdf5' files.")
    if kind == "zip":
        with keras_v3.open_archive(filepath) as archive:
            if keras_v3.WEIGHTS not in archive.namelist():
                raise FileFormatError(f"{filepath}: the archive has no '{keras_v3.WEIGHTS}' entry.")
            keras_v3.load_weights_from_member(model, filepath, archive, keras_v3.WEIGHTS, skip_mismatch)
        return
    if kind == "json":
        return sharded_weights.load(model, filepath, skip_mismatch)
    raise FileFormatError(f"{filepath}: a directory is not a weights file; pass its model.weights.h5 or load_model() it.")


def model_from_json(json_string, custom_objects=None, safe_mode=True):
    """Rebuild a model (new weights) from `model.to_json()` output."""
    try:
        config = json.loads(json_string)
    except ValueError as error:
        raise FileFormatError(f"model_from_json: not valid JSON ({error}).") from None
    with safe_mode_scope(safe_mode), registry.custom_object_scope(custom_objects):
        return deserialize_keras_object(config, ("keras", "keras.models"), custom_objects, safe_mode)

"""save_model / load_model / save_weights / load_weights over the table of formats: the format is
picked by extension on save, and by the file's own bytes on load (never by trusting the name alone).

Every format this package ships registers its row in `saving.formats.table` when imported here;
the export artifact registers its own (`keramic.export`). Nothing below names a format's module.
"""

import logging
import os
from typing import Any

from keramic.errors import FileFormatError, NotAModelError, typed_errors
from keramic.saving import remote
from keramic.saving.formats import (  # noqa: F401  (each registers its row in the table)
    checkpoint,
    config_json,
    distributed_checkpoint,
    keras2_config,
    keras_directory,
    keras_v3,
    legacy_h5,
    safetensors_weights,
    sharded_weights,
    table,
)
from keramic.saving.stores import atomic
from keramic.serialization import registry
from keramic.serialization.serialize import deserialize_keras_object, loads_as_model, model_expected, safe_mode_scope

PathLike = str | os.PathLike
ZIP_MAGIC = table.ZIP_MAGIC
HDF5_MAGIC = table.HDF5_MAGIC


def sniff(path: PathLike) -> str:
    """'zip', 'hdf5', 'directory' or 'json': the container at `path`, from its bytes (formats come from `table.detect`)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "directory"
    if not os.path.exists(path):
        raise FileNotFoundError(f"No file or directory found at {path}")
    head = table.head(path)
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head == HDF5_MAGIC:
        return "hdf5"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    raise FileFormatError(
        f"{path}: unrecognised file format (starts with {head!r}); expected a .keras zip archive, an HDF5 file, a JSON file or a model directory."
    )


def save_model(model: Any, filepath: PathLike, overwrite: bool = True, zipped: bool | None = None, include_optimizer: bool = True, **kwargs: Any) -> Any:
    """Save the whole model (architecture, weights, compile and optimizer state) to `filepath`.

    `.keras` -> Keras 3's zip archive; `zipped=False` -> the same three entries in a directory;
    `.h5` / `.hdf5` -> the legacy single-file HDF5 format.

    >>> save_model(model, "model.keras")
    >>> save_model(model, "model_dir", zipped=False)
    """
    if kwargs:
        raise ValueError(f"Unknown arguments to save_model: {sorted(kwargs)}")
    if remote.is_url(filepath):  # saved locally, then uploaded and committed
        return remote.save_through_local(filepath, lambda local: save_model(model, local, True, zipped, include_optimizer), overwrite)
    filepath = os.fspath(filepath)
    if filepath.endswith((".h5", ".hdf5")):  # Keras's own notice, through its logger as Keras does
        logging.getLogger("keramic").warning(
            "You are saving your model as an HDF5 file via `model.save()` or `keras.saving.save_model(model)`. "
            "This file format is considered legacy. We recommend using instead the native Keras format, "
            "e.g. `model.save('my_model.keras')` or `keras.saving.save_model(model, 'my_model.keras')`. "
        )
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    row: table.FileFormat | None
    if zipped is False:
        if filepath.endswith(".keras"):
            raise FileFormatError(f"{filepath}: with zipped=False the path names a directory and must not end in `.keras`.")
        row = table.get("keras_directory")
    else:
        row = table.for_target(filepath, holds_model=True)
    if row is None or row.save is None:
        raise FileFormatError(
            f"Invalid filepath extension for saving: {filepath}. Use a `.keras` path (Keras 3's format), "
            "`.h5` (legacy HDF5), or `zipped=False` to write a directory."
        )
    save = row.save
    return distributed_checkpoint.write_once(model, lambda: save(model, filepath, include_optimizer=include_optimizer))  # rank 0 writes


def load_model(filepath: PathLike, custom_objects: dict | None = None, compile: bool = True, safe_mode: bool | None = None) -> Any:
    """Load a model saved by keramic or Keras (`.keras` archive, its directory form, legacy `.h5`,
    an export artifact). The format comes from the file's bytes, whatever its name.
    `safe_mode` unset means safe unless `keras.config.enable_unsafe_deserialization()` was called,
    as in Keras.

    >>> model = load_model("model.keras")
    """
    if remote.is_url(filepath):  # downloaded into a private temp directory, then loaded from there
        return remote.load_through_local(filepath, lambda local: load_model(local, custom_objects, compile, safe_mode))
    filepath = os.fspath(filepath)
    with typed_errors(filepath):
        row = table.detect(filepath)
        if row.load is None:
            raise FileFormatError(f"{filepath}: {row.hint or row.description + ' holds no model architecture.'}")
        with model_expected():
            model = row.load(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
        if not loads_as_model(model):
            raise NotAModelError(f"{filepath}: the file describes a {type(model).__name__}, not a model; load_model only returns models.")
    return model


def _weights_row(filepath: str, max_shard_size: float | None, format: str | None) -> table.FileFormat:
    """The row a weights save asks for: by `format`, else by extension (a shard size makes a Keras
    weights path its sharded index, as in Keras)."""
    if format == "checkpoint":
        return table.get("keramic_checkpoint")
    if format is not None:
        raise ValueError(f"Unknown weights format {format!r}; use None (chosen by extension) or 'checkpoint'.")
    row = table.for_target(filepath, holds_model=False)
    if max_shard_size is not None and (row is None or row.name != "safetensors"):
        return table.get("weights_json")  # its index path names what is expected
    if row is None or row.name == "weights_json":
        raise FileFormatError(
            f"The filename must end in `.weights.h5` (or `.h5` for the legacy layout, `.safetensors` for safetensors). Received: filepath={filepath}"
        )
    return row


def save_weights(model: Any, filepath: PathLike, overwrite: bool = True, max_shard_size: float | None = None, format: str | None = None) -> Any:
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
    if remote.is_url(filepath):
        return remote.save_through_local(filepath, lambda local: save_weights(model, local, True, max_shard_size, format), overwrite)
    filepath = os.fspath(filepath)
    row = _weights_row(filepath, max_shard_size, format)
    if row.target_path is not None:
        filepath = row.target_path(filepath, max_shard_size)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    if row.save is None:
        raise FileFormatError(f"{filepath}: {row.description} cannot be written.")
    options = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    save = row.save
    if row is not checkpoint.CHECKPOINT:  # under keras.distribution: written once, by rank 0 (checkpoints: by all)
        return distributed_checkpoint.write_once(model, lambda: save(model, filepath, **options))
    return save(model, filepath, **options)


def load_weights(model: Any, filepath: PathLike, skip_mismatch: bool = False, by_name: bool = False, verify: bool = True) -> Any:
    """Load weights into a built model from `*.weights.h5`, a sharded `*.weights.json` index, a
    `.keras` archive, a legacy `.h5` file or safetensors (recognised by their bytes; a sharded
    `*.safetensors.index.json` by its name); strict by default, nothing assigned on a mismatch.
    `by_name` matches layers by name, for legacy `.h5` files only (as Keras).

    >>> load_weights(model, "model.weights.h5")

    A checkpoint directory restores even into a model that is not built yet (values wait for their
    variables) and returns a status (`assert_consumed()`, ...); `verify` checks its file hashes.
    """
    if remote.is_url(filepath):
        return remote.load_through_local(filepath, lambda local: load_weights(model, local, skip_mismatch, by_name, verify))
    filepath = os.fspath(filepath)
    with typed_errors(filepath):
        row = table.detect(filepath)
        if row.load_weights is None:
            table.refuse_by_name(filepath, by_name)
            raise FileFormatError(f"{filepath}: {row.hint or row.description + ' holds no weights to load.'}")
        return row.load_weights(model, filepath, skip_mismatch=skip_mismatch, by_name=by_name, verify=verify)


def model_from_json(json_string: str, custom_objects: dict | None = None, safe_mode: bool | None = None) -> Any:
    """Rebuild a model (new weights) from `model.to_json()` output (`safe_mode` as in `load_model`)."""
    with typed_errors("model_from_json: JSON string"):
        data = json_string if isinstance(json_string, bytes) else json_string.encode("utf-8", "surrogatepass")
        config = atomic.parse_json(data, "model_from_json: JSON string")
        config = keras2_config.convert_json_config(config)  # tf.keras 2's JSON: as its `.h5` files
        with safe_mode_scope(safe_mode), registry.custom_object_scope(custom_objects), model_expected():
            return deserialize_keras_object(config, ("keras", "keras.models"), custom_objects, safe_mode)

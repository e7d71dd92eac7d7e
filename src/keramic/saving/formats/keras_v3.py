"""The Keras 3 `.keras` zip: metadata.json, config.json, model.weights.h5 (keras-v3-format.md).

Files written here load in real Keras 3, and Keras's files load here. Members are stored
uncompressed, as Keras writes them, and read by name only.

Saving streams: the HDF5 weights file is laid out in memory as metadata only (`h5_layout`), then
written with the tensors straight into its place in the archive, CRC-32 computed on the way.
`metadata.json` (which Keras never reads) carries an index of tensor offsets, so keramic's own
files load by reading each tensor directly into its variable once the index checks out against
the member's HDF5 metadata; other files are read through h5py. Archives are opened only once their
zip structure is unambiguous (`zip_archive`), and every member's CRC-32 is checked as it is read.
"""

import datetime
import json
import os
import zipfile
import zlib

from keramic.errors import FileFormatError, KeramicError, NotBuiltError
from keramic.saving import assets, inspect_hdf5, inspect_summary
from keramic.saving.formats import table
from keramic.saving.stores import atomic, bulk_io, h5_layout, h5_preflight, h5_weights, weights_index, zip_archive, zip_writer
from keramic.saving.stores.atomic import write_atomically
from keramic.saving.stores.zip_member import FileWindow, open_member, verify_member
from keramic.saving.tree import group_name, loading_groups, variable_groups
from keramic.saving.version import keramic_version
from keramic.serialization import registry
from keramic.serialization.restore_hooks import skipping_initializers
from keramic.serialization.serialize import deserialize_keras_object, safe_mode_scope, serialize_keras_object

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
KERAS_FORMAT_VERSION = "3.15.1"


def check_saveable(model):
    """Refuse models that cannot be rebuilt from a file, saying what to do about it."""
    if not model.built:
        raise NotBuiltError(
            f"Model '{model.name}' has not been built yet, so it has no weights to save. Call it on a batch of data (or call `model.build(input_shape)`) first."
        )


def model_config(model, include_optimizer=True):
    """The model's config, with an empty `compile_config` when the optimizer is left out."""
    config = serialize_keras_object(model)
    if not include_optimizer and "compile_config" in config:
        config["compile_config"] = {}
    return config


def saving_metadata():
    """The metadata.json of a saved model."""
    return {
        "keras_version": KERAS_FORMAT_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "keramic_version": keramic_version(),
    }


def model_from_config(config, where, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model from its config, initializers skipped (the weights are read next); `where` prefixes errors."""
    if not compile and isinstance(config, dict):
        config = {key: value for key, value in config.items() if key != "compile_config"}
    try:
        with safe_mode_scope(safe_mode), registry.custom_object_scope(custom_objects), skipping_initializers():
            return deserialize_keras_object(config, ("keras", "keras.models"), custom_objects, safe_mode)
    except KeramicError as error:
        raise type(error)(f"{where}: {error}") from None


def write_weights_file(model, path, include_optimizer=True):
    """Write every variable group of `model` to an HDF5 file at `path` (not atomic by itself)."""
    image = h5_layout.WeightsImage(variable_groups(model, include_optimizer=include_optimizer))
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        bulk_io.write_buffers(fd, image.buffers(), 0, checksum=False)
    finally:
        os.close(fd)


def save(model, path, include_optimizer=True, fsync=True):
    """Write `model` to a `.keras` archive at `path`, atomically (`fsync=False`: skip the flush to disk)."""
    check_saveable(model)
    path = os.fspath(path)
    config = model_config(model, include_optimizer)
    groups = list(variable_groups(model, include_optimizer=include_optimizer))
    image = h5_layout.WeightsImage(groups)
    metadata = saving_metadata()
    index = weights_index.build(image, groups)
    if index is not None:
        metadata[weights_index.KEY] = index
    with assets.saved_assets(model) as asset_files, write_atomically(path, fsync=fsync) as temporary:
        fd = os.open(temporary, os.O_WRONLY)
        try:
            writer = zip_writer.StoredZipWriter(fd)
            writer.add(METADATA, json.dumps(metadata).encode())
            writer.add(CONFIG, json.dumps(config).encode())
            zip_writer.write_member_buffers(writer, fd, WEIGHTS, image.size, image.buffers(), zip_writer.now(), h5_layout.DATA_ALIGNMENT)
            for name, file_path in asset_files:
                with open(file_path, "rb") as handle:
                    writer.add(name, handle.read())
            writer.close()
        finally:
            os.close(fd)


def open_archive(path):
    """The `.keras` zip, once its structure is checked (errors name the file and member)."""
    return zip_archive.open_checked(path, WEIGHTS)


def read_config(path, archive):
    if CONFIG not in archive.namelist():
        raise FileFormatError(f"{path}: the archive has no '{CONFIG}' entry, so it is not a Keras model file.")
    return atomic.read_json_member(path, archive, CONFIG)


def load(path, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model from a `.keras` archive: architecture, weights, compile state, optimizer state."""
    path = os.fspath(path)
    with open_archive(path) as archive:
        model = model_from_config(read_config(path, archive), f"{path}: entry '{CONFIG}'", custom_objects, compile, safe_mode)
        if WEIGHTS not in archive.namelist():
            raise FileFormatError(f"{path}: the archive has no '{WEIGHTS}' entry.")
        load_weights_from_member(model, path, archive, WEIGHTS, skip_mismatch=False, fresh_model=True)
        try:
            assets.load_from_archive(model, path, archive)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # a damaged asset member (CRC, inflation)
            raise FileFormatError(f"{path}: an asset member cannot be read ({type(error).__name__}: {error}).") from None
    return model


def load_weights_from_member(model, path, archive, member, skip_mismatch, fresh_model=False):
    """Load weights from an archive member: through keramic's index when it checks out, else via h5py.

    The member's CRC-32 is checked before a variable changes, or, for a `fresh_model` (built for this
    load, dropped when it fails), on the bytes as they are read into it."""
    filename = f"{path}:{member}"
    indexed = weights_index.open_index(path, archive, member, METADATA, verify_first=not fresh_model) if member == WEIGHTS else None
    if indexed is not None:
        with indexed:
            _load_weights(model, indexed, filename, skip_mismatch)
        return
    with open_member(path, archive, member) as handle:
        with h5_preflight.open_checked_member(path, member, handle, archive.getinfo(member).file_size) as h5file:
            raw = (handle.fd, handle.start, handle.size) if isinstance(handle, FileWindow) else None
            _load_weights(model, h5_weights.H5Weights(h5file, filename, raw), filename, skip_mismatch)


def load_weights_from_h5(model, h5file, filename, skip_mismatch=False):
    """Read a Keras 3 weights layout from an open h5py file into a built model."""
    raw, fd = None, None
    if h5file.driver == "sec2":
        fd = os.dup(h5file.id.get_vfd_handle())  # the file HDF5 read the metadata of, not the path anew
        raw = (fd, 0, os.fstat(fd).st_size)
    try:
        _load_weights(model, h5_weights.H5Weights(h5file, filename, raw), filename, skip_mismatch)
    finally:
        if fd is not None:
            os.close(fd)


def check_built(model, filename):
    """Refuse to load weights from `filename` into a model that has no variables yet."""
    if not model.built:
        raise NotBuiltError(
            f"Cannot load weights from {filename} into model '{model.name}' before it is built: call it on a batch of data or `build()` it first."
        )


def groups_to_load(model, source):
    """([groups read in bulk], [(path, object) reading its own store]): optimizer included (its slots
    created to match) when `source` holds its state."""
    optimizer = getattr(model, "optimizer", None)
    stored = len(source.stored("optimizer/vars")) if optimizer is not None else 0
    if stored == 0:
        return loading_groups(model, include_optimizer=False)
    if not optimizer.built and stored > len(optimizer.variables):
        optimizer.build(model.trainable_variables)  # slots come from the file, so create them first
    groups, custom = loading_groups(model, include_optimizer=True)
    if optimizer.built and stored < len(optimizer.variables) and stored == optimizer._variables_before_build():
        # The file's optimizer was never built (compiled, not trained): only its counters exist.
        groups = [(p, o, v[:stored] if o is optimizer else v) for p, o, v in groups]
    return groups, custom


def read_state(model, source, filename, skip_mismatch):
    """Assign the model's variables from a weights source (`stored`, `read`, `store`): in bulk, then
    each object overriding `load_own_variables` from its own group's store."""
    groups, custom = groups_to_load(model, source)
    h5_weights.read_groups(source, groups, filename, skip_mismatch)
    for path, owner in custom:
        owner.load_own_variables(source.store(group_name(path)))


def _load_weights(model, source, filename, skip_mismatch):
    """Assign the model's variables (optimizer slots created to match the file) from a weights source."""
    check_built(model, filename)
    try:
        read_state(model, source, filename, skip_mismatch)
    except EOFError as error:
        raise FileFormatError(f"{filename}: {error} (file truncated?)") from None


# ---------------------------------------------------------------- the table rows: .keras, .weights.h5
def recognise(path):
    """A zip archive (Keras's `.keras`, whatever its name)."""
    return os.path.isfile(path) and table.head(path, 4) == table.ZIP_MAGIC


def inspect_archive(path):
    """The archive's config, metadata and weights layout, no tensor data read."""
    with open_archive(path) as archive:
        names = set(archive.namelist())
        if CONFIG not in names:
            raise FileFormatError(f"{path}: the archive has no '{CONFIG}' entry, so it is not a Keras model file.")
        config = atomic.read_json_member(path, archive, CONFIG)
        metadata = atomic.read_json_member(path, archive, METADATA) if METADATA in names else {}
        if not isinstance(metadata, dict):
            raise FileFormatError(f"{path}: entry '{METADATA}': expected a JSON object, found {type(metadata).__name__}.")
        weights = inspect_hdf5.read_weights_member(path, archive, WEIGHTS) if WEIGHTS in names else None
    return inspect_summary.summarize(path, "keras_v3", KERAS_V3.description, config, metadata, weights, entry=CONFIG)


def load_weights_into(model, path, skip_mismatch=False, by_name=False, verify=True):
    """Fill `model` from the weights member of a `.keras` archive."""
    table.refuse_by_name(path, by_name)
    with open_archive(path) as archive:
        if WEIGHTS not in archive.namelist():
            raise FileFormatError(f"{path}: the archive has no '{WEIGHTS}' entry.")
        if CONFIG in archive.namelist():
            verify_member(path, archive, CONFIG)  # unused here, but a damaged archive is refused whole
        load_weights_from_member(model, path, archive, WEIGHTS, skip_mismatch)


def save_weights_file(model, path, fsync=True):
    """Write a Keras 3 `.weights.h5` file atomically."""
    if not model.built:
        raise NotBuiltError(f"Model '{model.name}' has not been built yet; call it on data or build() it before saving weights.")
    with write_atomically(path, fsync=fsync) as temporary:
        write_weights_file(model, temporary)
    return path


def recognise_weights(path):
    """Any HDF5 file (the legacy layouts are recognised before, by their rows)."""
    return os.path.isfile(path) and table.head(path) == table.HDF5_MAGIC


def inspect_weights(path):
    zip_archive.refuse_zip_ending(path)
    with h5_weights.open_hdf5(path, f"{path}:") as h5file:
        weights = inspect_hdf5.weights_summary(h5file, path)
    return inspect_summary.summarize(path, "weights_h5", WEIGHTS_H5.description, weights=weights)


def load_weights_h5(model, path, skip_mismatch=False, by_name=False, verify=True):
    table.refuse_by_name(path, by_name)
    zip_archive.refuse_zip_ending(path)
    with h5_weights.open_hdf5(path, f"{path}:") as h5file:
        load_weights_from_h5(model, h5file, path, skip_mismatch)


KERAS_V3 = table.register(
    table.FileFormat(
        name="keras_v3",
        title="Keras 3 .keras archive",
        description="Keras 3 whole-model archive (.keras zip: metadata.json, config.json, model.weights.h5)",
        recognise=recognise,
        suffixes=(".keras",),
        holds_model=True,
        save=save,
        load=load,
        load_weights=load_weights_into,
        inspect=inspect_archive,
        order=20,
    )
)
WEIGHTS_H5 = table.register(
    table.FileFormat(
        name="weights_h5",
        title="Keras 3 .weights.h5 weights",
        description="Keras 3 weights file (.weights.h5)",
        recognise=recognise_weights,
        suffixes=(".weights.h5",),
        save=save_weights_file,
        load_weights=load_weights_h5,
        inspect=inspect_weights,
        hint="an HDF5 file without a model architecture (no 'model_config' attribute), e.g. a weights file: build "
        "the model in code and call `model.load_weights(...)` on it.",
        order=32,
    )
)

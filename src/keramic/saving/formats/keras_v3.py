"""The Keras 3 `.keras` zip: metadata.json, config.json, model.weights.h5 (keras-v3-format.md).

Files written here load in real Keras 3, and Keras's files load here. Members are stored
uncompressed, as Keras writes them, and read by name only.

Saving streams: the HDF5 weights file is laid out in memory as metadata only (`h5_layout`), then
written with the tensors straight into its place in the archive, CRC-32 computed on the way.
`metadata.json` (which Keras never reads) carries an index of tensor offsets, so keramic's own
files load by reading each tensor directly into its variable once the index checks out against
the archive; other files are read through h5py.
"""

import datetime
import json
import os
import zipfile

import h5py

import keramic
from keramic.errors import FileFormatError, KeramicError, NotBuiltError
from keramic.serialization.restore_hooks import skipping_initializers
from keramic.serialization import registry
from keramic.serialization.serialize import deserialize_keras_object, safe_mode_scope, serialize_keras_object
from keramic.saving.stores import bulk_io, h5_layout, h5_weights, weights_index, zip_writer
from keramic.saving.stores.atomic import write_atomically
from keramic.saving.stores.zip_member import FileWindow, open_member
from keramic.saving.tree import variable_groups

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
KERAS_FORMAT_VERSION = "3.15.1"


def check_saveable(model):
    """Refuse models that cannot be rebuilt from a file, saying what to do about it."""
    from keramic.models.functional import Functional
    from keramic.models.sequential import Sequential

    if not model.built:
        raise NotBuiltError(
            f"Model '{model.name}' has not been built yet, so it has no weights to save. "
            "Call it on a batch of data (or call `model.build(input_shape)`) first."
        )
    if isinstance(model, (Functional, Sequential)):
        return
    cls = type(model)
    import inspect

    init_parameters = [
        p
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if "get_config" not in vars(cls) and init_parameters and cls.__init__ is not keramic.Model.__init__:
        raise KeramicError(
            f"Subclassed model {cls.__name__} takes constructor arguments "
            f"({', '.join(p.name for p in init_parameters)}) but has no get_config(). Add "
            "`def get_config(self): return {**super().get_config(), <each argument>: ...}` and register the "
            "class with `@keramic.saving.register_keras_serializable()`, or save only its weights "
            "(`model.save_weights(...)`)."
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
        "keramic_version": keramic.__version__,
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
    image = h5_layout.WeightsImage(variable_groups(model, include_optimizer=include_optimizer))
    metadata = {**saving_metadata(), weights_index.KEY: weights_index.build(image)}
    with write_atomically(path, fsync=fsync) as temporary:
        fd = os.open(temporary, os.O_WRONLY)
        try:
            writer = zip_writer.StoredZipWriter(fd)
            writer.add(METADATA, json.dumps(metadata).encode())
            writer.add(CONFIG, json.dumps(config).encode())
            zip_writer.write_member_buffers(
                writer, fd, WEIGHTS, image.size, image.buffers(), zip_writer.now(), h5_layout.DATA_ALIGNMENT
            )
            writer.close()
        finally:
            os.close(fd)


def open_archive(path):
    try:
        archive = zipfile.ZipFile(path, "r")
    except zipfile.BadZipFile as error:
        raise FileFormatError(f"{path}: not a valid .keras archive ({error}).") from None
    return archive


def read_config(path, archive):
    if CONFIG not in archive.namelist():
        raise FileFormatError(f"{path}: the archive has no '{CONFIG}' entry, so it is not a Keras model file.")
    try:
        return json.loads(archive.read(CONFIG).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as error:
        raise FileFormatError(f"{path}: entry '{CONFIG}' is not valid JSON ({error}).") from None


def load(path, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model from a `.keras` archive: architecture, weights, compile state, optimizer state."""
    path = os.fspath(path)
    with open_archive(path) as archive:
        model = model_from_config(read_config(path, archive), f"{path}: entry '{CONFIG}'", custom_objects, compile, safe_mode)
        if WEIGHTS not in archive.namelist():
            raise FileFormatError(f"{path}: the archive has no '{WEIGHTS}' entry.")
        load_weights_from_member(model, path, archive, WEIGHTS, skip_mismatch=False)
    return model


def load_weights_from_member(model, path, archive, member, skip_mismatch):
    """Load weights from an archive member: through keramic's index when it checks out, else via h5py."""
    filename = f"{path}:{member}"
    indexed = weights_index.open_index(path, archive, member, METADATA) if member == WEIGHTS else None
    if indexed is not None:
        with indexed:
            _load_weights(model, indexed, filename, skip_mismatch)
        return
    with open_member(path, archive, member) as handle:
        try:
            h5file = h5py.File(handle, "r")
        except OSError as error:
            raise FileFormatError(f"{path}: entry '{member}' is not a readable HDF5 file ({error}).") from None
        with h5file:
            raw = (handle.fd, handle.start, handle.size) if isinstance(handle, FileWindow) else None
            _load_weights(model, h5_weights.H5Weights(h5file, filename, raw), filename, skip_mismatch)


def load_weights_from_h5(model, h5file, filename, skip_mismatch=False):
    """Read a Keras 3 weights layout from an open h5py file into a built model."""
    raw, fd = None, None
    if h5file.driver == "sec2":
        fd = os.open(h5file.filename, os.O_RDONLY)
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
            f"Cannot load weights from {filename} into model '{model.name}' before it is built: "
            "call it on a batch of data or `build()` it first."
        )


def groups_to_load(model, source):
    """The model's variable groups, optimizer included (its slots created to match) when `source` holds its state."""
    optimizer = getattr(model, "optimizer", None)
    stored = len(source.stored("optimizer/vars")) if optimizer is not None else 0
    if stored == 0:
        return variable_groups(model, include_optimizer=False)
    if not optimizer.built and stored > len(optimizer.variables):
        optimizer.build(model.trainable_variables)  # slots come from the file, so create them first
    groups = variable_groups(model, include_optimizer=True)
    if optimizer.built and stored < len(optimizer.variables) and stored == _unbuilt_count(optimizer):
        # The file's optimizer was never built (compiled, not trained): only its counters exist.
        groups = [(p, o, v[:stored] if o is optimizer else v) for p, o, v in groups]
    return groups


def _load_weights(model, source, filename, skip_mismatch):
    """Assign the model's variables (optimizer slots created to match the file) from a weights source."""
    check_built(model, filename)
    try:
        h5_weights.read_groups(source, groups_to_load(model, source), filename, skip_mismatch)
    except EOFError as error:
        raise FileFormatError(f"{filename}: {error} (file truncated?)") from None


def _unbuilt_count(optimizer):
    """Variables an optimizer has before `build`: iteration, and learning_rate unless a schedule."""
    from keramic.optimizers.schedules import LearningRateSchedule

    return 1 if isinstance(optimizer._learning_rate, LearningRateSchedule) else 2

"""The legacy single-file HDF5 format (`.h5`), as tf.keras 2 and Keras 3 write it.

Whole models (`model_config`, `training_config`, `model_weights`, `optimizer_weights`) and
weights-only files (the `model_weights` layout at the file root); see
keras-legacy-h5-format.md. Configs are written in tf.keras 2's form (Keras 3 reads it too), so
both tf.keras 2 and real Keras 3 load the files; any writer's files are read, and training resumes with the saved optimizer state. Reading is
defensive: read-only, hard links and plain contiguous or built-in-filter storage only, names,
counts and shapes checked against the model before a single value is read.

How to recognise the two layouts from an open file: `is_legacy_model_file` (root attribute
`model_config`) and `is_legacy_weights_file` (`layer_names` at the root, or a `model_weights`
group that has it).
"""

import json
import os
import warnings

import h5py
import numpy as np

from keramic.errors import ConfigError, FileFormatError, KeramicError, Keras2FormError, NotBuiltError, WeightsMismatchError
from keramic.saving import inspect_hdf5, inspect_summary
from keramic.saving.formats import keras2_config, keras2_training, keras2_writing, legacy_optimizer_weights, table
from keramic.saving.formats.keras_v3 import KERAS_FORMAT_VERSION
from keramic.saving.stores import atomic, h5_preflight, h5_safety, h5_weights, zip_archive
from keramic.saving.stores.atomic import write_atomically
from keramic.saving.stores.h5_weights import FileCheck, read_dataset_into, write_dataset
from keramic.serialization import registry
from keramic.serialization.serialize import deserialize_keras_object, legacy_graph_form, safe_mode_scope, serialize_keras_object

MODEL_WEIGHTS = "model_weights"
OPTIMIZER_WEIGHTS = "optimizer_weights"
TOP_LEVEL_WEIGHTS = "top_level_model_weights"
# An HDF5 object header holds at most this many bytes of attributes; longer name lists are split
# into `<name>0`, `<name>1`, ... as Keras does.
HDF5_OBJECT_HEADER_LIMIT = 64512


# ------------------------------------------------------------------------------- recognising
def is_legacy_model_file(h5file):
    """True for a whole-model legacy file: it has a `model_config` root attribute."""
    return "model_config" in h5file.attrs


def is_legacy_weights_file(h5file):
    """True when the file holds legacy weights: `layer_names` at the root (weights-only file) or
    in a `model_weights` group (whole-model file). Keras 3 `.weights.h5` files have neither."""
    if "layer_names" in h5file.attrs or "layer_names0" in h5file.attrs:
        return True
    group = FileCheck(h5file.filename).group(h5file, MODEL_WEIGHTS)
    return group is not None and ("layer_names" in group.attrs or "layer_names0" in group.attrs)


# ------------------------------------------------------------------------------- saving
def save(model, path, include_optimizer=True):
    """Write `model` as a whole-model legacy `.h5` file that Keras 3 loads, atomically.

    >>> legacy_h5.save(model, "model.h5")
    """
    _check_saveable(model)
    path = os.fspath(path)
    # The Keras 2 form: tf.keras 2 reads it, and so do Keras 3 and keramic (they read tf.keras files).
    # Graphs that form cannot express keep Keras 3's form, which Keras 3 and keramic read.
    try:
        with legacy_graph_form():
            entry = _legacy_entry(serialize_keras_object(model))
        model_config = keras2_writing.to_keras2_model_config(entry)
    except Keras2FormError:
        with legacy_graph_form(for_tf_keras=False):
            model_config = _legacy_entry(serialize_keras_object(model))
    optimizer = getattr(model, "optimizer", None) if include_optimizer and model.compiled else None
    with write_atomically(path) as temporary, h5py.File(temporary, "w") as h5file:
        h5file.attrs["keras_version"] = KERAS_FORMAT_VERSION
        h5file.attrs["backend"] = "torch"
        h5file.attrs["model_config"] = json.dumps(model_config).encode("utf-8")
        if optimizer is not None:
            training_config = keras2_writing.to_keras2_training_config(_training_config(model))
            h5file.attrs["training_config"] = json.dumps(training_config).encode("utf-8")
        _write_model_weights(h5file.create_group(MODEL_WEIGHTS), model)
        if optimizer is not None and optimizer.variables:
            group = h5file.create_group(OPTIMIZER_WEIGHTS)
            _write_subset(group, optimizer.variables, f"optimizer '{optimizer.name}'")


def save_weights(model, path):
    """Write the weights-only legacy layout (what tf.keras's `save_weights("w.h5")` wrote).

    >>> legacy_h5.save_weights(model, "weights.h5")
    """
    if not model.built:
        raise NotBuiltError(f"Model '{model.name}' has not been built yet; call it on data or build() it before saving weights.")
    path = os.fspath(path)
    with write_atomically(path) as temporary, h5py.File(temporary, "w") as h5file:
        _write_model_weights(h5file, model)


def _check_saveable(model):
    if not model.built:
        raise NotBuiltError(f"Model '{model.name}' has not been built yet, so it has no weights to save. Call it on a batch of data first.")
    if not model._structure_from_config:
        raise KeramicError(
            f"The legacy .h5 format cannot rebuild the subclassed model '{model.name}' "
            f"({type(model).__name__}): it stores no build information, so its weights could not be "
            "restored. Save it as `.keras`, or save only its weights (`save_weights`)."
        )


def _legacy_entry(envelope):
    """Keras 3's `.h5` model config: its normal config with `module`, `registered_name` and
    build/compile configs left out of the model and of every layer entry (observed)."""
    left_out = ("module", "registered_name", "build_config", "compile_config")
    if str(envelope.get("module") or "").startswith("keras.src.ops."):
        left_out = left_out[1:]  # an op node (`Multiply`) is found by its module, not a layer of that name
    entry = {key: value for key, value in envelope.items() if key not in left_out}
    registered = envelope.get("registered_name")
    if isinstance(registered, str) and ">" in registered:
        entry["class_name"] = registered  # custom objects go by `package>Name`, as Keras writes them
    config = entry.get("config")
    if isinstance(config, dict) and isinstance(config.get("layers"), list):
        entry["config"] = dict(config, layers=[_legacy_entry(layer) for layer in config["layers"]])
    return entry


def _legacy_object(value):
    """Compile arguments the way Keras's legacy serializer writes them: strings as given,
    functions by name, objects as `{class_name, config}`."""
    if isinstance(value, list):
        return [_legacy_object(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "class_name" not in value:
        return {key: _legacy_object(item) for key, item in value.items()}
    if value["class_name"] == "function":
        return value["config"]
    return {"class_name": value.get("registered_name") or value["class_name"], "config": value["config"]}


def _canonical_losses(spec):
    """Loss aliases ("mse") by their full names: Keras 3 cannot compile a `.h5` from the aliases."""
    from keramic import losses

    if isinstance(spec, str):
        found = losses.ALIASES.get(spec)
        return found.__name__ if found is not None else spec
    if isinstance(spec, list):
        return [_canonical_losses(item) for item in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {key: _canonical_losses(item) for key, item in spec.items()}
    return spec


def _training_config(model):
    compile_config = model.get_compile_config()
    config = {key: _legacy_object(value) for key, value in compile_config.items() if key != "optimizer"}
    config["loss"] = _canonical_losses(config.get("loss"))
    envelope = serialize_keras_object(model.optimizer)
    class_name = envelope.get("registered_name") or envelope["class_name"]
    config["optimizer_config"] = {"class_name": class_name, "config": envelope["config"]}
    return config


def _write_names(node, attribute, names):
    """Store a list of names as Keras does, split in chunks when it would not fit a header."""
    encoded = [name.encode("utf-8") for name in names]
    too_long = [name for name in encoded if len(name) > HDF5_OBJECT_HEADER_LIMIT]
    if too_long:
        raise KeramicError(f"Cannot save names longer than {HDF5_OBJECT_HEADER_LIMIT} bytes in an HDF5 attribute: {too_long[0][:80]!r}...")
    array = np.asarray(encoded)
    chunks = [array]
    while any(chunk.nbytes > HDF5_OBJECT_HEADER_LIMIT for chunk in chunks):
        chunks = np.array_split(array, len(chunks) + 1)
    if len(chunks) == 1:
        node.attrs[attribute] = encoded
        return
    for index, chunk in enumerate(chunks):
        node.attrs[f"{attribute}{index}"] = chunk


def _write_subset(group, variables, owner):
    names = [variable.path for variable in variables]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise KeramicError(f"Cannot save {owner} in the .h5 format: several of its weights share the path {duplicates[0]!r}.")
    _write_names(group, "weight_names", names)
    for name, variable in zip(names, variables):
        write_dataset(group, name, variable)


def _write_model_weights(group, model):
    _write_names(group, "layer_names", [layer.name for layer in model.layers])
    group.attrs["backend"] = b"torch"
    group.attrs["keras_version"] = KERAS_FORMAT_VERSION.encode("utf-8")
    for layer in sorted(model.layers, key=lambda layer: layer.name):
        _write_subset(group.create_group(layer.name), _legacy_weights(layer), f"layer '{layer.name}'")
    _write_subset(group.create_group(TOP_LEVEL_WEIGHTS), _top_level_weights(model), f"model '{model.name}'")


def _legacy_weights(layer):
    """The order both Keras generations store a layer's weights in: trainable, then the rest."""
    return layer.trainable_weights + layer.non_trainable_weights


def _top_level_weights(model):
    """Variables created on the model object itself (subclassed models' `add_weight`)."""
    return model._saveable_variables()


# ------------------------------------------------------------------------------- reading helpers
def _open(path):
    """The file for reading, once it is known not to read as a zip archive too and its metadata
    reads safely in a child process (a damaged file can hang or crash the HDF5 library)."""
    zip_archive.refuse_zip_ending(path)
    return h5_preflight.open_checked(path, f"{path}:")


def _error(filename, entry, message, kind=FileFormatError):
    return kind(f"{filename}: entry '{entry}': {message}")


_reading = h5_safety.reading  # a damaged HDF5 structure -> FileFormatError naming file and entry
_LISTED = 20  # names shown in an error message before "..."


def _listing(names):
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")


def _text(value, filename, entry):
    """A string attribute: bytes or str, fixed or variable length, decoded as UTF-8."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _error(filename, entry, "holds bytes that are not UTF-8 text.") from None
    if isinstance(value, str):
        return value
    raise _error(filename, entry, f"expected text, found {type(value).__name__}.")


def _attribute(node, name, filename):
    with _reading(filename, f"{node.name} attribute {name}"):
        return node.attrs[name]


def _names(node, attribute, filename):
    """A list-of-names attribute, joined from its chunks; an empty array (any dtype) is no names.
    Names repeat in no file Keras writes: a repeat is refused before any name is looked up, so the
    lookups (each must find its entry) cost no more than the file's real content."""
    with _reading(filename, f"{node.name} attribute {attribute}"):
        if attribute in node.attrs:
            keys = [attribute]
        else:
            keys = []
            while f"{attribute}{len(keys)}" in node.attrs:
                keys.append(f"{attribute}{len(keys)}")
    names = []
    for key in keys:
        entry = f"{node.name} attribute {key}"
        with _reading(filename, entry):
            array = np.asarray(node.attrs[key])
        if array.size == 0:
            continue
        if array.dtype.kind not in "OSU":
            raise _error(filename, entry, f"expected a list of names, found {array.dtype} values.")
        items = array.reshape(-1).tolist()
        if array.dtype.kind == "S":
            try:
                names.extend([item.decode("utf-8") for item in items])  # the common case, fast
                continue
            except UnicodeDecodeError:
                pass  # `_text` below raises the error naming the entry
        names.extend(_text(item, filename, entry) for item in items)
    entry = f"{node.name} attribute {attribute}"
    if len(set(names)) != len(names):
        seen = set()
        repeated = next(name for name in names if name in seen or seen.add(name))
        raise _error(filename, entry, f"lists the name {repeated[:200]!r} more than once.")
    return names


def _json_attribute(node, name, filename):
    text = _text(_attribute(node, name, filename), filename, name)
    return atomic.parse_json(text.encode("utf-8"), f"{filename}: entry '{name}'", convert=keras2_config.legacy_json_object)


def _dataset(check, group, name, filename):
    """The dataset a weight name addresses inside `group`: every step a hard link, a tensor dtype,
    storage inside the file and built-in filters only (FileCheck)."""
    entry = f"{group.name}/{name}"
    with _reading(filename, entry):
        dataset = check.dataset(group, name)
        if dataset is None:
            raise _error(filename, entry, "is listed in weight_names but missing from the file.")
        return dataset


def _read(dataset, variable, filename):
    with _reading(filename, dataset.name):
        read_dataset_into(dataset, variable)


def _weights_group(h5file, check, filename):
    """Weights-only files keep the layout at the root; whole-model files in `model_weights`."""
    if "layer_names" in h5file.attrs or "layer_names0" in h5file.attrs:
        return h5file
    group = check.group(h5file, MODEL_WEIGHTS)
    if group is None:
        message = "not found at the root nor in a 'model_weights' group: this is not a legacy Keras weights file."
        raise _error(filename, "layer_names", message)
    return group


def _stored_layers(check, group, filename):
    """`(name, group, weight names)` for each layer of the file, in its `layer_names` order."""
    stored = []
    for name in _names(group, "layer_names", filename):
        entry = f"{group.name.rstrip('/')}/{name}"
        layer_group = check.group(group, name)
        if layer_group is None:
            raise _error(filename, entry, "is listed in layer_names but missing from the file.")
        stored.append((name, layer_group, _names(layer_group, "weight_names", filename)))
    return stored


# ------------------------------------------------------------------------------- loading weights
class _Plan:
    """Which dataset goes into which variable; problems are collected so that nothing is read
    unless everything fits (or was skipped on purpose)."""

    def __init__(self, check, filename, skip_mismatch):
        self.check = check
        self.filename = filename
        self.skip_mismatch = skip_mismatch
        self.pairs = []
        self.problems = []

    def layer(self, label, group, weight_names, variables, skip_count_mismatch=False):
        entry = group.name
        if len(weight_names) != len(variables):
            message = (
                f"{label} expects {len(variables)} weight(s), but the file has {len(weight_names)}"
                f"{' (' + _listing(weight_names) + ')' if weight_names else ''}."
            )
            if skip_count_mismatch:
                warnings.warn(f"{self.filename}: entry '{entry}': skipping the weights of {label}: {message}", stacklevel=4)
            else:
                self.problems.append(f"entry '{entry}': {message}")
            return
        for name, variable in zip(weight_names, variables):
            dataset = _dataset(self.check, group, name, self.filename)
            if tuple(dataset.shape) != tuple(variable.shape):
                message = f"{label}: weight '{variable.path}' has shape {tuple(variable.shape)}, the saved weight has shape {tuple(dataset.shape)}."
                if self.skip_mismatch:
                    warnings.warn(f"{self.filename}: entry '{dataset.name}': skipping {message}", stacklevel=4)
                else:
                    self.problems.append(f"entry '{dataset.name}': {message}")
                continue
            self.pairs.append((dataset, variable))

    def top_level(self, group, model, skip_count_mismatch):
        top = self.check.group(group, TOP_LEVEL_WEIGHTS)
        if top is not None:
            names = _names(top, "weight_names", self.filename)
            self.layer(f"model '{model.name}' (its own weights)", top, names, _top_level_weights(model), skip_count_mismatch)

    def run(self):
        if self.problems:
            raise WeightsMismatchError(
                f"{self.filename}: the weights do not fit the model:\n  "
                + "\n  ".join(self.problems[:50])
                + (f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else "")
                + "\nNothing was loaded."
            )
        for dataset, variable in self.pairs:
            _read(dataset, variable, self.filename)


def _pair_layers(model, stored, group, filename, prefer_names):
    """Model layers with weights paired with the file's layers with weights, in file order.

    Keras pairs them by position (topological loading). A whole-model file was made from the
    same config, so when every name matches exactly, names pair them instead.
    """
    layers = [layer for layer in model.layers if _legacy_weights(layer)]
    saved = [item for item in stored if item[2]]
    if prefer_names:
        by_name = {layer.name: layer for layer in layers}
        if len(by_name) == len(layers) == len(saved) and {item[0] for item in saved} == set(by_name):
            return [(by_name[item[0]], item) for item in saved]
    if len(layers) != len(saved):
        raise _error(
            filename,
            f"{group.name.rstrip('/')}/layer_names" if group.name != "/" else "layer_names",
            f"layer count mismatch: the model has {len(layers)} layers with weights "
            f"({_listing([layer.name for layer in layers]) or 'none'}), the file has {len(saved)} "
            f"({_listing([item[0] for item in saved]) or 'none'}).",
            WeightsMismatchError,
        )
    return list(zip(layers, saved))


def _load_topological(model, h5file, filename, skip_mismatch, prefer_names=False):
    """Load by position (or by matching names, see `_pair_layers`); returns the pairs."""
    check = FileCheck(filename)
    group = _weights_group(h5file, check, filename)
    pairs = _pair_layers(model, _stored_layers(check, group, filename), group, filename, prefer_names)
    plan = _Plan(check, filename, skip_mismatch)
    for k, (layer, (name, layer_group, weight_names)) in enumerate(pairs):
        label = f"layer #{k} ('{layer.name}' in the model, '{name}' in the file)"
        plan.layer(label, layer_group, weight_names, _legacy_weights(layer))
    plan.top_level(group, model, skip_count_mismatch=False)
    plan.run()
    return pairs


def _load_by_name(model, h5file, filename, skip_mismatch):
    check = FileCheck(filename)
    group = _weights_group(h5file, check, filename)
    index = {}
    for layer in model.layers:
        index.setdefault(layer.name, []).append(layer)
    plan = _Plan(check, filename, skip_mismatch)
    for k, (name, layer_group, weight_names) in enumerate(_stored_layers(check, group, filename)):
        for layer in index.get(name, []):
            label = f"layer #{k} ('{name}')"
            plan.layer(label, layer_group, weight_names, _legacy_weights(layer), skip_count_mismatch=skip_mismatch)
    plan.top_level(group, model, skip_count_mismatch=skip_mismatch)
    plan.run()


def load_weights(model, path, by_name=False, skip_mismatch=False):
    """Load legacy `.h5` weights (weights-only or whole-model file) into a built model.

    By position of the layers that have weights (Keras's topological loading), or with
    `by_name=True` into the layers of the same name. `skip_mismatch=True` skips, with a warning
    naming each, the weights whose shape differs (by name: also layers whose weight count
    differs); otherwise any mismatch raises before anything is loaded.

    >>> legacy_h5.load_weights(model, "weights.h5", by_name=True, skip_mismatch=True)
    """
    path = os.fspath(path)
    if not model.built:
        raise NotBuiltError(f"Cannot load weights from {path} into model '{model.name}' before it is built: call it on a batch of data or build() it first.")
    with _open(path) as h5file, _reading(path, "/"):
        if by_name:
            _load_by_name(model, h5file, path, skip_mismatch)
        else:
            _load_topological(model, h5file, path, skip_mismatch)


# ------------------------------------------------------------------------------- loading models
def load(path, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model from a whole-model legacy `.h5` file: architecture, weights and, with
    `compile=True`, the compiled loss/metrics and the optimizer state training resumes from.

    >>> model = legacy_h5.load("model.h5")
    """
    path = os.fspath(path)
    with _open(path) as h5file, _reading(path, "/"):
        if "model_config" not in h5file.attrs:
            raise _error(
                path,
                "model_config",
                "not found: this HDF5 file holds no model architecture (a weights-only file? load it into a model built in code with load_weights()).",
            )
        keras_version = None
        if "keras_version" in h5file.attrs:
            keras_version = _text(_attribute(h5file, "keras_version", path), path, "keras_version")
        model = _build_model(_json_attribute(h5file, "model_config", path), keras_version, path, custom_objects, safe_mode)
        pairs = _load_topological(model, h5file, path, skip_mismatch=False, prefer_names=True)
        if compile and "training_config" in h5file.attrs:
            training_config = _json_attribute(h5file, "training_config", path)
            _compile(model, training_config, path, custom_objects)
            check = FileCheck(path)
            group = check.group(h5file, OPTIMIZER_WEIGHTS)
            if group is not None:
                writer_variables = _writer_trainable_variables(model, pairs)
                _restore_optimizer(model.optimizer, group, check, path, keras_version, training_config, writer_variables)
    return model


def _build_model(config, keras_version, path, custom_objects, safe_mode):
    try:
        config = keras2_config.convert_model_config(config, keras_version)
        with safe_mode_scope(safe_mode), registry.custom_object_scope(custom_objects):
            model = deserialize_keras_object(config, ("keras", "keras.models"), custom_objects, safe_mode)
    except KeramicError as error:
        raise type(error)(f"{path}: entry 'model_config': {error}") from None
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as error:
        message = f"cannot rebuild the model ({type(error).__name__}: {error})."
        raise _error(path, "model_config", message, ConfigError) from error
    if not callable(getattr(model, "compile_from_config", None)):
        raise _error(path, "model_config", f"describes a {type(model).__name__}, not a model.", ConfigError)
    if not model.built:
        message = f"model '{model.name}' is not built after loading its config, so its weights cannot be restored."
        raise _error(path, "model_config", message, NotBuiltError)
    return model


def _compile(model, training_config, path, custom_objects):
    try:
        compile_config = keras2_training.convert_training_config(training_config, model.output_names, custom_objects)
        with registry.custom_object_scope(custom_objects):
            model.compile_from_config(compile_config, custom_objects)
    except KeramicError as error:
        raise type(error)(f"{path}: entry 'training_config': {error}") from None
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        message = f"cannot compile the model ({type(error).__name__}: {error})."
        raise _error(path, "training_config", message, ConfigError) from error


def _writer_trainable_variables(model, pairs):
    """The trainable variables in the order the file's writer built its optimizer with: the
    model's own, then each layer's in the file's layer order (both Keras generations)."""
    ordered, seen = [], set()
    own = [v for v in model._own_trainable if v.trainable] if model.trainable else []
    for variable in own + [v for layer, _ in pairs for v in layer.trainable_weights]:
        if id(variable) not in seen:
            seen.add(id(variable))
            ordered.append(variable)
    current = model.trainable_variables
    if {id(v) for v in current} != seen:
        return current
    return ordered


def _restore_optimizer(optimizer, group, check, path, keras_version, training_config, writer_variables):
    names = _names(group, "weight_names", path)
    datasets = [_dataset(check, group, name, path) for name in names]
    writer = legacy_optimizer_weights.writer_of(names, keras_version, training_config.get("optimizer_config"))
    try:
        pairs = legacy_optimizer_weights.plan(optimizer, writer_variables, names, [d.shape for d in datasets], writer)
    except legacy_optimizer_weights.OptimizerLayoutError as error:
        warnings.warn(
            f"{path}: entry '{group.name}': the saved optimizer state was not restored ({error}) The model is compiled with a freshly initialised optimizer.",
            stacklevel=3,
        )
        return
    for position, variable in pairs:
        _read(datasets[position], variable, path)


# ------------------------------------------------------------------------------- the table rows
def _hdf5_with(path, test):
    """Whether `path` is an HDF5 file for which `test(h5file)` holds (a damaged one raises, naming it)."""
    if not os.path.isfile(path) or table.head(path) != table.HDF5_MAGIC:
        return False
    with h5_weights.open_hdf5(path, f"{path}:") as h5file, _reading(path, "/"):
        return test(h5file)


def _legacy_compile_config(training_config):
    """tf.keras's `training_config` in the shape of a Keras 3 `compile_config`, for the report only."""
    if not isinstance(training_config, dict):
        return None
    return {
        "optimizer": training_config.get("optimizer_config"),
        "loss": training_config.get("loss"),
        "metrics": training_config.get("metrics"),
        "loss_weights": training_config.get("loss_weights"),
    }


def inspect_model(path):
    """A legacy whole-model file: its (untranslated) config, training config, versions and weights layout."""
    with h5_weights.open_hdf5(path, f"{path}:") as h5file, _reading(path, "/"):
        config = _json_attribute(h5file, "model_config", path)
        if isinstance(config, dict) and "training_config" in h5file.attrs:
            config = dict(config, compile_config=_legacy_compile_config(_json_attribute(h5file, "training_config", path)))
        metadata = {"keras_version": inspect_hdf5.text(h5file.attrs.get("keras_version"))}
        weights = inspect_hdf5.legacy_weights_summary(h5file, path)
    return inspect_summary.summarize(path, "legacy_h5", LEGACY_MODEL.description, config, metadata, weights, entry="model_config")


def inspect_weights(path):
    with h5_weights.open_hdf5(path, f"{path}:") as h5file, _reading(path, "/"):
        metadata = {"keras_version": inspect_hdf5.text(h5file.attrs.get("keras_version"))}
        weights = inspect_hdf5.legacy_weights_summary(h5file, path)
    return inspect_summary.summarize(path, "legacy_weights", LEGACY_WEIGHTS.description, metadata=metadata, weights=weights)


def load_weights_into(model, path, skip_mismatch=False, by_name=False, verify=True):
    return load_weights(model, path, by_name=by_name, skip_mismatch=skip_mismatch)


LEGACY_MODEL = table.register(
    table.FileFormat(
        name="legacy_h5",
        title="legacy HDF5 model",
        description="legacy HDF5 model (.h5: model_config, model_weights, optimizer_weights)",
        recognise=lambda path: _hdf5_with(path, is_legacy_model_file),
        suffixes=(".h5", ".hdf5"),
        holds_model=True,
        save=save,
        load=load,
        load_weights=load_weights_into,
        inspect=inspect_model,
        order=30,
    )
)
LEGACY_WEIGHTS = table.register(
    table.FileFormat(
        name="legacy_weights",
        title="legacy HDF5 weights, by layer name",
        description="legacy HDF5 weights, by layer name (tf.keras `save_weights('w.h5')`)",
        recognise=lambda path: _hdf5_with(path, is_legacy_weights_file),
        suffixes=(".h5", ".hdf5"),
        save=save_weights,
        load_weights=load_weights_into,
        inspect=inspect_weights,
        hint="an HDF5 file without a model architecture (no 'model_config' attribute), e.g. a weights file: build "
        "the model in code and call `model.load_weights(...)` on it.",
        order=31,
    )
)

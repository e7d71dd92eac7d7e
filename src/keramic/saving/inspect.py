"""`keramic inspect`: what a saved file holds, told from its metadata alone.

It reads the JSON members and walks the HDF5 tree of group names, dataset shapes and dtypes, and
stops there: no tensor data is read, no model is built and no name found in the file is imported
or resolved, so inspecting a file from anywhere is safe and costs milliseconds even for big models.

>>> report = inspect_file("model.keras")
>>> print(format_report(report))
"""

import json
import math
import os
import re
import zipfile

import h5py

from keramic import backend
from keramic.errors import FileFormatError
from keramic.saving import deferred
from keramic.saving.api import sniff
from keramic.saving.formats import checkpoint, keras_v3
from keramic.saving.stores.h5_weights import FileCheck
from keramic.saving.stores.zip_member import open_member

MAX_JSON_BYTES = 64 * 2**20  # far above any real config; refuses zip bombs and stray huge files
MAX_INFLATION = 1000  # compressed weights members may expand at most this much (zip-bomb guard)

FORMATS = {
    "keras_v3": "Keras 3 whole-model archive (.keras zip: metadata.json, config.json, model.weights.h5)",
    "weights_h5": "Keras 3 weights file (.weights.h5)",
    "keras_directory": "Keras 3 whole model in directory form (config.json, metadata.json, model.weights.h5)",
    "config_json": "model config JSON (model.to_json() / config.json): architecture only, no weights",
    "keramic_checkpoint": "keramic checkpoint directory (checkpoint.json index + safetensors data files)",
}


def inspect_file(path):
    """A JSON-ready dict describing the saved file at `path` (format found from its bytes)."""
    path = os.fspath(path)
    kind = sniff(path)
    if kind == "zip":
        report = _inspect_archive(path)
    elif kind == "hdf5":
        report = _inspect_weights_file(path)
    elif kind == "json":
        report = _summarize(path, "config_json", config=_read_config_file(path))
    elif checkpoint.is_checkpoint(path):
        report = _inspect_checkpoint(path)
    else:
        report = _inspect_directory(path)
    report["file_bytes"] = _size(path)
    return report


def _size(path):
    """Bytes on disk; for the directory form, of the files directly inside it."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file(follow_symlinks=False))


# ------------------------------------------------------------------ readers
def _inspect_archive(path):
    with keras_v3.open_archive(path) as archive:
        names = set(archive.namelist())
        if keras_v3.CONFIG not in names:
            raise FileFormatError(f"{path}: the archive has no '{keras_v3.CONFIG}' entry, so it is not a Keras model file.")
        config = _read_json_member(path, archive, keras_v3.CONFIG)
        metadata = _read_json_member(path, archive, keras_v3.METADATA) if keras_v3.METADATA in names else {}
        if not isinstance(metadata, dict):
            raise FileFormatError(f"{path}: entry '{keras_v3.METADATA}': expected a JSON object, found {type(metadata).__name__}.")
        weights = None
        if keras_v3.WEIGHTS in names:
            weights = _read_weights_member(path, archive, keras_v3.WEIGHTS)
    return _summarize(path, "keras_v3", config=config, metadata=metadata, weights=weights)


def _inspect_directory(path):
    """The `.keras` entries written as plain files (`save_model(..., zipped=False)`)."""
    config_path = os.path.join(path, keras_v3.CONFIG)
    if not os.path.isfile(config_path):
        raise FileFormatError(
            f"{path}: a directory without '{keras_v3.CONFIG}' or '{checkpoint.INDEX}'; `keramic inspect` reads .keras "
            "archives (or their directory form), checkpoint directories, .weights.h5 files and config JSON files."
        )
    config = _parse_json(path, keras_v3.CONFIG, _read_bounded_file(config_path))
    metadata_path = os.path.join(path, keras_v3.METADATA)
    metadata = _parse_json(path, keras_v3.METADATA, _read_bounded_file(metadata_path)) if os.path.isfile(metadata_path) else {}
    if not isinstance(metadata, dict):
        raise FileFormatError(f"{path}: entry '{keras_v3.METADATA}': expected a JSON object, found {type(metadata).__name__}.")
    weights = None
    weights_path = os.path.join(path, keras_v3.WEIGHTS)
    if os.path.isfile(weights_path):
        with _open_hdf5(weights_path) as h5file:
            weights = _weights_summary(h5file, weights_path)
    return _summarize(path, "keras_directory", config=config, metadata=metadata, weights=weights)


def _tensor_size(path, key, record):
    """(elements, bytes) of one index entry, whose shape and dtype are checked first."""
    shape, dtype = record.get("shape"), record.get("dtype")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise FileFormatError(f"{os.path.join(path, checkpoint.INDEX)}: entry 'tensors/{key}': shape {shape!r} is not a list of sizes.")
    try:
        itemsize = backend.torch_dtype(dtype).itemsize
    except (KeyError, ValueError, TypeError):
        raise FileFormatError(f"{os.path.join(path, checkpoint.INDEX)}: entry 'tensors/{key}': unknown dtype {dtype!r}.") from None
    elements = math.prod(shape)
    return elements, elements * itemsize


def _inspect_checkpoint(path):
    """A checkpoint's index, grouped: the model's variables by top-level attribute, the optimizer's
    state, metrics and the training state (JSON values as stored; RNG states only named)."""
    index = checkpoint.read_index(path)
    special = (deferred.OPTIMIZER_PREFIX, deferred.METRICS_PREFIX, checkpoint.TRAINING_STATE)
    totals = {group: [0, 0, 0] for group in ("model", *special)}  # tensors, elements, bytes
    rows, dtypes, optimizer_class = {}, {}, None
    for key, record in index["tensors"].items():
        counts = (1, *_tensor_size(path, key, record))
        parts = key.split("/")
        group = parts[0] if parts[0] in special else "model"
        totals[group] = [total + count for total, count in zip(totals[group], counts)]
        if group == "model":
            dtypes[record["dtype"]] = dtypes.get(record["dtype"], 0) + 1
            # A Functional or Sequential model's layers are `layers/<index>`: one row each.
            row = "(model's own variables)" if len(parts) == 1 else "/".join(parts[:2]) if parts[0] == "layers" and len(parts) > 2 else parts[0]
            rows[row] = [total + count for total, count in zip(rows.get(row, [0, 0, 0]), counts)]
        elif group == deferred.OPTIMIZER_PREFIX and len(parts) > 2:
            optimizer_class = parts[1]
    training_state = {
        name: description.get("value") if isinstance(description, dict) and "value" in description else "(RNG state)"
        for name, description in index.get("training_state", {}).items()
    }
    metadata = index.get("metadata") if isinstance(index.get("metadata"), dict) else {}
    return {
        "file": path,
        "format": "keramic_checkpoint",
        "format_description": FORMATS["keramic_checkpoint"],
        "keramic_version": _text(index.get("keramic_version")),
        "model_class": _text(index.get("model_class")),
        "files": [{"name": name, "bytes": record["size"], "sha256": record["sha256"]} for name, record in index["files"].items()],
        "tensors": len(index["tensors"]),
        "layers": [{"attribute": name, "tensors": row[0], "params": row[1], "bytes": row[2]} for name, row in rows.items()],
        "total_params": totals["model"][1],
        "weights_bytes": totals["model"][2],
        "weight_dtypes": dtypes,
        "optimizer": {"class_name": optimizer_class, "variables": totals[deferred.OPTIMIZER_PREFIX][0], "bytes": totals[deferred.OPTIMIZER_PREFIX][2]},
        "metric_variables": totals[deferred.METRICS_PREFIX][0],
        "training_state": training_state,
        "metadata": metadata,
        "total_weight_bytes": sum(total[2] for total in totals.values()),
    }


def _format_checkpoint(report):
    lines = [
        f"File:       {report['file']} ({_number(report['file_bytes'])} bytes in {len(report['files'])} data file(s) and the index)",
        f"Format:     {report['format_description']}",
        f"Saved by:   keramic {report['keramic_version'] or '(version not recorded)'}",
        f"Model:      {report['model_class'] or '(class not recorded)'} (keys are attribute paths; no config is stored)",
    ]
    if report["layers"]:
        lines.append("Layers:")
        width = max(len(row["attribute"]) for row in report["layers"]) + 2
        for row in report["layers"]:
            lines.append(f"  {row['attribute']:<{width}}{row['tensors']:>4} tensors{_number(row['params']):>14} params")
    lines.append(f"Params:     {report['total_params']:,} ({report['weights_bytes']:,} bytes of weights)")
    if report["weight_dtypes"]:
        lines.append("Dtypes:     " + ", ".join(f"{name} x{count}" for name, count in sorted(report["weight_dtypes"].items())))
    optimizer = report["optimizer"]
    if optimizer["variables"]:
        lines.append(f"Optimizer:  {optimizer['class_name'] or '(class not recorded)'}; state: {optimizer['variables']} variables, {optimizer['bytes']:,} bytes")
    else:
        lines.append("Optimizer:  no state stored")
    lines.append(f"Metrics:    {report['metric_variables']} variables")
    if report["training_state"]:
        state = ", ".join(f"{name}={json.dumps(value) if value != '(RNG state)' else value}" for name, value in report["training_state"].items())
        lines.append(f"Training:   {state}")
    if report["metadata"]:
        lines.append(f"Metadata:   {json.dumps(report['metadata'], sort_keys=True)}")
    lines.append(f"Total:      {report['total_weight_bytes']:,} bytes of tensors")
    return "\n".join(lines)


def _read_config_file(path):
    config = _parse_json(path, path, _read_bounded_file(path))
    if isinstance(config, dict) and "weight_map" in config:
        raise FileFormatError(
            f"{path}: a sharded weights index (*.weights.json); `keramic inspect` reads single .weights.h5 files, "
            "so inspect one of the shards it lists."
        )
    return config


def _open_hdf5(path):
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise FileFormatError(f"{path}: not a readable HDF5 file ({error}).") from None


def _inspect_weights_file(path):
    with _open_hdf5(path) as h5file:
        return _summarize(path, "weights_h5", weights=_weights_summary(h5file, path))


def _read_bounded_file(path):
    if os.path.getsize(path) > MAX_JSON_BYTES:
        raise FileFormatError(f"{path}: {os.path.getsize(path):,} bytes is too large for a config JSON file (limit {MAX_JSON_BYTES:,}).")
    with open(path, "rb") as handle:
        return handle.read()


def _read_json_member(path, archive, name):
    """A JSON member's value, read with a hard size limit that does not trust the zip header."""
    info = archive.getinfo(name)
    if info.file_size > MAX_JSON_BYTES:
        raise FileFormatError(f"{path}: entry '{name}' declares {info.file_size:,} bytes (limit {MAX_JSON_BYTES:,}).")
    try:
        with archive.open(info) as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise FileFormatError(f"{path}: entry '{name}' cannot be read ({error}).") from None
    if len(data) > MAX_JSON_BYTES:
        raise FileFormatError(f"{path}: entry '{name}' is larger than its header says (limit {MAX_JSON_BYTES:,} bytes).")
    return _parse_json(path, name, data)


def _parse_json(path, entry, data):
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        where = f"{path}" if entry == path else f"{path}: entry '{entry}'"
        raise FileFormatError(f"{where}: not valid JSON ({error}).") from None


def _read_weights_member(path, archive, name):
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_INFLATION * max(info.compress_size, 1):
        raise FileFormatError(
            f"{path}: entry '{name}' would expand from {info.compress_size:,} to {info.file_size:,} bytes; refusing it as a zip bomb."
        )
    with open_member(path, archive, name) as handle:
        try:
            h5file = h5py.File(handle, "r")
        except OSError as error:
            raise FileFormatError(f"{path}: entry '{name}' is not a readable HDF5 file ({error}).") from None
        with h5file:
            return _weights_summary(h5file, f"{path}:{name}")


# ------------------------------------------------------------ HDF5 metadata
def _natural_key(name):
    """'dense_2' before 'dense_10': HDF5 lists names as plain strings."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (None if value is None else str(value))


class _Walker:
    """Walks an HDF5 tree by hard links only, each object once, reading headers and never data."""

    def __init__(self, filename):
        self.check = FileCheck(filename)

    def child(self, group, name):
        """The group or dataset `name` in `group`, or None; links that could leave the file are refused."""
        link = group.get(name, getlink=True)
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            raise self.check.error(f"{group.name.rstrip('/')}/{name}", f"{type(link).__name__} entries are not allowed in a weights file.")
        node = group[name]
        return self.check.dataset(group, name) if isinstance(node, h5py.Dataset) else node

    def children(self, group):
        """(name, group or dataset) pairs in natural name order."""
        return [(name, self.child(group, name)) for name in sorted(group.keys(), key=_natural_key)]

    def stats(self, group, skip=()):
        """Parameters, bytes and dtype counts of every dataset below `group` (children in `skip` left out)."""
        params, size, dtypes = 0, 0, {}
        seen, stack = set(), [group]
        while stack:
            node = stack.pop()
            if node.id in seen:
                continue
            seen.add(node.id)
            for name, child in self.children(node):
                if node is group and name in skip:
                    continue
                if isinstance(child, h5py.Group):
                    stack.append(child)
                    continue
                count = int(child.size or 0)
                params += count
                size += count * child.dtype.itemsize
                dtype = _dataset_dtype(child)
                dtypes[dtype] = dtypes.get(dtype, 0) + 1
        return params, size, dtypes

    def vars_group(self, group):
        found = self.child(group, "vars")
        return found if isinstance(found, h5py.Group) else None

    def name_of(self, group):
        """The informational `name` attribute Keras puts on an object's `vars` group (the layer's name)."""
        found = self.vars_group(group)
        return None if found is None else _text(found.attrs.get("name"))

    def objects(self, root):
        """(path, group) of each saved object below `root`, in path order: a group holding `vars` is an
        object, one without is a container (`layers`, a list attribute) whose items are objects."""
        found, seen, stack = [], {root.id}, [("", root)]
        while stack:
            path, group = stack.pop()
            for name, child in self.children(group):
                if name == "vars" or not isinstance(child, h5py.Group) or child.id in seen or (group is root and name == "optimizer"):
                    continue
                seen.add(child.id)
                child_path = f"{path}/{name}" if path else name
                if self.vars_group(child) is not None:
                    found.append((child_path, child))
                else:
                    stack.append((child_path, child))
        return sorted(found, key=lambda item: _natural_key(item[0]))


def _dataset_dtype(dataset):
    if _text(dataset.attrs.get("dtype")) == "bfloat16":
        return "bfloat16"
    return dataset.dtype.name if dataset.dtype.names is None else str(dataset.dtype)


def _weights_summary(h5file, filename):
    if h5file.get("model_weights", getlink=True) is not None or "layer_names" in h5file.attrs:
        raise FileFormatError(
            f"{filename}: a legacy HDF5 (.h5) file, which `keramic inspect` does not read yet; "
            "`keramic convert` it to .keras (or load it with keramic.models.load_model) to inspect it."
        )
    walker = _Walker(filename)
    params, size, dtypes = walker.stats(h5file, skip=("optimizer",))
    objects = []
    for path, group in walker.objects(h5file):
        object_params, object_bytes, _ = walker.stats(group)
        objects.append({"path": path, "name": walker.name_of(group), "params": object_params, "bytes": object_bytes})
    own = walker.vars_group(h5file)
    own_params, own_bytes, _ = (0, 0, {}) if own is None else walker.stats(own)
    optimizer = None
    optimizer_group = walker.child(h5file, "optimizer")
    if isinstance(optimizer_group, h5py.Group):
        _, optimizer_bytes, _ = walker.stats(optimizer_group)
        variables = walker.vars_group(optimizer_group)
        optimizer = {
            "name": walker.name_of(optimizer_group),
            "variables": 0 if variables is None else len(variables.keys()),
            "bytes": optimizer_bytes,
        }
    return {
        "model_name": walker.name_of(h5file),
        "objects": objects,
        "own_params": own_params,
        "own_bytes": own_bytes,
        "params": params,
        "bytes": size,
        "dtypes": dtypes,
        "optimizer": optimizer,
    }


# ------------------------------------------------------------- config JSON
def _is_envelope(value):
    return isinstance(value, dict) and "class_name" in value


def _is_model_envelope(value):
    return _is_envelope(value) and isinstance(value["class_name"], str)


def _describe(value):
    """A short, JSON-ready name for a serialized loss, metric or optimizer: never resolved."""
    if _is_envelope(value):
        if value["class_name"] == "function":
            return value.get("config")
        return value["class_name"]
    if isinstance(value, dict):
        return {key: _describe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_describe(item) for item in value]
    return value


def _layer_entries(config):
    """(name, class_name, config) of each top-level layer of a Functional or Sequential config."""
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        return None
    entries = []
    for layer in layers:
        if not _is_envelope(layer) or not isinstance(layer["class_name"], str):
            raise FileFormatError(f"a layer entry is not a serialized object: {str(layer)[:200]}")
        layer_config = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        name = layer.get("name", layer_config.get("name"))
        if not isinstance(name, str):
            raise FileFormatError(f"a {layer['class_name']} layer entry has no name (found {str(name)[:100]}).")
        entries.append((name, layer["class_name"], layer_config))
    return entries


def _is_leaf(reference):
    return isinstance(reference, list) and len(reference) == 3 and isinstance(reference[0], str)


def _leaves(structure, key=None):
    """(key, layer name) of every `[layer, node, tensor]` reference in an inputs/outputs structure."""
    if _is_leaf(structure):
        return [(key, structure[0])]
    if isinstance(structure, dict):
        return [leaf for name, item in structure.items() for leaf in _leaves(item, name)]
    if isinstance(structure, list):
        return [leaf for item in structure for leaf in _leaves(item, key)]
    return []


def _input_shape(layer_config):
    for key in ("batch_shape", "batch_input_shape"):
        if key in layer_config:
            return layer_config[key]
    if "input_shape" in layer_config:
        return [None, *layer_config["input_shape"]]
    return None


def _inputs_outputs(config, entries):
    """Inputs (name, shape, dtype) and outputs (layer name, class) read straight from the config."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    by_name = {name: (class_name, layer_config) for name, class_name, layer_config in (entries or [])}

    def describe_input(key, name):
        layer_config = by_name.get(name, (None, {}))[1]
        return {"key": key, "name": name, "shape": _input_shape(layer_config), "dtype": layer_config.get("dtype")}

    def describe_output(key, name):
        return {"key": key, "name": name, "class_name": by_name.get(name, (None, {}))[0]}

    if "input_layers" in inner or "output_layers" in inner:
        inputs = [describe_input(key, name) for key, name in _leaves(inner.get("input_layers"))]
        outputs = [describe_output(key, name) for key, name in _leaves(inner.get("output_layers"))]
        return inputs, outputs
    if entries:
        first_name, first_class, _ = entries[0]
        if first_class == "InputLayer":
            inputs = [describe_input(None, first_name)]
        else:
            inputs = [{"key": None, "name": None, "shape": inner.get("build_input_shape"), "dtype": None}]
        return inputs, [describe_output(None, entries[-1][0])]
    build_config = config.get("build_config")
    if isinstance(build_config, dict) and "input_shape" in build_config:
        return [{"key": None, "name": None, "shape": build_config["input_shape"], "dtype": None}], None
    if isinstance(build_config, dict) and isinstance(build_config.get("shapes_dict"), dict):
        shapes = build_config["shapes_dict"]
        return [{"key": key, "name": None, "shape": shape, "dtype": None} for key, shape in shapes.items()], None
    return None, None


def _optimizer_config(compile_config):
    optimizer = None if compile_config is None else compile_config.get("optimizer")
    if optimizer is None:
        return None
    if isinstance(optimizer, str):
        return {"class_name": optimizer, "name": None, "learning_rate": None}
    settings = optimizer.get("config") if isinstance(optimizer.get("config"), dict) else {}
    learning_rate = settings.get("learning_rate")
    return {
        "class_name": optimizer.get("class_name"),
        "name": settings.get("name"),
        "learning_rate": _describe(learning_rate) if _is_envelope(learning_rate) else learning_rate,
    }


# ------------------------------------------------------------------ report
def _summarize(path, file_format, config=None, metadata=None, weights=None):
    entry = None if file_format == "config_json" else keras_v3.CONFIG
    if config is not None and not _is_model_envelope(config):
        where = f"{path}: entry '{entry}'" if entry else path
        raise FileFormatError(f"{where}: expected a serialized model (a JSON object with 'class_name' and 'config').")
    metadata = metadata or {}
    report = {
        "file": path,
        "format": file_format,
        "format_description": FORMATS[file_format],
        "keras_version": _text(metadata.get("keras_version") or (config or {}).get("keras_version")),
        "keramic_version": _text(metadata.get("keramic_version")),
        "date_saved": _text(metadata.get("date_saved")),
        "model": None,
        "inputs": None,
        "outputs": None,
        "layers": [],
        "total_params": None if weights is None else weights["params"],
        "weights_bytes": None if weights is None else weights["bytes"],
        "weight_dtypes": None if weights is None else weights["dtypes"],
        "compile_config": None,
        "optimizer": None,
        "total_weight_bytes": None,
    }
    entries = None
    if config is not None:
        compile_config = config.get("compile_config")
        compile_config = compile_config if isinstance(compile_config, dict) and compile_config else None
        try:
            entries = _layer_entries(config)
            report["inputs"], report["outputs"] = _inputs_outputs(config, entries)
            report["optimizer"] = _optimizer_config(compile_config)
        except (FileFormatError, TypeError, KeyError, AttributeError, ValueError) as error:
            raise FileFormatError(f"{path}{f': entry {entry!r}' if entry else ''}: unexpected config structure ({error}).") from None
        inner = config.get("config") if isinstance(config.get("config"), dict) else {}
        report["model"] = {
            "class_name": config["class_name"],
            "module": config.get("module"),
            "registered_name": config.get("registered_name"),
            "name": inner.get("name"),
        }
        report["compile_config"] = compile_config
    elif weights is not None:
        report["model"] = {"class_name": None, "module": None, "registered_name": None, "name": weights["model_name"]}
    report["layers"] = _layer_rows(entries, weights)
    if weights is not None:
        stored = weights["optimizer"]
        if stored is not None or report["optimizer"] is not None:
            optimizer = report["optimizer"] or {"class_name": None, "name": stored["name"], "learning_rate": None}
            optimizer["state_in_file"] = stored is not None and stored["variables"] > 0
            optimizer["variables"] = 0 if stored is None else stored["variables"]
            optimizer["bytes"] = 0 if stored is None else stored["bytes"]
            report["optimizer"] = optimizer
        report["total_weight_bytes"] = weights["bytes"] + (0 if stored is None else stored["bytes"])
    return report


def _layer_rows(entries, weights):
    """One row per top-level layer: names and classes from the config, sizes from the weights file
    (matched by the `name` attribute Keras writes on each `vars` group)."""
    objects = list(weights["objects"]) if weights is not None else []
    rows = []
    if weights is not None and weights["own_params"]:
        rows.append({"name": weights["model_name"], "class_name": "(model's own variables)", "path": "vars",
                     "params": weights["own_params"], "bytes": weights["own_bytes"]})
    for name, class_name, _ in entries or []:
        match = next((item for item in objects if item["name"] == name), None)
        if match is not None:
            objects.remove(match)
        rows.append({
            "name": name,
            "class_name": class_name,
            "path": None if match is None else match["path"],
            "params": None if weights is None else (0 if match is None else match["params"]),
            "bytes": None if weights is None else (0 if match is None else match["bytes"]),
        })
    rows.extend({"name": item["name"], "class_name": None, "path": item["path"], "params": item["params"], "bytes": item["bytes"]} for item in objects)
    return rows


def _number(value):
    return "n/a" if value is None else f"{value:,}"


def _shape(shape):
    if not isinstance(shape, list):
        return str(shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def format_report(report):
    """The report as aligned text for people (`keramic inspect FILE`)."""
    if report["format"] == "keramic_checkpoint":
        return _format_checkpoint(report)
    lines = [f"File:       {report['file']} ({_number(report['file_bytes'])} bytes)", f"Format:     {report['format_description']}"]
    saved_by = [f"Keras {report['keras_version']}" if report["keras_version"] else None,
                f"keramic {report['keramic_version']}" if report["keramic_version"] else None]
    saved_by = ", ".join(item for item in saved_by if item) or "not recorded"
    if report["date_saved"]:
        saved_by += f", on {report['date_saved']}"
    lines.append(f"Saved by:   {saved_by}")
    model = report["model"] or {}
    if model.get("class_name"):
        module = f" from {model['module']}" if model.get("module") else ""
        registered = f", registered as {model['registered_name']!r}" if model.get("registered_name") not in (None, model["class_name"]) else ""
        lines.append(f"Model:      {model.get('name')!r} ({model['class_name']}{module}{registered})")
    elif model.get("name"):
        lines.append(f"Model:      {model['name']!r} (class not recorded in a weights file)")
    for title, items in (("Inputs", report["inputs"]), ("Outputs", report["outputs"])):
        if items:
            for index, item in enumerate(items):
                label = f"{item['key']}: " if item.get("key") else ""
                if title == "Inputs":
                    text = f"{label}{item['name'] or '(unnamed)'} shape={_shape(item['shape'])} dtype={item['dtype'] or 'n/a'}"
                else:
                    text = f"{label}{item['name']} ({item['class_name'] or '?'})"
                lines.append(f"{(title + ':') if index == 0 else '':<12}{text}")
        elif report["model"] is not None and report["format"] != "weights_h5":
            lines.append(f"{title + ':':<12}not recorded (known only by running the model)")
    if report["layers"]:
        lines.append("Layers:")
        width = max(len(str(row["name"] or row["path"])) for row in report["layers"]) + 2
        class_width = max(len(str(row["class_name"] or "")) for row in report["layers"]) + 2
        for row in report["layers"]:
            name = str(row["name"] or row["path"])
            where = f"  [{row['path']}]" if row["class_name"] is None else ""
            lines.append(f"  {name:<{width}}{(row['class_name'] or ''):<{class_width}}{_number(row['params']):>12} params{where}")
    if report["total_params"] is None:
        lines.append("Params:     n/a (the file holds no weights)")
    else:
        lines.append(f"Params:     {report['total_params']:,} ({report['weights_bytes']:,} bytes of weights)")
    if report["weight_dtypes"]:
        lines.append("Dtypes:     " + ", ".join(f"{name} x{count}" for name, count in sorted(report["weight_dtypes"].items())))
    compile_config = report["compile_config"]
    if compile_config:
        parts = [f"loss={json.dumps(_describe(compile_config.get('loss')))}"]
        if compile_config.get("metrics"):
            parts.append(f"metrics={json.dumps(_describe(compile_config['metrics']))}")
        if compile_config.get("loss_weights"):
            parts.append(f"loss_weights={json.dumps(compile_config['loss_weights'])}")
        lines.append("Compile:    " + ", ".join(parts))
    elif report["format"] != "weights_h5":
        lines.append("Compile:    not compiled")
    optimizer = report["optimizer"]
    if optimizer:
        text = str(optimizer["class_name"] or "(class not recorded)")
        if optimizer.get("name"):
            text += f" {optimizer['name']!r}"
        learning_rate = optimizer.get("learning_rate")
        if learning_rate is not None:
            text += f", learning_rate={learning_rate:.7g}" if isinstance(learning_rate, float) else f", learning_rate={learning_rate}"
        if "state_in_file" in optimizer:
            state = f"{optimizer['variables']} variables, {_number(optimizer['bytes'])} bytes" if optimizer["state_in_file"] else "none"
            text += f"; state in file: {state}"
        lines.append(f"Optimizer:  {text}")
    if report["total_weight_bytes"] is not None:
        what = "weights and optimizer state" if optimizer and optimizer.get("state_in_file") else "weights"
        lines.append(f"Total:      {report['total_weight_bytes']:,} bytes of {what}")
    return "\n".join(lines)


"""Reports of saved models from their config and a weights summary, for `keramic inspect`.

Everything here reads plain JSON values: no name found in a file is imported or resolved, and a
config of unexpected shape is a FileFormatError naming the file and the entry, never a crash.
"""

from keramic.errors import FileFormatError
from keramic.saving.inspect_hdf5 import text


def is_envelope(value):
    return isinstance(value, dict) and "class_name" in value


def is_model_envelope(value):
    return is_envelope(value) and isinstance(value["class_name"], str)


def describe(value):
    """A short, JSON-ready name for a serialized loss, metric or optimizer: never resolved."""
    if is_envelope(value):
        if value["class_name"] == "function":
            return value.get("config")
        return value["class_name"]
    if isinstance(value, dict):
        return {key: describe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [describe(item) for item in value]
    return value


def layer_entries(config):
    """(name, class_name, config) of each top-level layer of a Functional or Sequential config."""
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        return None
    entries = []
    for layer in layers:
        if not is_envelope(layer) or not isinstance(layer["class_name"], str):
            raise FileFormatError(f"a layer entry is not a serialized object: {str(layer)[:200]}")
        layer_config = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        name = layer.get("name", layer_config.get("name"))
        if not isinstance(name, str):
            raise FileFormatError(f"a {layer['class_name']} layer entry has no name (found {str(name)[:100]}).")
        entries.append((name, layer["class_name"], layer_config))
    return entries


def is_leaf(reference):
    return isinstance(reference, list) and len(reference) == 3 and isinstance(reference[0], str)


def leaves(structure, key=None):
    """(key, layer name) of every `[layer, node, tensor]` reference in an inputs/outputs structure."""
    if is_leaf(structure):
        return [(key, structure[0])]
    if isinstance(structure, dict):
        return [leaf for name, item in structure.items() for leaf in leaves(item, name)]
    if isinstance(structure, list):
        return [leaf for item in structure for leaf in leaves(item, key)]
    return []


def input_shape(layer_config):
    for key in ("batch_shape", "batch_input_shape"):
        if key in layer_config:
            return layer_config[key]
    if "input_shape" in layer_config:
        return [None, *layer_config["input_shape"]]
    return None


def inputs_outputs(config, entries):
    """Inputs (name, shape, dtype) and outputs (layer name, class) read straight from the config."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    by_name = {name: (class_name, layer_config) for name, class_name, layer_config in (entries or [])}

    def describe_input(key, name):
        layer_config = by_name.get(name, (None, {}))[1]
        return {"key": key, "name": name, "shape": input_shape(layer_config), "dtype": layer_config.get("dtype")}

    def describe_output(key, name):
        return {"key": key, "name": name, "class_name": by_name.get(name, (None, {}))[0]}

    if "input_layers" in inner or "output_layers" in inner:
        inputs = [describe_input(key, name) for key, name in leaves(inner.get("input_layers"))]
        outputs = [describe_output(key, name) for key, name in leaves(inner.get("output_layers"))]
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


def optimizer_config(compile_config):
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
        "learning_rate": describe(learning_rate) if is_envelope(learning_rate) else learning_rate,
    }


def summarize(path, file_format, description, config=None, metadata=None, weights=None, entry=None):
    """The report of a model file: `config` (read from `entry` of `path`, None for the file itself),
    `metadata` (versions, date) and a weights summary, each optional."""
    if config is not None and not is_model_envelope(config):
        where = f"{path}: entry '{entry}'" if entry else path
        raise FileFormatError(f"{where}: expected a serialized model (a JSON object with 'class_name' and 'config').")
    metadata = metadata or {}
    report = {
        "file": path,
        "format": file_format,
        "format_description": description,
        "keras_version": text(metadata.get("keras_version") or (config or {}).get("keras_version")),
        "keramic_version": text(metadata.get("keramic_version")),
        "date_saved": text(metadata.get("date_saved")),
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
            entries = layer_entries(config)
            report["inputs"], report["outputs"] = inputs_outputs(config, entries)
            report["optimizer"] = optimizer_config(compile_config)
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
    report["layers"] = layer_rows(entries, weights)
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


def layer_rows(entries, weights):
    """One row per top-level layer: names and classes from the config, sizes from the weights file
    (matched by the `name` attribute Keras writes on each `vars` group)."""
    objects = list(weights["objects"]) if weights is not None else []
    rows = []
    if weights is not None and weights["own_params"]:
        rows.append(
            {
                "name": weights["model_name"],
                "class_name": "(model's own variables)",
                "path": "vars",
                "params": weights["own_params"],
                "bytes": weights["own_bytes"],
            }
        )
    for name, class_name, _ in entries or []:
        match = next((item for item in objects if item["name"] == name), None)
        if match is not None:
            objects.remove(match)
        rows.append(
            {
                "name": name,
                "class_name": class_name,
                "path": None if match is None else match["path"],
                "params": None if weights is None else (0 if match is None else match["params"]),
                "bytes": None if weights is None else (0 if match is None else match["bytes"]),
            }
        )
    rows.extend({"name": item["name"], "class_name": None, "path": item["path"], "params": item["params"], "bytes": item["bytes"]} for item in objects)
    return rows


def keyed_weights_summary(entries, itemsize_of):
    """A weights summary from `(key, dtype name, shape)` entries keyed `<object path>/vars/<key>`
    (safetensors files and their indexes); `itemsize_of(dtype name)` gives bytes per element."""
    objects, own, optimizer, dtypes = {}, [0, 0], None, {}
    params = size = 0
    for key, dtype, shape in entries:
        path, _, _ = key.rpartition("/vars/") if "/vars/" in key else ("", "", key)
        count = 1
        for dimension in shape:
            count *= int(dimension)
        nbytes = count * itemsize_of(dtype)
        if path == "optimizer" or path.startswith("optimizer/"):
            optimizer = optimizer or {"name": None, "variables": 0, "bytes": 0}
            optimizer["variables"] += 1
            optimizer["bytes"] += nbytes
            continue
        params, size = params + count, size + nbytes
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
        if not path:
            own[0], own[1] = own[0] + count, own[1] + nbytes
            continue
        row = objects.setdefault(path, {"path": path, "name": None, "params": 0, "bytes": 0})
        row["params"] += count
        row["bytes"] += nbytes
    return {
        "model_name": None,
        "objects": [objects[path] for path in sorted(objects)],
        "own_params": own[0],
        "own_bytes": own[1],
        "params": params,
        "bytes": size,
        "dtypes": dtypes,
        "optimizer": optimizer,
    }

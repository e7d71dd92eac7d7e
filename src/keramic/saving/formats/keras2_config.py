"""Keras 2 (tf.keras) configs -> the Keras 3 forms keramic's `from_config` methods read.

Legacy `.h5` files hold `model_config` and `training_config` in whatever form their writer used
(keras-legacy-h5-format.md sections 2 and 3). Keras 3 forms pass through unchanged, so one
conversion serves files from both writers; Keras 2 spellings that Keras 3 renamed or dropped are
rewritten here, in one place, instead of in every layer.
"""

from keramic.errors import ConfigError
from keramic.serialization import registry

_DROPPED_KEYS = ("shared_object_id", "__passive_serialization__")
_RNN_CLASSES = ("SimpleRNN", "GRU", "LSTM", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
# Optimizer config keys that only tf.keras optimizers had.
_TF_OPTIMIZER_KEYS = ("is_legacy_optimizer", "jit_compile")
_COMPILE_KEYS = ("loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly", "steps_per_execution", "jit_compile")


def keras_major_version(keras_version):
    """2 for tf.keras files, 3 for Keras 3 ones; None when the file does not say."""
    try:
        return int(str(keras_version).split(".")[0])
    except ValueError:
        return None


# ------------------------------------------------------------------------------- model config
def convert_model_config(config, keras_version=None):
    """A legacy file's `model_config` in the Keras 3 form (Keras 3 configs come back unchanged).

    >>> convert_model_config({"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4]}}, "2.15.0")
    {'class_name': 'InputLayer', 'config': {'batch_shape': [None, 4]}}
    """
    major = keras_major_version(keras_version)
    return _convert(config, None if major is None else major < 3)


def _convert(value, keras2):
    """Walk a config; every `{class_name, config}` object gets its class's Keras 2 fix-ups."""
    if isinstance(value, list):
        return [_convert(item, keras2) for item in value]
    if not isinstance(value, dict):
        return value
    value = {key: item for key, item in value.items() if key not in _DROPPED_KEYS}
    class_name = value.get("class_name")
    if not isinstance(class_name, str) or "config" not in value:
        return {key: _convert(item, keras2) for key, item in value.items()}
    inner = value["config"]
    if class_name == "Sequential" and isinstance(inner, list):
        inner = {"layers": inner}  # the oldest Keras 2 Sequential config is the bare layer list
    if isinstance(inner, dict) and "layers" in inner and "input_layers" in inner:
        converted = dict(value, config=_convert_functional(inner, keras2))
        if class_name == "Model":
            converted["class_name"] = "Functional"  # TF 2.0-2.3 named Functional models "Model"
        return converted
    if not isinstance(inner, dict):
        return dict(value, config=_convert(inner, keras2))
    inner = {key: _convert(item, keras2) for key, item in inner.items() if key not in _DROPPED_KEYS}
    fix = _CLASS_FIXES.get(class_name)
    if fix is not None:
        inner = fix(inner)
    if _is_layer_class(class_name):
        inner = _layer_fixes(class_name, inner)
    return dict(value, config=inner)


def _is_layer_class(class_name):
    return class_name == "InputLayer" or registry.find_public(class_name, ["keras.layers"]) is not None


def _layer_fixes(class_name, config):
    """What Keras 3 does to every legacy layer entry: batch_input_shape, 1-element axis, dtype."""
    if "batch_input_shape" in config and class_name == "InputLayer":
        config["batch_shape"] = config.pop("batch_input_shape")
    axis = config.get("axis")
    if isinstance(axis, list) and len(axis) == 1:
        config["axis"] = int(axis[0])
    dtype = config.get("dtype")
    if isinstance(dtype, dict) and dtype.get("class_name") == "Policy":
        # Keras 2's mixed-precision Policy is Keras 3's DTypePolicy under another name.
        policy = dict(dtype.get("config") or {})
        config["dtype"] = {"module": "keras", "class_name": "DTypePolicy", "config": policy, "registered_name": None}
    return config


def _drop(config, key, allowed, reason):
    """Drop a Keras 2 argument that Keras 3 removed, unless its value changes the computation."""
    value = config.pop(key, None)
    if value in allowed:
        return config
    raise ConfigError(
        f"Layer '{config.get('name')}' has {key}={value!r}, which Keras 3 (and keramic) no longer support: {reason}"
    )


def _batch_normalization(config):
    config.pop("fused", None)  # an implementation choice, not part of the math
    _drop(config, "virtual_batch_size", (None,), "ghost batch normalization was removed.")
    return _drop(config, "adjustment", (None,), "the adjustment callable was removed.")


def _recurrent(config):
    return _drop(config, "time_major", (None, False), "feed batch-major inputs (batch, time, features) instead.")


def _embedding(config):
    config.pop("input_length", None)  # Keras 3 infers the sequence length from the input
    return config


def _leaky_relu(config):
    if "alpha" in config:
        config["negative_slope"] = config.pop("alpha")
    return config


def _attention(config):
    return _drop(config, "causal", (None, False), "pass `use_causal_mask=True` when calling the layer.")


def _lambda(config):
    """Keras 2 stored a lambda as `[code, defaults, closure]`; Keras 3 as a `__lambda__` object."""
    for field in ("function", "output_shape"):
        kind = config.pop(f"{field}_type", None)
        value = config.get(field)
        if kind == "lambda" and isinstance(value, list) and len(value) == 3:
            code, defaults, closure = value
            config[field] = {"class_name": "__lambda__", "config": {"code": code, "defaults": defaults, "closure": closure}}
    for key in ("module", "output_shape_module"):
        config.pop(key, None)
    return config


def _variance_scaling(config):
    if config.get("distribution") == "normal":
        config["distribution"] = "truncated_normal"  # Keras 2's "normal" always meant truncated
    return config


_CLASS_FIXES = {
    "BatchNormalization": _batch_normalization,
    "Embedding": _embedding,
    "LeakyReLU": _leaky_relu,
    "Attention": _attention,
    "AdditiveAttention": _attention,
    "Lambda": _lambda,
    "VarianceScaling": _variance_scaling,
    **{name: _recurrent for name in _RNN_CLASSES},
}


# ------------------------------------------------------------------------------- functional graphs
def _has_internal_node(entry):
    """Keras 2 counted a hidden first node on nested Functional models and on Sequential models
    that own an input layer; references to their first real call say node 1 (section 2.1)."""
    class_name = entry.get("class_name")
    config = entry.get("config")
    if isinstance(config, dict) and "input_layers" in config:
        return True
    if class_name != "Sequential":
        return False
    layers = config.get("layers") if isinstance(config, dict) else config
    if not layers:
        return False
    first = layers[0]
    return first.get("class_name") == "InputLayer" or "batch_input_shape" in (first.get("config") or {})


def _is_list_node(node):
    return isinstance(node, list) or (isinstance(node, dict) and "args" not in node)


def _convert_functional(config, keras2):
    entries = config["layers"]
    if not keras2:
        # Keras 2 wrote nodes as lists, Keras 3 as dicts; the version alone does not tell, as
        # keramic's `.h5` files say 3.x (what wrote them) but hold the Keras 2 form (tf.keras reads it).
        keras2 = any(_is_list_node(node) for entry in entries for node in entry.get("inbound_nodes") or ())
    offsets = {entry["name"]: 1 for entry in entries if keras2 and _has_internal_node(entry)}
    names = {entry["name"] for entry in entries}
    converted_entries = []
    for entry in entries:
        converted = _convert({k: v for k, v in entry.items() if k != "inbound_nodes"}, keras2)
        if isinstance(converted.get("config"), dict):
            converted["config"].setdefault("name", entry["name"])  # a bare-list Sequential has none
        nodes = entry.get("inbound_nodes") or []
        converted["inbound_nodes"] = [
            _keras3_node(node, offsets, names) if _is_list_node(node) else node for node in nodes
        ]
        converted_entries.append(converted)
    result = {key: value for key, value in config.items() if key not in _DROPPED_KEYS}
    result["layers"] = converted_entries
    if keras2:
        # keramic (like Keras 3) expects the +1 only on nested Functional models; Keras 2 also
        # wrote it for Sequential models with an input layer. Keras 2 always wrote lists, even
        # for one tensor; a single tensor is what such a model takes and returns.
        functional = {entry["name"] for entry in converted_entries if entry.get("class_name") == "Functional"}

        def boundary(leaf):
            name, node_index, tensor_index = leaf[:3]
            if name not in functional:
                node_index -= offsets.get(name, 0)
            return [name, node_index, tensor_index]

        for key in ("input_layers", "output_layers"):
            structure = _map_leaves(config[key], boundary)
            if isinstance(structure, list) and len(structure) == 1 and _is_leaf(structure[0]):
                structure = structure[0]
            result[key] = structure
    return result


def _is_leaf(value):
    return (
        isinstance(value, list)
        and len(value) in (3, 4)
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and (isinstance(value[2], int) or value[0] == "_CONSTANT_VALUE")
    )


def _map_leaves(structure, fn):
    if _is_leaf(structure):
        return fn(structure)
    if isinstance(structure, list):
        return [_map_leaves(item, fn) for item in structure]
    if isinstance(structure, dict):
        return {key: _map_leaves(item, fn) for key, item in structure.items()}
    raise ConfigError(f"Cannot read the Keras 2 node data {structure!r}.")


def _tensor(name, node_index, tensor_index):
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, node_index, tensor_index]}}


def _keras3_node(node, offsets, names):
    """`[["dense", 0, 0, {kwargs}], ...]` -> `{"args": [...], "kwargs": {...}}` with tensors.

    Keras 2 repeated the call's keyword arguments on every entry of the first argument and wrote
    tensors inside them as `[layer, node, tensor]`; constants in the first argument are
    `["_CONSTANT_VALUE", -1, value]`.
    """
    found_kwargs = {}

    def leaf(item):
        if len(item) > 3 and item[3]:
            found_kwargs.update(item[3])
        name, node_index, tensor_index = item[:3]
        if name == "_CONSTANT_VALUE":
            return tensor_index
        return _tensor(name, node_index - offsets.get(name, 0), tensor_index)

    first = _map_leaves(node, leaf)
    if isinstance(first, list) and len(first) == 1:
        first = first[0]

    def kwarg(value):
        if isinstance(value, list) and len(value) == 3 and _is_leaf(value) and value[0] in names:
            return _tensor(value[0], value[1] - offsets.get(value[0], 0), value[2])
        if isinstance(value, list):
            return [kwarg(item) for item in value]
        if isinstance(value, dict):
            return {key: kwarg(item) for key, item in value.items()}
        return value

    return {"args": [first], "kwargs": kwarg(found_kwargs)}


# ------------------------------------------------------------------------------- training config
def convert_training_config(training_config, output_names, custom_objects=None):
    """A legacy `training_config` as the compile config `Model.compile_from_config` takes.

    `output_names` (the model's, in output order) lets Keras 2's per-output metric lists, whose
    names carry an `<output>_` prefix, become Keras 3's `{output: [metrics]}`.
    """
    if not isinstance(training_config, dict):
        raise ConfigError(f"training_config must be a JSON object, got {type(training_config).__name__}.")
    config = {key: _convert(training_config.get(key), False) for key in _COMPILE_KEYS if key in training_config}
    config["loss"] = _convert_losses(config.get("loss"))
    for key in ("metrics", "weighted_metrics"):
        config[key] = _convert_metrics(config.get(key), list(output_names or ()))
    optimizer = training_config.get("optimizer_config")
    if optimizer is not None:
        config["optimizer"] = convert_optimizer_config(optimizer, custom_objects)
    return config


def convert_optimizer_config(config, custom_objects=None):
    """`Custom>Adam` (tf.keras 2.11+) -> `Adam` with its hyperparameters kept; OptimizerV2's
    `lr` and `decay` -> `learning_rate` and the equivalent InverseTimeDecay schedule."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ConfigError(f"optimizer_config must be a {{class_name, config}} object, got {config!r}.")
    class_name = config["class_name"]
    if registry.get_registered_object(class_name, custom_objects) is None and ">" in class_name:
        builtin = _builtin_optimizer(class_name.split(">", 1)[1])
        if builtin is not None:
            class_name = builtin
    inner = {key: value for key, value in (config.get("config") or {}).items() if key not in _TF_OPTIMIZER_KEYS}
    lr = inner.pop("lr", None)  # Keras 2.0-2.2's name
    if lr is not None:
        inner.setdefault("learning_rate", lr)
    if isinstance(inner.get("learning_rate"), int):
        inner["learning_rate"] = float(inner["learning_rate"])
    decay = inner.pop("decay", None)
    if decay:
        # OptimizerV2's time decay: lr / (1 + decay * iterations), exactly InverseTimeDecay.
        inner["learning_rate"] = {
            "module": "keras.optimizers.schedules",
            "class_name": "InverseTimeDecay",
            "config": {"initial_learning_rate": inner.get("learning_rate", 0.001), "decay_steps": 1, "decay_rate": decay},
            "registered_name": None,
        }
    if isinstance(inner.get("momentum"), int):
        inner["momentum"] = float(inner["momentum"])
    converted = {"class_name": class_name, "config": inner}
    if _builtin_optimizer(class_name) == class_name:
        converted["module"] = "keras.optimizers"
    return converted


def _builtin_optimizer(name):
    lowered = name.lower()
    for public in registry.public_objects("keras.optimizers"):
        if public.lower() == lowered:
            return public
    return None


def _convert_losses(spec):
    if isinstance(spec, list):
        return [_convert_losses(item) for item in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {key: _convert_losses(item) for key, item in spec.items()}
    if isinstance(spec, dict):
        inner = dict(spec.get("config") or {})
        if inner.get("reduction") == "auto":  # Keras 2's default, Keras 3's "sum_over_batch_size"
            inner["reduction"] = "sum_over_batch_size"
        return dict(spec, config=inner)
    return spec


def _convert_metrics(spec, output_names):
    """Keras 2 wrote the compiled metrics: one list per output of named metric objects."""
    if not isinstance(spec, list) or not spec or not all(isinstance(item, list) for item in spec):
        return _strip_metric_names(spec, "")
    if len(spec) == 1:
        return _strip_metric_names(spec[0], output_names[0] + "_" if len(output_names) > 1 else "")
    if len(spec) != len(output_names):
        raise ConfigError(f"training_config lists metrics for {len(spec)} outputs, but the model has {len(output_names)}.")
    return {name: _strip_metric_names(items, name + "_") for name, items in zip(output_names, spec) if items}


def _strip_metric_names(spec, prefix):
    """`{MeanMetricWrapper, name: "score_mae", fn: ...}` -> `"mae"` when that name is a metric."""
    if isinstance(spec, list):
        return [_strip_metric_names(item, prefix) for item in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {key: _strip_metric_names(item, key + "_") for key, item in spec.items()}
    if not isinstance(spec, dict):
        return spec
    inner = dict(spec.get("config") or {})
    name = inner.get("name")
    if isinstance(name, str) and prefix and name.startswith(prefix):
        name = inner["name"] = name[len(prefix):]
    if spec.get("class_name") == "MeanMetricWrapper" and isinstance(name, str) and _is_metric_name(name):
        return name
    return dict(spec, config=inner)


def _is_metric_name(name):
    from keramic import metrics

    if name.lower() in ("accuracy", "acc", "crossentropy", "ce"):
        return True
    try:
        metrics.get(name)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------- JSON
def legacy_json_object(obj):
    """`json.loads` object hook for legacy attributes: tf.keras's `__tuple__` and the old
    top-level-value `__bytes__` become the plain forms the Keras 3 deserializer knows."""
    class_name = obj.get("class_name")
    if class_name == "__tuple__" and "items" in obj:
        return list(obj["items"])
    if class_name == "__bytes__" and "value" in obj and "config" not in obj:
        return {"class_name": "__bytes__", "config": {"value": obj["value"]}}
    return obj


# ------------------------------------------------------------------------------- writing Keras 2
# Config keys Keras 3 added that tf.keras 2 refuses. They are left out only at the value that
# means "not used"; any other value changes the computation and is kept (tf.keras then refuses
# the file, but Keras 3 and keramic still rebuild the model exactly).
_KERAS3_ONLY_KEYS = {
    "quantization_config": (None,),
    "lora_rank": (None,),
    "lora_alpha": (None,),
    "optional": (False,),  # InputLayer
    "input_axes": (None,),  # initializers
    "output_axes": (None,),
}
_KERAS3_ONLY_OPTIMIZER_KEYS = {"loss_scale_factor": (None,), "gradient_accumulation_steps": (None,), "weight_decay": (None,)}
_ENVELOPE_ONLY_KEYS = ("module", "registered_name", "build_config", "compile_config")


class Keras2FormError(ConfigError):
    """A graph the Keras 2 config form cannot express (several positional call inputs, dict model
    inputs/outputs, nested call structures): such files keep Keras 3's form."""


def to_keras2_model_config(config):
    """A Keras 3 model config in the form tf.keras 2 writes and reads (the reverse of
    `convert_model_config` for what keramic writes): InputLayer `batch_input_shape`, dtype
    policies as plain dtype names, Functional nodes as `[[layer, node, tensor, kwargs], ...]`,
    objects as `{class_name, config}` and Keras 3-only keys left out where unused.

    >>> to_keras2_model_config({"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "optional": False}})
    {'class_name': 'InputLayer', 'config': {'batch_input_shape': [None, 4]}}
    """
    return _to_keras2(config)


def to_keras2_training_config(training_config):
    """A Keras 3 `training_config` as tf.keras 2 reads it: objects as `{class_name, config}` and
    the optimizer without Keras 3-only arguments (where unused)."""
    converted = {key: _to_keras2(value) for key, value in training_config.items()}
    optimizer = converted.get("optimizer_config")
    if isinstance(optimizer, dict) and isinstance(optimizer.get("config"), dict):
        inner = _without_unused(optimizer["config"], _KERAS3_ONLY_OPTIMIZER_KEYS)
        if inner.get("use_ema") is False:
            for key in ("use_ema", "ema_momentum", "ema_overwrite_frequency"):
                inner.pop(key, None)
        # tf.keras 2.11+ reads a config without `is_legacy_optimizer: false` as one of its legacy
        # (OptimizerV2) optimizers, and Keras 3 refuses that flag; so the config is written in the
        # form both take, without the arguments OptimizerV2 lacks where they are unused.
        optimizer["config"] = inner
    converted.setdefault("loss_weights", None)
    converted.setdefault("weighted_metrics", None)
    return converted


def _without_unused(config, keys):
    return {key: value for key, value in config.items() if not (key in keys and value in keys[key])}


def _to_keras2(value):
    if isinstance(value, list):
        return [_to_keras2(item) for item in value]
    if not isinstance(value, dict):
        return value
    class_name = value.get("class_name")
    if not isinstance(class_name, str) or "config" not in value:
        return {key: _to_keras2(item) for key, item in value.items()}
    if class_name == "DTypePolicy" and isinstance(value["config"], dict) and "name" in value["config"]:
        return value["config"]["name"]  # tf.keras layers take the dtype by name
    entry = {key: item for key, item in value.items() if key not in _ENVELOPE_ONLY_KEYS}
    inner = entry["config"]
    if isinstance(inner, dict) and "layers" in inner and "input_layers" in inner:
        entry["config"] = _to_keras2_functional(inner)
        return entry
    if not isinstance(inner, dict):
        entry["config"] = _to_keras2(inner)
        return entry
    inner = _without_unused({key: _to_keras2(item) for key, item in inner.items()}, _KERAS3_ONLY_KEYS)
    if class_name == "InputLayer" and "batch_shape" in inner:
        inner["batch_input_shape"] = inner.pop("batch_shape")
    entry["config"] = inner
    return entry


def _to_keras2_functional(config):
    entries = config["layers"]
    # Keras 2 counted a hidden first node on nested models (see `_has_internal_node`).
    offsets = {entry["name"]: 1 for entry in entries if _has_internal_node(entry)}
    functional = {entry["name"] for entry in entries if isinstance(entry.get("config"), dict) and "input_layers" in entry["config"]}
    # Keras 3 reads Keras 2 node lists without that hidden node, so the two disagree on the
    # indices of calls to nested models: such graphs keep Keras 3's node form, which Keras 3 and
    # keramic read (tf.keras 2 does not).
    keep_keras3_nodes = bool(offsets)
    converted_entries = []
    for entry in entries:
        converted = _to_keras2({key: item for key, item in entry.items() if key != "inbound_nodes"})
        nodes = entry.get("inbound_nodes") or []
        converted["inbound_nodes"] = list(nodes) if keep_keras3_nodes else [_keras2_node(node, offsets) for node in nodes]
        converted_entries.append(converted)
    result = {key: _to_keras2(item) for key, item in config.items() if key not in ("layers", "input_layers", "output_layers")}
    result["layers"] = converted_entries
    if keep_keras3_nodes:
        result["input_layers"], result["output_layers"] = config["input_layers"], config["output_layers"]
        return result

    def boundary(leaf):
        name, node_index, tensor_index = leaf[:3]
        if name not in functional:
            node_index += offsets.get(name, 0)
        return [name, node_index, tensor_index]

    for key in ("input_layers", "output_layers"):
        structure = config[key]
        if isinstance(structure, dict):
            raise Keras2FormError(f"The Keras 2 form cannot store the {key} mapping {sorted(structure)}.")
        if _is_leaf(structure):
            structure = [structure]  # Keras 2 always wrote a list, even for one tensor
        result[key] = _map_leaves(structure, boundary)
    return result


def _keras3_history(value):
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return value["config"]["keras_history"]
    return None


def _keras2_node(node, offsets):
    """`{"args": [...], "kwargs": {...}}` -> `[["dense", 0, 0, {kwargs}], ...]` (the reverse of
    `_keras3_node`)."""
    if _is_list_node(node):
        return node
    args = node.get("args") or []
    if len(args) != 1:
        raise Keras2FormError(
            f"The Keras 2 form stores only a layer call's first argument; this call has {len(args)} positional arguments."
        )

    def reference(history):
        name, node_index, tensor_index = history
        return [name, node_index + offsets.get(name, 0), tensor_index]

    def kwarg(value):
        history = _keras3_history(value)
        if history is not None:
            return reference(history)
        if isinstance(value, list):
            return [kwarg(item) for item in value]
        if isinstance(value, dict):
            return {key: kwarg(item) for key, item in value.items()}
        return value

    kwargs = kwarg(node.get("kwargs") or {})
    first = args[0]
    items = first if isinstance(first, (list, tuple)) else [first]
    result = []
    for item in items:
        history = _keras3_history(item)
        if history is None:
            if isinstance(item, (list, dict)):
                raise Keras2FormError("The Keras 2 form cannot store a nested structure as a layer call's input.")
            result.append(["_CONSTANT_VALUE", -1, item, kwargs])
        else:
            result.append([*reference(history), kwargs])
    return result

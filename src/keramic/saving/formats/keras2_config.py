"""Keras 2 (tf.keras) configs -> the Keras 3 forms keramic's `from_config` methods read.

Legacy `.h5` files hold `model_config` (and `training_config`, see `keras2_training`) in whatever form their writer used
(keras-legacy-h5-format.md sections 2 and 3). Keras 3 forms pass through unchanged, so one
conversion serves files from both writers; Keras 2 spellings that Keras 3 renamed or dropped are
rewritten here, in one place, instead of in every layer.
"""

from keramic.errors import ConfigError
from keramic.saving.formats import keras2_tf_ops as tf_ops
from keramic.serialization import registry

_DROPPED_KEYS = ("shared_object_id", "__passive_serialization__")
_KERAS2_MODULES = ("tf_keras", "keras.src.engine", "keras.engine", "tensorflow")
# RandomCrop keeps its `rng_type`: that marks tf.keras's inference (see RandomCrop).
_RANDOM_LAYERS = ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness")
_RNN_CLASSES = ("SimpleRNN", "GRU", "LSTM", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
ACTIVATION_KEYS = ("activation", "recurrent_activation")


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
    try:
        converted = convert_value(config, None if major is None else major < 3)
        # Only the version says whose bare `hard_sigmoid` a name means: keramic's `.h5` files
        # hold the Keras 2 node form too, and mark tf.keras's (see `_marked_hard_sigmoid`).
        return _keras2_activations(converted) if major is not None and major < 3 else converted
    except RecursionError:  # a hostile file's depth; the deserializer would refuse it next anyway
        raise ConfigError("The config nests more than any model config does (past Python's recursion limit).") from None


def convert_class_config(class_name, config):
    """The inner config a `from_config(config)` call receives, translated as a file's would be
    (for `Functional.from_config` / `Sequential.from_config` given tf.keras 2's `get_config()`).

    >>> convert_class_config("Sequential", [])
    {'layers': []}
    """
    return convert_model_config({"class_name": class_name, "config": config})["config"]


def from_tf_keras_get_config(class_name, config):
    """`config` translated when it is tf.keras 2's `get_config()` of a Functional or Sequential
    model (its layer entries carry no `module`, which Keras 3 always writes); otherwise unchanged,
    so Keras 3 configs pay nothing for the check."""
    layers = config if isinstance(config, list) else config.get("layers") if isinstance(config, dict) else None
    if isinstance(layers, list) and any(isinstance(layer, dict) and "module" not in layer for layer in layers):
        return convert_class_config(class_name, config)  # no version: `hard_sigmoid` stays Keras 3's
    return config


def convert_json_config(config):
    """A parsed `model.to_json()` string in the Keras 3 form: tf.keras 2's JSON (it says
    `keras_version: 2.x`) gets the translation its `.h5` files get; Keras 3 forms keep their shape.

    >>> convert_json_config({"class_name": "Sequential", "config": [], "keras_version": "2.21.0"})["config"]
    {'layers': []}
    """
    if not isinstance(config, dict):
        return config
    return convert_model_config(_legacy_json_values(config), config.get("keras_version"))


def _legacy_json_values(value):
    if isinstance(value, list):
        return [_legacy_json_values(item) for item in value]
    if isinstance(value, dict):
        return legacy_json_object({key: _legacy_json_values(item) for key, item in value.items()})
    return value


def convert_value(value, keras2):
    """Walk a config; every `{class_name, config}` object gets its class's Keras 2 fix-ups."""
    if isinstance(value, list):
        return [convert_value(item, keras2) for item in value]
    if not isinstance(value, dict):
        return value
    value = {key: item for key, item in value.items() if key not in _DROPPED_KEYS}
    if str(value.get("module") or "").startswith(_KERAS2_MODULES):
        value["module"] = None  # tf.keras's own module paths name no keramic namespace
    class_name = value.get("class_name")
    if not isinstance(class_name, str) or "config" not in value:
        return {key: convert_value(item, keras2) for key, item in value.items()}
    inner = value["config"]
    if class_name == "Sequential" and isinstance(inner, list):
        inner = {"layers": inner}  # the oldest Keras 2 Sequential config is the bare layer list
    if isinstance(inner, dict) and "layers" in inner and "input_layers" in inner:
        converted = dict(value, config=_convert_functional(inner, keras2))
        if class_name == "Model":
            converted["class_name"] = "Functional"  # TF 2.0-2.3 named Functional models "Model"
        return converted
    if not isinstance(inner, dict):
        return dict(value, config=convert_value(inner, keras2))
    inner = {key: convert_value(item, keras2) for key, item in inner.items() if key not in _DROPPED_KEYS}
    if class_name == "MultiHeadAttention" and "query_shape" in inner:
        value = _attention_build_config(value, inner)
    fix = _CLASS_FIXES.get(class_name)
    if fix is not None:
        inner = fix(inner)
    if class_name == "ThresholdedReLU":
        # Removed in Keras 3; ReLU with a threshold computes the same `x if x > theta else 0`.
        value = dict(value, class_name="ReLU")
        inner = {key: item for key, item in inner.items() if key != "theta"} | {"threshold": inner.get("theta", 1.0)}
    if class_name == "RandomCrop" and keras2 and "data_format" not in inner:
        # A tf.keras layer (Keras 3 always records `data_format`, which tf.keras refuses) written
        # before tf.keras recorded `rng_type`: 2.21's default marks it.
        inner.setdefault("rng_type", "stateful")
    inner = _marked_hard_sigmoid(inner)
    if _is_layer_class(class_name):
        inner = _layer_fixes(class_name, inner)
    return dict(value, config=inner)


@registry.register_keras_serializable("keras2", "hard_sigmoid")
def keras2_hard_sigmoid(x):
    """tf.keras 2's `hard_sigmoid`, `clip(0.2 * x + 0.5, 0, 1)`: Keras 3's namesake is
    `clip(x / 6 + 0.5, 0, 1)`, so a tf.keras file's name would compute something else."""
    return (0.2 * x + 0.5).clamp(0.0, 1.0)


KERAS2_HARD_SIGMOID = "keras2>hard_sigmoid"
# keramic's Keras 2-form `.h5` files mark a layer whose bare `hard_sigmoid` is tf.keras's with this
# argument (tf.keras takes it, Keras 3 refuses it; see keras2_writing).
KERAS2_HARD_SIGMOID_MARK = "dynamic"


def _marked_hard_sigmoid(config):
    """A layer config with the mark (`False`) beside a bare `hard_sigmoid`: that activation is
    tf.keras's, and the mark goes (any other `dynamic` is left to the layer)."""
    keys = [key for key in ACTIVATION_KEYS if config.get(key) == "hard_sigmoid"]
    if config.get(KERAS2_HARD_SIGMOID_MARK, True) is not False or not keys:
        return config
    config = {key: value for key, value in config.items() if key != KERAS2_HARD_SIGMOID_MARK}
    return config | {key: KERAS2_HARD_SIGMOID for key in keys}


def _keras2_activations(value):
    """Every layer activation a tf.keras file names `hard_sigmoid` -> `keras2>hard_sigmoid`
    (ConvLSTM's default recurrent activation, and any layer given that name)."""
    if isinstance(value, list):
        return [_keras2_activations(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: _keras2_activations(item) for key, item in value.items()}
    for key in ACTIVATION_KEYS:
        if converted.get(key) == "hard_sigmoid":
            converted[key] = KERAS2_HARD_SIGMOID
    return converted


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
    raise ConfigError(f"Layer '{config.get('name')}' has {key}={value!r}, which Keras 3 (and keramic) no longer support: {reason}")


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


def _one_group(config):
    """tf.keras wrote `groups=1` on convolutions that Keras 3 gives no `groups` argument."""
    return _drop(config, "groups", (None, 1), "this convolution has no grouped form in Keras 3.")


def _separable(config):
    for key in ("kernel_initializer", "kernel_regularizer", "kernel_constraint"):
        config.pop(key, None)  # tf.keras inherited them from Conv and never used them
    return _one_group(config)


def _without(*keys):
    """A fix that drops arguments Keras 3 removed and whose value changes no computation."""

    def fix(config):
        return {key: value for key, value in config.items() if key not in keys}

    return fix


def _text_vectorization(config):
    if config.get("dtype") == "string":
        config.pop("dtype")  # tf.keras's input type; Keras 3's dtype is the output's, from output_mode
    return config


def _spatial_dropout(config):
    config.pop("trainable", None)  # a layer without weights; Keras 3 takes no such argument
    return _drop(config, "noise_shape", (None,), "spatial dropout always drops whole channels.")


def _attention_build_config(entry, config):
    """tf.keras recorded a MultiHeadAttention's build as the query shape alone, with all three
    shapes in its config; Keras 3 builds it from the three shapes."""
    shapes = {key: config.get(key) for key in ("query_shape", "value_shape", "key_shape")}
    if not isinstance((entry.get("build_config") or {}).get("input_shape"), list):
        return entry
    return dict(entry, build_config={"shapes_dict": shapes})


def _multi_head_attention(config):
    for key in ("query_shape", "key_shape", "value_shape"):
        config.pop(key, None)  # where tf.keras built the layer; Keras 3 builds on the first call
    return _drop(config, "softmax_robust_masking", (None, False), "Keras 3 masks the softmax one way only.")


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
    "DepthwiseConv2D": _one_group,
    "DepthwiseConv1D": _one_group,
    "Conv1DTranspose": _one_group,
    "Conv2DTranspose": _one_group,
    "Conv3DTranspose": _one_group,
    "SeparableConv2D": _separable,
    "SeparableConv1D": _separable,
    "MultiHeadAttention": _multi_head_attention,
    **{f"SpatialDropout{rank}D": _spatial_dropout for rank in (1, 2, 3)},
    "VarianceScaling": _variance_scaling,
    "Discretization": _without("trainable"),  # a layer without weights
    "TextVectorization": _text_vectorization,
    # tf.keras's choice of TensorFlow random generator; Keras 3 draws from the layer's seed.
    **{name: _without("rng_type") for name in _RANDOM_LAYERS},
    **{name: _recurrent for name in _RNN_CLASSES},
}


# ------------------------------------------------------------------------------- functional graphs
def has_internal_node(entry):
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


def is_list_node(node):
    return isinstance(node, list) or (isinstance(node, dict) and "args" not in node)


def _convert_functional(config, keras2):
    entries = config["layers"]
    if not keras2:
        # Keras 2 wrote nodes as lists, Keras 3 as dicts; the version alone does not tell, as
        # keramic's `.h5` files say 3.x (what wrote them) but hold the Keras 2 form (tf.keras reads it).
        keras2 = any(is_list_node(node) for entry in entries for node in entry.get("inbound_nodes") or ())
    # A nameless entry is left for the deserializer to refuse.
    offsets = {entry.get("name"): 1 for entry in entries if keras2 and has_internal_node(entry)}
    names = {entry.get("name") for entry in entries}
    converted_entries = []
    for entry in entries:
        converted = convert_value({k: v for k, v in entry.items() if k != "inbound_nodes"}, keras2)
        if keras2 and isinstance(converted.get("config"), dict) and "name" in entry:
            # A Keras 2 bare-list Sequential has no name of its own; a Keras 3 custom layer whose
            # `get_config` omits `name` must not be handed one its `__init__` may not accept.
            converted["config"].setdefault("name", entry["name"])
        nodes = entry.get("inbound_nodes") or []
        converted["inbound_nodes"] = [_keras3_node(node, offsets, names) if is_list_node(node) else node for node in nodes]
        if converted.get("class_name") in tf_ops.TF_OP_LAYERS:
            converted_entries.extend(tf_ops.to_op_nodes(converted))
        else:
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
            structure = map_leaves(config[key], boundary)
            if isinstance(structure, list) and len(structure) == 1 and is_leaf(structure[0]):
                structure = structure[0]
            result[key] = structure
    return result


def is_leaf(value):
    return (
        isinstance(value, list)
        and len(value) in (3, 4)
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and (isinstance(value[2], int) or value[0] == "_CONSTANT_VALUE")
    )


def map_leaves(structure, fn):
    if is_leaf(structure):
        return fn(structure)
    if isinstance(structure, list):
        return [map_leaves(item, fn) for item in structure]
    if isinstance(structure, dict):
        return {key: map_leaves(item, fn) for key, item in structure.items()}
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

    first = map_leaves(node, leaf)
    if isinstance(first, list) and len(first) == 1:
        first = first[0]

    def kwarg(value):
        if isinstance(value, list) and len(value) == 3 and is_leaf(value) and value[0] in names:
            return _tensor(value[0], value[1] - offsets.get(value[0], 0), value[2])
        if isinstance(value, list):
            return [kwarg(item) for item in value]
        if isinstance(value, dict):
            return {key: kwarg(item) for key, item in value.items()}
        return value

    return {"args": [first], "kwargs": kwarg(found_kwargs)}


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

"""Keras 3 configs -> the Keras 2 (tf.keras) forms a legacy `.h5` file holds, for `legacy_h5.save`.

tf.keras 2 refuses keys Keras 3 added and reads functional graphs in its own node format; files
written with these forms load in tf.keras 2, Keras 3 and keramic alike.
"""

from keramic.errors import Keras2FormError
from keramic.saving.formats import keras2_tf_ops
from keramic.saving.formats.keras2_config import (
    ACTIVATION_KEYS,
    KERAS2_HARD_SIGMOID,
    KERAS2_HARD_SIGMOID_MARK,
    has_internal_node,
    is_leaf,
    is_list_node,
    map_leaves,
)

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
    "rms_scaling": (False,),  # LayerNormalization
}
_KERAS3_ONLY_OPTIMIZER_KEYS = {"loss_scale_factor": (None,), "gradient_accumulation_steps": (None,), "weight_decay": (None,)}
_ENVELOPE_ONLY_KEYS = ("module", "registered_name", "build_config", "compile_config")
# Config keys of wrapper layers (Bidirectional, TimeDistributed, RNN) whose values are layers.
_LAYER_KEYS = ("layer", "backward_layer", "forward_layer", "cell", "cells")
# A bare `hard_sigmoid` means tf.keras's function to tf.keras and Keras 3's to Keras 3, so each is
# written so that only its own Keras reads it: Keras 3's in its module form (tf.keras's `.h5`
# reader knows no such form), tf.keras's by name with `dynamic=False`, an argument every tf.keras
# layer takes (its default) and Keras 3 refuses; keramic reads that pair back as tf.keras's.
_KERAS3_HARD_SIGMOID = {"module": "keras.activations", "class_name": "function", "config": "hard_sigmoid", "registered_name": "function"}


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
        schedule = training_config["optimizer_config"]["config"].get("learning_rate")
        if isinstance(schedule, dict) and schedule.get("module"):
            # A learning-rate schedule keeps its module envelope: tf.keras 2 writes it so, and
            # Keras 3's optimizer `from_config` finds the class only through it.
            inner["learning_rate"] = schedule
        optimizer["config"] = inner
    converted.setdefault("loss_weights", None)
    converted.setdefault("weighted_metrics", None)
    return converted


def _without_unused(config, keys):
    return {key: value for key, value in config.items() if not (key in keys and value in keys[key])}


def _to_keras2(value, nested_layer=False):
    """`nested_layer`: `value` sits in a layer's config under a key that holds a layer."""
    if isinstance(value, list):
        return [_to_keras2(item, nested_layer) for item in value]
    if not isinstance(value, dict):
        return value
    class_name = value.get("class_name")
    if not isinstance(class_name, str) or "config" not in value:
        return {key: _to_keras2(item) for key, item in value.items()}
    if class_name == "DTypePolicy" and isinstance(value["config"], dict) and "name" in value["config"]:
        return value["config"]["name"]  # tf.keras layers take the dtype by name
    entry = {key: item for key, item in value.items() if key not in _ENVELOPE_ONLY_KEYS}
    registered = value.get("registered_name")
    if isinstance(registered, str) and ">" in registered:
        entry["class_name"] = registered  # Keras 2's legacy form names custom objects `package>Name`
    elif nested_layer and value.get("module"):
        # A layer inside a layer's config (Bidirectional's, TimeDistributed's): Keras 3 finds its
        # class only through the module, so it keeps the envelope (as tf.keras writes it).
        entry.update({key: value[key] for key in ("module", "registered_name") if key in value})
    inner = entry["config"]
    if isinstance(inner, dict) and "layers" in inner and "input_layers" in inner:
        entry["config"] = _to_keras2_functional(inner)
        return entry
    if not isinstance(inner, dict):
        entry["config"] = _to_keras2(inner)
        return entry
    inner = {key: _activation(item) if key in ACTIVATION_KEYS else _to_keras2(item, key in _LAYER_KEYS) for key, item in inner.items()}
    if any(inner.get(key) == "hard_sigmoid" for key in ACTIVATION_KEYS):
        inner[KERAS2_HARD_SIGMOID_MARK] = False
    inner = _without_unused(inner, _KERAS3_ONLY_KEYS)
    if class_name == "InputLayer" and "batch_shape" in inner:
        inner["batch_input_shape"] = inner.pop("batch_shape")
    entry["config"] = inner
    return entry


def _activation(value):
    """A layer's activation in the Keras 2 form; each `hard_sigmoid` named so that only the Keras
    whose function it is reads it (the other refuses the file instead of computing otherwise)."""
    name = value.get("config") if isinstance(value, dict) and value.get("class_name") == "function" else value
    if name == KERAS2_HARD_SIGMOID:
        return "hard_sigmoid"  # the layer gets the `dynamic` mark
    if name == "hard_sigmoid":
        return dict(_KERAS3_HARD_SIGMOID)
    return _to_keras2(value)


def _to_keras2_functional(config):
    entries = config["layers"]
    # Keras 2 counted a hidden first node on nested models (see `has_internal_node`).
    offsets = {entry["name"]: 1 for entry in entries if has_internal_node(entry)}
    functional = {entry["name"] for entry in entries if isinstance(entry.get("config"), dict) and "input_layers" in entry["config"]}
    # Keras 3 reads Keras 2 node lists without that hidden node, so the two disagree on the
    # indices of calls to nested models: such graphs keep Keras 3's node form, which Keras 3 and
    # keramic read (tf.keras 2 does not). Both agree only on a nested Functional model's output
    # read as a model output (Keras 3 skips the hidden node there), so such graphs keep Keras 2's.
    outputs = {leaf[0] for leaf in _leaves(config["output_layers"])}
    keep_keras3_nodes = bool(set(offsets) & (_called_with_outputs_of(entries) | (outputs - functional)))
    converted_entries = []
    for entry in entries:
        if keras2_tf_ops.is_op_node(entry):
            if keep_keras3_nodes:
                raise Keras2FormError("Op nodes keep Keras 3's form in a graph that nests a model.")
            converted_entries.append(keras2_tf_ops.to_tf_op_entry(entry, _tensor_reference(offsets), Keras2FormError))
            continue
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
        if is_leaf(structure):
            structure = [structure]  # Keras 2 always wrote a list, even for one tensor
        result[key] = map_leaves(structure, boundary)
    return result


def _leaves(structure):
    if is_leaf(structure):
        return [structure]
    items = structure.values() if isinstance(structure, dict) else structure if isinstance(structure, list) else ()
    return [leaf for item in items for leaf in _leaves(item)]


def _called_with_outputs_of(entries):
    """The names of the layers whose outputs some call in the graph takes."""
    names = set()

    def walk(value):
        history = _keras3_history(value)
        if history is not None:
            names.add(history[0])
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    for entry in entries:
        for node in entry.get("inbound_nodes") or ():
            if is_list_node(node):
                names.update(leaf[0] for leaf in _leaves(node))
            else:
                walk(node)
    return names


def _keras3_history(value):
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return value["config"]["keras_history"]
    return None


def _tensor_reference(offsets):
    """Keras 3 tensor -> Keras 2 `[layer, node, tensor]` (with the nested-model offsets); else None."""

    def reference(value):
        history = _keras3_history(value)
        if history is None:
            return None
        name, node_index, tensor_index = history
        return [name, node_index + offsets.get(name, 0), tensor_index]

    return reference


def _keras2_node(node, offsets):
    """`{"args": [...], "kwargs": {...}}` -> `[["dense", 0, 0, {kwargs}], ...]` (the reverse of
    `_keras3_node`)."""
    if is_list_node(node):
        return node
    args = node.get("args") or []
    if len(args) != 1:
        raise Keras2FormError(f"The Keras 2 form stores only a layer call's first argument; this call has {len(args)} positional arguments.")

    reference = _tensor_reference(offsets)

    def kwarg(value):
        if reference(value) is not None:
            # tf.keras reads `[layer, node, tensor]` there, Keras 3 passes the list on as it is.
            raise Keras2FormError("Keras 3 reads no tensor passed by keyword in the Keras 2 node form.")
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
        found = reference(item)
        if found is None:
            if isinstance(item, (list, dict)):
                raise Keras2FormError("The Keras 2 form cannot store a nested structure as a layer call's input.")
            result.append(["_CONSTANT_VALUE", -1, item, kwargs])
        else:
            result.append([*found, kwargs])
    return result

"""Functional model <-> Keras 3 config (`layers` with `inbound_nodes`, `input_layers`, `output_layers`)."""

from keramic.errors import ConfigError, KeramicError, Keras2FormError, NotAModelError
from keramic.serialization.serialize import (
    ARGUMENT_FAILURES,
    argument_error,
    bounded_config,
    describe_config,
    deserialize_keras_object,
    for_tf_keras,
    implicit_arguments_recorded,
    serialize_keras_object,
)
from keramic.symbolic import KerasTensor, flatten, map_structure


def _recorded_kwargs(node):
    if implicit_arguments_recorded():
        return node.call_kwargs
    return {key: value for key, value in node.call_kwargs.items() if key not in node.implicit_kwargs}


def _reached_without_implicit_arguments(model, own):
    """The model's nodes that its outputs still need once the filled-in arguments are left out
    (the mask-only op nodes drop away)."""
    reached, stack = set(), [t._keras_history[0]._inbound_nodes[t._keras_history[1]] for t in flatten(model._outputs_struct)]
    while stack:
        node = stack.pop()
        if id(node) in reached or id(node) not in own:
            continue
        reached.add(id(node))
        for tensor in flatten((node.call_args, _recorded_kwargs(node))):
            if isinstance(tensor, KerasTensor) and getattr(tensor, "_keras_history", None) is not None:
                stack.append(tensor._keras_history[0]._inbound_nodes[tensor._keras_history[1]])
    return reached


def _check_tf_keras_masks(model, own):
    """tf.keras 2 recomputes masks by its own rules; where they differ from Keras 3's (it ANDs merged
    masks where Keras 3 ORs them), no Keras 2 form computes what this model computes."""
    for layer in model._graph_layers:
        if not getattr(layer, "_tf_keras_merges_masks_differently", False):
            continue
        for node in layer._inbound_nodes:
            if id(node) in own and any(getattr(t, "_keras_mask", None) is not None for t in node.input_tensors):
                raise Keras2FormError(f"Layer '{layer.name}' merges masked inputs, which tf.keras 2 combines by other rules than Keras 3.")


def _model_nodes(model):
    """Each layer's calls that belong to this model, renumbered from 0 as Keras does."""
    own = {id(node) for node in model._plan}
    inputs = {id(t._keras_history[0]._inbound_nodes[t._keras_history[1]]) for t in model.inputs}
    own.update(inputs)
    if not implicit_arguments_recorded():
        own = _reached_without_implicit_arguments(model, own) | inputs
        if for_tf_keras():
            _check_tf_keras_masks(model, own)
    numbering = {}
    for layer in model._graph_layers:
        index = 0
        for node in layer._inbound_nodes:
            if id(node) in own:
                numbering[id(node)] = index
                index += 1
    return numbering


def functional_config(model):
    numbering = _model_nodes(model)

    def history(tensor, boundary=False):
        layer, node_index, tensor_index = tensor._keras_history
        number = numbering[id(layer._inbound_nodes[node_index])]
        # Keras quirk: nested Functional models are referenced one node later in input/output_layers.
        if boundary and type(layer).__name__ == "Functional":
            number += 1
        return [layer.name, number, tensor_index]

    def arg(value):
        if isinstance(value, KerasTensor):
            return {
                "class_name": "__keras_tensor__",
                "config": {"shape": list(value.shape), "dtype": value.dtype, "keras_history": history(value)},
            }
        if isinstance(value, (list, tuple)):
            return [arg(item) for item in value]
        if isinstance(value, dict):
            return {key: arg(item) for key, item in value.items()}
        return serialize_keras_object(value)

    layer_entries = []
    for layer in model._graph_layers:
        if not any(id(node) in numbering for node in layer._inbound_nodes):
            continue  # a mask-only op node, left out of the Keras 2 form
        entry = serialize_keras_object(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [
            {"args": arg(list(node.call_args)), "kwargs": arg(_recorded_kwargs(node))}
            for node in layer._inbound_nodes
            if id(node) in numbering and node.input_tensors
        ]
        layer_entries.append(entry)

    def boundary(structure):
        if isinstance(structure, KerasTensor):
            return history(structure, boundary=True)
        return map_structure(lambda t: history(t, boundary=True), structure)

    return {
        "name": model.name,
        "trainable": model.trainable,
        "layers": layer_entries,
        "input_layers": boundary(model._inputs_struct),
        "output_layers": boundary(model._outputs_struct),
    }


def _is_leaf(value):
    return isinstance(value, list) and len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int)


def _check_functional_config(config):
    """Refuse, naming what was found, a config that is not a Functional model's."""
    keys = ("layers", "input_layers", "output_layers")
    if not isinstance(config, dict) or not all(key in config for key in keys):
        raise NotAModelError(f"Expected a Functional model config with {', '.join(keys)}; got {describe_config(config)}.")
    if not isinstance(config["layers"], list) or not all(isinstance(entry, dict) for entry in config["layers"]):
        raise ConfigError("A Functional model config's 'layers' must be a list of layer configs.")


def functional_from_config(cls, config, custom_objects=None):
    """Rebuild layers, then replay their calls until every node is placed (Keras's algorithm)."""
    _check_functional_config(config)
    with bounded_config(config):
        return _functional_from_config(cls, config, custom_objects)


def _functional_from_config(cls, config, custom_objects):
    layers, pending = {}, {}
    for entry in config["layers"]:
        layer_config = {k: v for k, v in entry.items() if k not in ("name", "inbound_nodes")}
        layer = deserialize_keras_object(layer_config, ("keras.layers",), custom_objects)
        name = entry.get("name", getattr(layer, "name", None))
        if not isinstance(name, str) or not hasattr(layer, "_inbound_nodes"):
            raise ConfigError(f"A Functional model's layer entry {name!r:.60} is a {type(layer).__name__}, not a named layer.")
        nodes = entry.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ConfigError(f"Layer '{name}': 'inbound_nodes' must be a list, got {type(nodes).__name__}.")
        layers[name] = layer
        pending[name] = list(nodes)
    produced = {}  # (layer name, node index) -> flat outputs
    for name, layer in layers.items():
        if type(layer).__name__ == "InputLayer":
            produced[(name, 0)] = [layer.output_tensor]
    node_counts = {name: 0 for name in layers}

    def tensor_for(history):
        if not (isinstance(history, (list, tuple)) and len(history) >= 3 and all(isinstance(i, int) for i in history[1:3])):
            raise ConfigError(f"A tensor reference must be [layer name, node index, tensor index], got {history!r:.100}.")
        outputs = produced.get((history[0], history[1]))
        if outputs is None or not -len(outputs) <= history[2] < len(outputs):
            raise LookupError
        return outputs[history[2]]

    def resolve(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            inner = value.get("config")
            return tensor_for(inner.get("keras_history") if isinstance(inner, dict) else None)
        if isinstance(value, list):
            return [resolve(item) for item in value]
        if isinstance(value, dict) and "class_name" not in value:
            return {key: resolve(item) for key, item in value.items()}
        if value is None or isinstance(value, (str, int, float, bool)):
            return value  # plain call arguments (an einops pattern, a scalar) are data, not object names
        return deserialize_keras_object(value, custom_objects=custom_objects)

    def call_node(name, node):
        if isinstance(node, dict):
            args, kwargs = resolve(node.get("args", [])), resolve(node.get("kwargs", {}))
        elif isinstance(node, list) and node:  # Keras 2: [[layer, node_index, tensor_index, kwargs], ...]
            tensors = [tensor_for(item) for item in node]
            kwargs = dict(node[0][3]) if len(node[0]) > 3 and isinstance(node[0][3], dict) else {}
            args = [tensors[0] if len(tensors) == 1 else tensors]
        else:
            raise ConfigError(f"Layer '{name}': an inbound node must be a dict or a list of tensor references, got {node!r:.100}.")
        try:
            outputs = layers[name](*args, **kwargs)
        except KeramicError:
            raise
        except ARGUMENT_FAILURES as error:
            layer = layers[name]
            given = next((entry.get("config") for entry in config["layers"] if entry.get("name") == name), None)
            raise argument_error(type(layer).__name__, name, given if isinstance(given, dict) else {}, error) from error
        produced[(name, node_counts[name])] = flatten(outputs)
        node_counts[name] += 1

    progress = True
    while progress and any(pending.values()):
        progress = False
        for name in layers:
            while pending[name]:
                try:
                    call_node(name, pending[name][0])
                except LookupError:
                    break
                pending[name].pop(0)
                progress = True
    if any(pending.values()):
        stuck = [name for name, nodes in pending.items() if nodes]
        raise ConfigError(
            "Invalid Functional model configuration: the graph has loops or disconnected nodes "
            f"(layers that could not be called: {stuck})."
        )

    def boundary(structure):
        if _is_leaf(structure):
            name, node_index, tensor_index = structure[:3]
            if type(layers.get(name)).__name__ == "Functional":
                node_index -= 1
            try:
                return tensor_for([name, node_index, tensor_index])
            except LookupError:
                raise ConfigError(f"The model config refers to an unknown tensor {structure}.") from None
        if isinstance(structure, list):
            return [boundary(item) for item in structure]
        if isinstance(structure, dict):
            return {key: boundary(item) for key, item in structure.items()}
        raise ConfigError(f"Cannot read input/output layer spec {structure!r}.")

    inputs = boundary(config["input_layers"])
    outputs = boundary(config["output_layers"])
    return cls(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))

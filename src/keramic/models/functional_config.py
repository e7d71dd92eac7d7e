"""Functional model <-> Keras 3 config (`layers` with `inbound_nodes`, `input_layers`, `output_layers`)."""

from keramic.errors import ConfigError
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object
from keramic.symbolic import KerasTensor, flatten, map_structure


def _model_nodes(model):
    """Each layer's calls that belong to this model, renumbered from 0 as Keras does."""
    own = {id(node) for node in model._plan}
    own.update(id(t._keras_history[0]._inbound_nodes[t._keras_history[1]]) for t in model.inputs)
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
        entry = serialize_keras_object(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [
            {"args": arg(list(node.call_args)), "kwargs": arg(node.call_kwargs)}
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


def functional_from_config(cls, config, custom_objects=None):
    """Rebuild layers, then replay their calls until every node is placed (Keras's algorithm)."""
    layers, pending = {}, {}
    for entry in config["layers"]:
        layer_config = {k: v for k, v in entry.items() if k not in ("name", "inbound_nodes")}
        layer = deserialize_keras_object(layer_config, ("keras.layers",), custom_objects)
        name = entry.get("name", layer.name)
        layers[name] = layer
        pending[name] = list(entry.get("inbound_nodes", []))
    produced = {}  # (layer name, node index) -> flat outputs
    for name, layer in layers.items():
        if type(layer).__name__ == "InputLayer":
            produced[(name, 0)] = [layer.output_tensor]
    node_counts = {name: 0 for name in layers}

    def tensor_for(history):
        outputs = produced.get((history[0], history[1]))
        if outputs is None:
            raise LookupError
        return outputs[history[2]]

    def resolve(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return tensor_for(value["config"]["keras_history"])
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
        else:  # Keras 2: [[layer, node_index, tensor_index, kwargs], ...]
            tensors = [tensor_for(item) for item in node]
            kwargs = dict(node[0][3]) if len(node[0]) > 3 and node[0][3] else {}
            args = [tensors[0] if len(tensors) == 1 else tensors]
        outputs = layers[name](*args, **kwargs)
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

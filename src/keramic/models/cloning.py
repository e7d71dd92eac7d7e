"""`clone_model`: a new model with the same architecture and fresh weights (Keras's arguments)."""

from keramic.saving.formats import keras2_config
from keramic.serialization import registry
from keramic.serialization.serialize import deserialize_model, serialize_keras_object
from keramic.symbolic import KerasTensor, flatten, map_structure


def clone_model(model, input_tensors=None, clone_function=None, call_function=None, recursive=False, custom_objects=None, **kwargs):
    """A copy of a Sequential or Functional `model` built from new layers (compiled as `model` is).

    As Keras: each layer is rebuilt by `clone_function` (default: `from_config(get_config())` of its
    own class, so custom layers need no registration); `call_function(layer, *args, **kwargs)` makes
    the calls of a Functional model; `input_tensors` replace the inputs; `recursive` clones nested
    models the same way. With none of these, the model is rebuilt from its config, which also works
    for subclassed models that write `get_config`.

    >>> twin = clone_model(model)
    """
    if kwargs:
        raise ValueError(f"Unexpected keyword argument(s): {tuple(kwargs)}")
    twin = _clone(model, input_tensors, clone_function, call_function, recursive, custom_objects)
    if getattr(model, "compiled", False):
        # As Keras: a compiled model's clone is compiled the same way (a new optimizer from its config).
        twin.compile_from_config(model.get_compile_config())
    return twin


def _clone(model, input_tensors, clone_function, call_function, recursive, custom_objects):
    from keramic.models.functional import Functional
    from keramic.models.sequential import Sequential

    with registry.custom_object_scope({**_custom_classes(model), **(custom_objects or {})}):
        if clone_function is None and input_tensors is None and call_function is None and not recursive:
            config = serialize_keras_object(model)
            config.pop("compile_config", None)
            return deserialize_model(keras2_config.convert_model_config(config))
        clone = _layer_cloner(clone_function, call_function, recursive)
        if isinstance(model, Sequential):
            if call_function is not None:
                raise ValueError(
                    "`call_function` is not supported with Sequential models: their layers are listed, not called "
                    f"at construction. Use it with Functional models; received model '{model.name}'."
                )
            return _clone_sequential(model, clone, input_tensors)
        if isinstance(model, Functional):
            return _clone_functional(model, clone, call_function, input_tensors)
    raise ValueError(
        "Arguments `clone_function`, `call_function`, `input_tensors` and `recursive` are only supported for "
        f"Sequential and Functional models; received a {type(model).__name__} ('{model.name}')."
    )


def _custom_classes(model):
    """{name: class} of the user-defined layers in `model` (keramic's own resolve by name already)."""
    found = {}
    for module in model.modules():
        cls = type(module)
        if cls.__module__.startswith("keramic.") or not hasattr(cls, "from_config"):
            continue
        for name in (registry.get_registered_name(cls), cls.__name__):
            found.setdefault(name, cls)
    return found


def _layer_cloner(clone_function, call_function, recursive):
    """`clone_function` made once per layer (a shared layer stays shared), recursing into models."""
    from keramic.models.functional import Functional
    from keramic.models.sequential import Sequential

    cache = {}

    def clone(layer):
        if id(layer) not in cache:
            if recursive and isinstance(layer, (Sequential, Functional)):
                nested_call = None if isinstance(layer, Sequential) else call_function
                cache[id(layer)] = clone_model(layer, clone_function=clone_function, call_function=nested_call, recursive=True)
            elif clone_function is not None:
                cache[id(layer)] = clone_function(layer)
            else:
                cache[id(layer)] = type(layer).from_config(layer.get_config())
        return cache[id(layer)]

    return clone


def _clone_sequential(model, clone, input_tensors):
    from keramic.layers.input_layer import Input, InputLayer
    from keramic.models.sequential import Sequential

    layers = [clone(layer) for layer in model.layers]
    if input_tensors is not None:
        tensors = flatten(input_tensors)
        if len(tensors) != 1 or not isinstance(tensors[0], KerasTensor):
            raise ValueError(f"A Sequential model takes one symbolic input tensor as `input_tensors`; received {input_tensors!r}.")
        layers.insert(0, tensors[0])
    elif model._layers and isinstance(model._layers[0], InputLayer):
        reference = model._layers[0].output_tensor
        layers.insert(0, Input(batch_shape=reference.shape, dtype=reference.dtype, name=model._layers[0].name))
    return Sequential(layers, name=model.name, trainable=model.trainable)


def _clone_functional(model, clone, call_function, input_tensors):
    """Replay the model's calls in graph order on new inputs, with the cloned layers."""
    from keramic.layers.input_layer import Input
    from keramic.layers.operations import Operation
    from keramic.models.functional import Functional

    if input_tensors is None:
        new_inputs = [Input(batch_shape=t.shape, dtype=t.dtype, sparse=t.sparse, name=t._keras_history[0].name) for t in model.inputs]
    else:
        new_inputs = flatten(input_tensors)
        if len(new_inputs) != len(model.inputs) or not all(isinstance(t, KerasTensor) for t in new_inputs):
            raise ValueError(f"`input_tensors` must be {len(model.inputs)} symbolic tensor(s), as the model's inputs; received {input_tensors!r}.")
    memo = {id(old): new for old, new in zip(model.inputs, new_inputs)}

    def swap(value):
        return memo[id(value)] if isinstance(value, KerasTensor) else value

    call = call_function or (lambda layer, *args, **kwargs: layer(*args, **kwargs))
    for node in model._plan:
        layer = node.layer if isinstance(node.layer, Operation) else clone(node.layer)
        result = call(layer, *map_structure(swap, list(node.call_args)), **map_structure(swap, node.call_kwargs))
        for old, new in zip(node.output_tensors, flatten(result)):
            memo[id(old)] = new
    inputs = map_structure(swap, model._inputs_struct)
    outputs = map_structure(swap, model._outputs_struct)
    return Functional(inputs, outputs, name=model.name, trainable=model.trainable)

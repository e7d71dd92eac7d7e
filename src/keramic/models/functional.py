"""Functional models: a graph of layer calls from symbolic inputs to symbolic outputs."""

import inspect
import warnings

import numpy as np
import torch

from keramic import backend
from keramic.errors import ConfigError
from keramic.layers.base import _LAYER_KWARGS, explicit_training
from keramic.layers.preprocessing import strings
from keramic.models.model import Model
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor, flatten, in_dry_run, map_structure, run_on_placeholders
from keramic.tree import pack_sequence_as
from keramic.utils import naming

_LAYER_INIT_KWARGS = frozenset(("activity_regularizer", "dtype", "autocast", *_LAYER_KWARGS))


def _producer(tensor):
    layer, node_index, _ = tensor._keras_history
    return layer._inbound_nodes[node_index]


def order_graph(outputs, inputs):
    """Nodes and layers of the graph in Keras's order (depth descending, then first reached for
    nodes, first visited for layers).

    Returns (nodes in execution order, layers in `model.layers` order).
    """
    finished, in_progress, post_order, first_visit = set(), set(), [], {}

    def visit(tensor):
        node = _producer(tensor)
        if id(node) in finished:
            return
        if id(node) in in_progress:
            raise ConfigError(f"The graph has a cycle through layer '{node.layer.name}'.")
        first_visit.setdefault(id(node.layer), (len(first_visit), node.layer))
        in_progress.add(id(node))
        for parent in node.input_tensors:
            visit(parent)
        in_progress.discard(id(node))
        finished.add(id(node))
        post_order.append(node)

    for tensor in flatten(outputs):
        visit(tensor)

    # Within a depth, nodes run in the order this backward walk first reaches them (a node itself,
    # or as a parent of one reached): Keras's order, which decides, for a layer called twice, which
    # call draws its random numbers first.
    node_depth, layer_depth, reached = {}, {}, {}
    for node in reversed(post_order):
        reached.setdefault(id(node), len(reached))
        depth = max(node_depth.get(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        node_depth[id(node)] = depth
        for parent in node.parent_nodes:
            reached.setdefault(id(parent), len(reached))
            node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for tensor in flatten(inputs):
        layer = tensor._keras_history[0]
        if id(layer) not in layer_depth:
            layer_depth[id(layer)] = 0
            first_visit.setdefault(id(layer), (-1, layer))

    nodes = sorted(post_order, key=lambda n: (-node_depth[id(n)], reached[id(n)]))
    layers = sorted((pair for pair in first_visit.values()), key=lambda p: (-layer_depth[id(p[1])], p[0]))
    return nodes, [layer for _, layer in layers]


def _cut_at_inputs(inputs, outputs):
    """Keras's rule for model inputs that are not `Input()` tensors (e.g. a FeatureSpace's encoded
    features): each becomes a fresh Input of the same shape and dtype, and the layers between it
    and the outputs are called again on it, so the model starts there."""
    flat = flatten(inputs)
    if all(_producer(tensor).is_input for tensor in flat):
        return inputs, outputs
    from keramic.layers.input_layer import Input

    memo = {
        id(tensor): tensor
        if _producer(tensor).is_input
        else Input(batch_shape=tensor.shape, dtype=tensor.dtype, sparse=tensor.sparse, name=f"{tensor.name}CLONE")
        for tensor in flat
    }

    def swap(value):
        return rebuild(value) if isinstance(value, KerasTensor) else value

    def rebuild(tensor):
        if id(tensor) not in memo:
            node = _producer(tensor)
            if node.is_input:
                return tensor  # an Input the caller did not list: reported as a disconnected graph
            result = node.layer(*map_structure(swap, list(node.call_args)), **map_structure(swap, node.call_kwargs))
            for old, new in zip(node.output_tensors, flatten(result)):
                new.name = f"{old.name}_clone"  # as Keras names the tensors of the cut graph
                memo[id(old)] = new
        return memo[id(tensor)]

    with naming.counts_kept("keras_tensor"):
        return map_structure(lambda tensor: memo[id(tensor)], inputs), map_structure(rebuild, outputs)


def _adjust_rank(value, shape):
    """Keras's input rank rule: a missing trailing axis of size 1 is added, an extra one dropped."""
    if value.ndim == len(shape) - 1 and shape[-1] == 1:
        return value[..., None]
    if value.ndim == len(shape) + 1 and value.shape[-1] == 1:
        return value[..., 0]
    return value


def _check_inputs_reach(nodes, inputs):
    known = {id(t) for t in flatten(inputs)}
    for node in nodes:
        if node.is_input and id(node.output_tensors[0]) not in known:
            raise ConfigError(
                f"Graph disconnected: the output depends on input '{node.layer.name}', "
                "which is not among the model's inputs."
            )


@keras_export("keras.src.models.functional", "Functional")
class Functional(Model):
    """`Model(inputs, outputs)`: runs the recorded layer calls in graph order."""

    _keras_registered_name = "Functional"
    _autocast_inputs = False  # inputs take their Input's dtype instead
    _converts_input_args = False
    _allows_non_tensor_positional_args = True

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        # As Keras: options no layer takes are ignored (a subclass passing its own along, as
        # medicai's AttentionUNet passes `decoder_use_batchnorm` through UNet to `Model`).
        kwargs = {key: value for key, value in kwargs.items() if key in _LAYER_INIT_KWARGS}
        super().__init__(name=name, trainable=trainable, **kwargs)
        for key, tensor in inputs.items() if isinstance(inputs, dict) else ():
            if isinstance(tensor, KerasTensor) and key != tensor.name:  # Keras's warning: data maps by name
                warnings.warn(
                    "When providing `inputs` as a dict, all keys in the dict must match the names of the "
                    f"corresponding tensors. Received key '{key}' mapping to value {tensor} which has name "
                    f"'{tensor.name}'. Change the tensor name to '{key}' (via `Input(..., name='{key}')`)",
                    stacklevel=2,
                )
        if isinstance(inputs, dict) and all(isinstance(k, str) for k in inputs):
            inputs = dict(inputs)
        for tensor in flatten(inputs) + flatten(outputs):
            if not isinstance(tensor, KerasTensor) or tensor._keras_history is None:
                raise ValueError(
                    "Model(inputs, outputs) takes symbolic tensors made by keramic.Input() and layer calls; "
                    f"got {tensor!r}."
                )
        inputs, outputs = _cut_at_inputs(inputs, outputs)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self.__dict__["inputs"] = flatten(inputs)
        self.__dict__["outputs"] = flatten(outputs)
        nodes, layers = order_graph(outputs, inputs)
        _check_inputs_reach(nodes, inputs)
        from keramic.layers.operations import Operation

        self.__dict__["_graph_layers"] = layers
        self.__dict__["_layers"] = [layer for layer in layers if not isinstance(layer, Operation)]
        _check_unique_names(self._layers)
        self.__dict__["_plan"] = [n for n in nodes if not n.is_input]
        # `training` recorded in a node (Keras writes `training: false`) yields to the call's own flag.
        self.__dict__["_run_kwargs"] = {
            id(n): {k: v for k, v in n.call_kwargs.items() if k != "training"} for n in self._plan
        }
        # None for string inputs: torch has no strings, so they reach their layers as numpy arrays.
        self._input_dtypes = [None if t.dtype == "string" else backend.torch_dtype(t.dtype) for t in self.inputs]
        self.built = True
        self._build_shapes = None

    # Keras counts the layers of this model's graph, then those a subclass assigned as attributes
    # (medicai's UNet keeps its whole encoder: the blocks its graph skips still count).
    def _sublayers(self):
        assigned = super()._sublayers()
        if not assigned:
            return self._layers
        seen = {id(layer) for layer in self._layers}
        return self._layers + [layer for layer in assigned if id(layer) not in seen]

    @property
    def layers(self):
        return list(self._layers)

    @property
    def operations(self):
        """Every operation of the graph in order, layers and `keras.ops` calls alike (Keras's `operations`)."""
        return list(self._graph_layers)

    # Saving protocol: the config lists every layer, so `layers` comes first and by position.
    _structure_from_config = True

    def _saveable_children(self):
        rest = [(name, value) for name, value in super()._saveable_children() if name not in ("layers", "_layers")]
        return [("layers", self.layers), *rest]

    # Keras returns the structures given to the constructor (a list or dict stays one).
    @property
    def input(self):
        return self._inputs_struct

    @property
    def output(self):
        return self._outputs_struct

    @property
    def input_names(self):
        return [t._keras_history[0].name for t in self.inputs]

    @property
    def output_names(self):
        """As Keras: the output layers' names (for a dict of outputs, in its sorted-key order)."""
        if isinstance(self._outputs_struct, dict):
            return [self._outputs_struct[key]._keras_history[0].name for key in sorted(self._outputs_struct)]
        return [t._keras_history[0].name for t in self.outputs]

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 and isinstance(self.inputs, list) and not isinstance(self._inputs_struct, (list, dict)) else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]  # as Keras: flat, one output unwrapped
        return shapes[0] if len(shapes) == 1 else shapes

    def get_build_config(self):
        return {"input_shape": None}

    def build_from_config(self, config):
        """A Functional model is built by its graph; nothing to do."""

    def _flatten_call_inputs(self, inputs):
        """Match the caller's inputs (one tensor, a nesting of them, or a dict by name) to
        `self.inputs`. As Keras, any nesting with as many tensors as the model's inputs is taken in
        flat order (with a warning when it differs from the model's)."""
        keys = sorted(self._inputs_struct) if isinstance(self._inputs_struct, dict) else self.input_names
        if isinstance(inputs, dict):
            for key in keys:
                if key not in inputs:
                    raise ValueError(
                        f'Missing data for input "{key}". You passed a data dictionary with keys {list(inputs)}. '
                        f"Expected the following keys: {keys}"
                    )
        values = [inputs[key] for key in keys] if isinstance(inputs, dict) else flatten(inputs)
        if len(values) != len(self.inputs):
            example = ", ".join(f"'{key}': ..." for key in keys)
            raise ValueError(
                f'Layer "{self.name}" expects {len(keys)} named input(s) with keys {keys}, but it received '
                f"{len(values)} input tensors. Pass inputs as a dict, e.g. `layer({{{example}}})`."
            )
        _warn_if_structure_differs(inputs, self._inputs_struct, self.input_names)
        return values

    def _as_input_tensor(self, x):
        """String arrays stay numpy (torch has no strings); `call` hands them to their layers."""
        if isinstance(x, np.ndarray) and x.dtype.kind in "USO":
            return x
        return super()._as_input_tensor(x)

    def call(self, inputs, training=None, mask=None):
        values = {}
        checked = not in_dry_run()  # placeholders stand for unknown sizes
        for index, (tensor, value, dtype) in enumerate(zip(self.inputs, self._flatten_call_inputs(inputs), self._input_dtypes)):
            if dtype is None:
                values[id(tensor)] = _adjust_rank(strings.as_array(value), tensor.shape)
                continue
            if not isinstance(value, torch.Tensor):
                value = backend.convert_to_tensor(value)
            value = _adjust_rank(value, tensor.shape)
            if checked:
                _check_input_shape(index, tensor, tuple(value.shape), self.name)
            if value.dtype != dtype:  # Keras casts every input to its Input's dtype (uint8 images -> float32)
                value = value.to(dtype)
            values[id(tensor)] = value

        def lookup(x):
            return values[id(x)] if isinstance(x, KerasTensor) else x

        explicit = explicit_training(training)
        for node in self._plan:
            args = node.call_args
            kwargs = self._run_kwargs[id(node)]
            if explicit:
                kwargs = {**kwargs, **explicit}
            if len(args) == 1 and not kwargs and isinstance(args[0], KerasTensor):
                outputs = node.layer(values[id(args[0])])
            else:
                outputs = node.layer(*map_structure(lookup, args), **map_structure(lookup, kwargs))
            produced = node.output_tensors
            if len(produced) == 1:  # a lone output may come back wrapped (`[t]`, or a model's `{"name": t}`)
                values[id(produced[0])] = flatten(outputs)[0]
            else:
                for tensor, value in zip(produced, flatten(outputs)):
                    values[id(tensor)] = value
        outputs = map_structure(lookup, self._outputs_struct)
        if type(outputs) is dict:  # as Keras, which packs a plain dict of outputs in key order
            outputs = {key: outputs[key] for key in sorted(outputs)}
        # As Keras: a one-element list (or tuple) of outputs comes back as the bare tensor.
        return outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs

    def compute_output_spec(self, *args, **kwargs):
        """As Keras, the graph runs on the shapes it is called with: an encoder built on
        `Input((None, 8))` and called on `(None, 9, 8)` outputs `(None, 9, ...)`."""
        declared = map_structure(lambda t: KerasTensor(t.shape, t.dtype), self._outputs_struct)
        given = flatten(args[0] if args else kwargs.get("inputs"))
        narrower = any(
            isinstance(value, KerasTensor) and len(value.shape) == len(tensor.shape)
            and any(want is None and got is not None for want, got in zip(tensor.shape[1:], value.shape[1:]))
            for tensor, value in zip(self.inputs, given)
        )
        if not narrower:
            return declared
        try:
            with warnings.catch_warnings():  # the caller's own call warns already
                warnings.simplefilter("ignore")
                found = flatten(run_on_placeholders(self.call, args, kwargs))
        except Exception:
            return declared
        if len(found) != len(flatten(declared)):
            return declared
        merged = [
            KerasTensor(tuple(old if new is None else new for old, new in zip(d.shape, f.shape)), d.dtype)
            if isinstance(f, KerasTensor) and len(f.shape) == len(d.shape) else d
            for d, f in zip(flatten(declared), found)
        ]
        return pack_sequence_as(declared, merged)

    def add_loss(self, loss):
        """As Keras: a Functional model adds no losses of its own; a layer's `call` adds them."""
        raise NotImplementedError(
            "A Functional model cannot add losses outside a layer's call(); add them in a layer's call() "
            "or pass them to compile(loss=...)."
        )

    def get_config(self):
        if not functional_like_constructor(type(self)):
            # As Keras: a subclass with its own constructor (`MyModel(**kwargs)` building its graph
            # inside) saves only its base config, and is rebuilt by calling that constructor.
            return Model.get_config(self)
        from keramic.models.functional_config import functional_config

        return functional_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from keramic.models.functional_config import functional_from_config
        from keramic.saving.formats.keras2_config import from_tf_keras_get_config

        if not functional_like_constructor(cls):
            return cls(**config)
        return functional_from_config(cls, from_tf_keras_get_config("Functional", config), custom_objects)


def _check_unique_names(layers) -> None:
    """As Keras: two layers of one model (its Inputs included) may not share a name."""
    seen: set = set()
    for layer in layers:
        if layer.name in seen:
            count = sum(other.name == layer.name for other in layers)
            raise ValueError(f'The name "{layer.name}" is used {count} times in the model. All operation names should be unique.')
        seen.add(layer.name)


def _check_input_shape(index, tensor, found, model_name) -> None:
    """As Keras: an input of another rank, or another size on an axis its Input fixes, is an error."""
    expected = tuple(tensor.shape)
    if len(found) != len(expected) or any(want is not None and want != got for want, got in zip(expected, found)):
        raise ValueError(
            f"Input {index} with name '{tensor.name}' of layer '{model_name}' is incompatible with the layer: "
            f"expected shape={expected}, found shape={found}"
        )


def _same_structure(given, expected) -> bool:
    """Keras's check of call inputs: lists and tuples are alike; dicts must have the same keys."""
    if isinstance(expected, dict):
        return isinstance(given, dict) and given.keys() == expected.keys() and all(
            _same_structure(given[key], value) for key, value in expected.items()
        )
    if isinstance(expected, (list, tuple)):
        return isinstance(given, (list, tuple)) and len(given) == len(expected) and all(
            _same_structure(a, b) for a, b in zip(given, expected)
        )
    return not isinstance(given, (list, tuple, dict))


def _warn_if_structure_differs(inputs, expected, input_names) -> None:
    """Keras's warning for inputs nested otherwise than the model's, as many as it has (fewer or
    more are an error instead); a dict for a model whose inputs are not a dict is taken as its
    inputs by name first, as Keras."""
    if isinstance(inputs, dict) and not isinstance(expected, dict):
        inputs = [inputs[name] for name in input_names if name in inputs]
    given = [inputs[key] for key in expected if key in inputs] if isinstance(inputs, dict) and isinstance(expected, dict) else inputs
    if _same_structure(inputs, expected) or len(flatten(given)) != len(flatten(expected)):
        return
    names = map_structure(lambda tensor: tensor.name, expected)
    shown = map_structure(lambda value: f"Tensor(shape={tuple(value.shape)})" if hasattr(value, "shape") else value, inputs)
    warnings.warn(
        f"The structure of `inputs` doesn't match the expected structure.\nExpected: {names}\nReceived: inputs={shown}",
        stacklevel=4,
    )


def functional_like_constructor(cls) -> bool:
    """Whether `cls(inputs, outputs, name)` is how to rebuild `cls` (Keras's test: the same named
    arguments as `Functional.__init__`, or `*args, **kwargs`)."""
    if cls.__init__ is Functional.__init__:
        return True
    spec = inspect.getfullargspec(cls.__init__)
    return spec.args[1:] == ["inputs", "outputs", "name"] or (spec.varargs is not None and spec.varkw is not None)

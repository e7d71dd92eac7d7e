"""The Layer base class: a `torch.nn.Module` with Keras's naming, lazy build, weights and configs."""

import functools
import inspect
import threading

import numpy as np
import torch

from keramic import backend, dtype_policies
from keramic.errors import NotBuiltError
from keramic.serialization import restore_hooks, serialize
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor, Node, any_symbolic, flatten, map_structure, run_on_placeholders, shape_of
from keramic.utils import naming


class _CallContext(threading.local):
    """Per-thread state of the call in progress: training flag, name scopes, pending losses."""

    def __init__(self):
        self.training = None
        self.scopes = []
        self.depth = 0
        self.layers_with_losses = []


_context = _CallContext()

_LAYER_KWARGS = ("input_shape", "batch_input_shape", "batch_size", "input_dim")


def _call_signature_flags(cls):
    """Cache on the class which of `training` / `mask` its `call` accepts (read once per class)."""
    flags = cls.__dict__.get("_call_flags")
    if flags is None:
        parameters = inspect.signature(cls.call).parameters
        takes_var_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        training_default = parameters["training"].default if "training" in parameters else None
        flags = ("training" in parameters, "mask" in parameters, takes_var_kwargs, training_default)
        cls._call_flags = flags
    return flags


@keras_export("keras.layers")
class Layer(torch.nn.Module):
    """Base of every layer and model.

    >>> class Scale(keramic.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.factor = self.add_weight(shape=(), initializer="ones", name="factor")
    ...     def call(self, x):
    ...         return x * self.factor
    """

    _records_build_config = False

    def __init_subclass__(cls, **kwargs):
        """Wrap each class's own `build` so that calling it directly marks the layer built."""
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        if build is None or getattr(build, "_marks_built", False):
            return

        @functools.wraps(build)
        def build_and_mark(self, *args, **kwargs):
            build(self, *args, **kwargs)
            if self._build_shapes is None:
                self._build_shapes = tuple(args[0]) if args and args[0] is not None and not isinstance(args[0], dict) else (kwargs or None)
            self.built = True

        build_and_mark._marks_built = True
        cls.build = build_and_mark

    def __new__(cls, *args, **kwargs):
        layer = super().__new__(cls)
        torch.nn.Module.__init__(layer)
        state = layer.__dict__
        state["_init_args"] = (args, kwargs)
        state["_tracked_order"] = []
        state["_own_trainable"] = []
        state["_own_non_trainable"] = []
        state["_inbound_nodes"] = []
        state["_call_losses"] = []
        # Layers without a `build` of their own have nothing to build (and no build_config),
        # unless Keras's version of the layer records a build_config anyway.
        state["built"] = cls.build is Layer.build and not cls._records_build_config
        state["_trainable"] = True
        state["_build_shapes"] = None
        state["supports_masking"] = False
        return layer

    def __init__(self, *, activity_regularizer=None, trainable=True, dtype=None, autocast=True, name=None, **kwargs):
        unknown = set(kwargs) - set(_LAYER_KWARGS)
        if unknown:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}")
        self._input_shape_arg = self._input_shape_from_kwargs(kwargs)
        self.name = name or naming.auto_name(type(self).__name__)
        self.dtype_policy = dtype_policies.get(dtype)
        self.autocast = autocast
        self._trainable = bool(trainable)
        from keramic import regularizers

        self.activity_regularizer = regularizers.get(activity_regularizer)

    @staticmethod
    def _input_shape_from_kwargs(kwargs):
        if "batch_input_shape" in kwargs:
            return tuple(kwargs["batch_input_shape"])
        if "input_shape" in kwargs:
            return (kwargs.get("batch_size"),) + tuple(kwargs["input_shape"])
        if "input_dim" in kwargs:
            return (kwargs.get("batch_size"), kwargs["input_dim"])
        return None

    # ---------------------------------------------------------------- tracking
    def __setattr__(self, name, value):
        state = self.__dict__
        if isinstance(value, backend.Variable):
            if not any(value is v for v in state["_own_trainable"] + state["_own_non_trainable"]):
                (state["_own_trainable"] if value.trainable else state["_own_non_trainable"]).append(value)
        if name not in state["_tracked_order"] and not name.startswith("__"):
            if isinstance(value, (Layer, list, tuple, dict)):
                state["_tracked_order"].append(name)
        super().__setattr__(name, value)

    def _sublayers(self):
        """Direct sub-layers in the order they were assigned (lists and dicts searched too)."""
        found, seen = [], set()

        def visit(value):
            if isinstance(value, Layer):
                if id(value) not in seen:
                    seen.add(id(value))
                    found.append(value)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    visit(item)
            elif isinstance(value, dict):
                for item in value.values():
                    visit(item)

        for attribute in self._tracked_order:
            visit(getattr(self, attribute, None))
        return found

    def _flatten_layers(self, include_self=True, recursive=True):
        result, seen = [], set()
        stack = [self] if include_self else list(self._sublayers())
        while stack:
            layer = stack.pop(0)
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            result.append(layer)
            if recursive:
                stack = list(layer._sublayers()) + stack
        return result

    # ---------------------------------------------------------------- weights
    @property
    def dtype(self):
        return self.dtype_policy.variable_dtype

    @property
    def compute_dtype(self):
        return self.dtype_policy.compute_dtype

    @property
    def variable_dtype(self):
        return self.dtype_policy.variable_dtype

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        value = bool(value)
        self.__dict__["_trainable"] = value
        for variable in self._own_trainable:
            variable.trainable = value
        for layer in self._sublayers():
            layer.trainable = value

    def add_weight(
        self,
        shape=None,
        initializer=None,
        dtype=None,
        trainable=True,
        autocast=True,
        regularizer=None,
        constraint=None,
        aggregation="none",
        overwrite_with_gradient=False,
        name=None,
    ):
        """Create a variable owned by this layer (usually from `build`)."""
        from keramic import constraints, initializers, regularizers

        shape = () if shape is None else tuple(int(d) for d in shape)
        dtype = backend.standardize_dtype(dtype or self.variable_dtype)
        if initializer is None:
            initializer = "glorot_uniform" if backend.is_float_dtype(dtype) else "zeros"
        initializer = initializers.get(initializer)
        name = name or "variable"
        path = "/".join([*_context.scopes, name]) if _context.scopes else f"{self.name}/{name}"
        # A checkpoint loaded before this variable existed supplies its value (no initializer run).
        restored = restore_hooks.take_layer_value(self, name, shape, dtype) if restore_hooks.PENDING else None
        if restored is not None:
            value = restored
        elif restore_hooks.initializers_skipped():
            value = torch.empty(shape, dtype=backend.torch_dtype(dtype), device=backend.get_device())
        else:
            with torch.no_grad():
                value = initializer(shape, dtype=dtype)
        variable = backend.Variable.from_fresh_tensor(value, name=name, trainable=trainable, path=path)
        variable.constraint = constraints.get(constraint)
        variable.regularizer = regularizers.get(regularizer)
        variable.overwrite_with_gradient = overwrite_with_gradient
        (self._own_trainable if trainable else self._own_non_trainable).append(variable)
        # Register with torch under a private name so `module.parameters()` sees it too.
        self.register_parameter(f"_weight_{len(self._own_trainable) + len(self._own_non_trainable)}", variable)
        return variable

    def add_variable(self, shape, initializer, dtype=None, trainable=True, name=None, **kwargs):
        return self.add_weight(shape=shape, initializer=initializer, dtype=dtype, trainable=trainable, name=name, **kwargs)

    def _dedup(self, variables):
        seen, result = set(), []
        for variable in variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                result.append(variable)
        return result

    @property
    def weights(self):
        """Own variables (trainable first, creation order), then each sub-layer's."""
        own = self._own_trainable + self._own_non_trainable
        return self._dedup(own + [v for layer in self._sublayers() for v in layer.weights])

    variables = weights

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [v for v in self.weights if v.trainable]

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return [v for v in self.weights if not v.trainable]

    non_trainable_variables = non_trainable_weights

    def count_params(self):
        if not self.built:
            raise NotBuiltError(f"Layer '{self.name}' is not built yet; call it or build it to count its parameters.")
        return int(sum(np.prod(v.shape) for v in self.weights))

    def get_weights(self):
        """Current values as numpy arrays, in `weights` order."""
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        """Set every weight from numpy arrays given in `weights` order; shapes must match."""
        from keramic.errors import ShapeMismatchError

        own = self.weights
        if len(weights) != len(own):
            raise ShapeMismatchError(
                f"Layer '{self.name}' expects {len(own)} weight arrays, but {len(weights)} were given."
            )
        for variable, value in zip(own, weights):
            value = np.asarray(value)
            if tuple(value.shape) != tuple(variable.shape):
                raise ShapeMismatchError(
                    f"Layer '{self.name}': weight '{variable.path}' has shape {tuple(variable.shape)}, "
                    f"but the given array has shape {tuple(value.shape)}."
                )
        for variable, value in zip(own, weights):
            variable.assign(value)

    # ---------------------------------------------------------------- losses
    def add_loss(self, loss):
        """Add a scalar loss (e.g. an activity penalty) computed during `call`."""
        if not self._call_losses:
            _context.layers_with_losses.append(self)
        self._call_losses.append(loss)

    @property
    def losses(self):
        """Losses added during the last call plus the weight regularization penalties."""
        result = []
        for layer in self._flatten_layers():
            result.extend(layer._call_losses)
            for variable in layer._own_trainable + layer._own_non_trainable:
                regularizer = getattr(variable, "regularizer", None)
                if regularizer is not None and variable.trainable:
                    result.append(regularizer(variable))
        return result

    # ---------------------------------------------------------------- build
    def build(self, input_shape):
        """Create weights once the input shape is known. The default creates none."""

    def _build_arguments(self, args, kwargs):
        """Map call arguments to `build`'s parameters (`input_shape`, or `query_shape`, ...)."""
        parameters = [p for p in inspect.signature(self.build).parameters.values() if p.kind is not p.VAR_KEYWORD]
        if len(parameters) <= 1 or not all(p.name.endswith("_shape") for p in parameters):
            return (shape_of(args[0]) if args else None,), None
        bound = inspect.signature(self.call).bind_partial(*args, **kwargs).arguments
        shapes = {}
        for parameter in parameters:
            value = bound.get(parameter.name[: -len("_shape")])
            if value is not None:
                shapes[parameter.name] = shape_of(value)
        return (), shapes

    def _maybe_build(self, args, kwargs):
        if self.built:
            return
        positional, shapes = self._build_arguments(args, kwargs)
        _context.scopes.append(self.name)
        try:
            if shapes is None:
                self.build(*positional)
            else:
                self.build(**shapes)
        finally:
            _context.scopes.pop()
        self._build_shapes = positional[0] if shapes is None else shapes
        self.built = True

    def get_build_config(self):
        if self._build_shapes is None:
            return None
        if isinstance(self._build_shapes, dict):
            return {"shapes_dict": {k: _shape_to_json(v) for k, v in self._build_shapes.items()}}
        return {"input_shape": _shape_to_json(self._build_shapes)}

    def build_from_config(self, config):
        """Rebuild from `get_build_config()` output (so weights exist before they are loaded)."""
        if not config:
            return
        if "shapes_dict" in config:
            shapes = {k: _shape_from_json(v) for k, v in config["shapes_dict"].items()}
            _context.scopes.append(self.name)
            try:
                self.build(**shapes)
            finally:
                _context.scopes.pop()
            self._build_shapes = shapes
        else:
            shape = _shape_from_json(config.get("input_shape"))
            _context.scopes.append(self.name)
            try:
                self.build(shape)
            finally:
                _context.scopes.pop()
            self._build_shapes = shape
        self.built = True

    # ---------------------------------------------------------------- call
    def call(self, *args, **kwargs):
        raise NotImplementedError(f"Layer {type(self).__name__} does not implement call().")

    def __call__(self, *args, **kwargs):
        if any_symbolic(args, kwargs):
            return self._symbolic_call(args, kwargs)
        if args and not isinstance(args[0], torch.Tensor):
            args = (map_structure(self._as_input_tensor, args[0]),) + args[1:]
        has_training, has_mask, _, training_default = _call_signature_flags(type(self))
        context = _context
        outer_training = context.training
        if has_training:
            training = kwargs.get("training")
            if training is None:
                training = outer_training if outer_training is not None else training_default
            kwargs["training"] = training
        else:
            training = kwargs.pop("training", None) if "training" in kwargs else outer_training
        previous_mask = None
        if (has_mask or self.supports_masking) and args:
            previous_mask = _collect_mask(args[0])
            if has_mask and previous_mask is not None and kwargs.get("mask") is None:
                kwargs["mask"] = previous_mask
        entry = context.depth == 0
        if entry and context.layers_with_losses:
            for layer in context.layers_with_losses:
                layer.__dict__["_call_losses"] = []
            context.layers_with_losses = []
        context.depth += 1
        context.training = training
        try:
            if not self.built:
                self._maybe_build(args, kwargs)
                context.scopes.append(self.name)
                try:
                    outputs = self.call(*args, **kwargs)
                finally:
                    context.scopes.pop()
            else:
                outputs = self.call(*args, **kwargs)
        finally:
            context.depth -= 1
            context.training = outer_training
        if self.activity_regularizer is not None:
            for output in flatten(outputs):
                if isinstance(output, torch.Tensor):
                    self.add_loss(self.activity_regularizer(output))
        if self.supports_masking or type(self).compute_mask is not Layer.compute_mask:
            output_mask = self.compute_mask(args[0] if args else None, previous_mask)
            if output_mask is not None:
                _attach_mask(outputs, output_mask)
        return outputs

    def _as_input_tensor(self, x):
        """NumPy inputs become tensors; float ones in the layer's compute dtype, as Keras autocasts."""
        if isinstance(x, np.ndarray) or isinstance(x, (float, int, np.generic)):
            array = np.asarray(x)
            return backend.convert_to_tensor(array, self.compute_dtype if array.dtype.kind == "f" else None)
        return x

    def _symbolic_call(self, args, kwargs):
        """Call on KerasTensors: build, infer the outputs' shapes, and record a graph node."""
        self._maybe_build(args, kwargs)
        outputs = self.compute_output_spec(*args, **kwargs)
        Node(self, args, kwargs, outputs)
        return outputs

    def compute_output_spec(self, *args, **kwargs):
        """Output KerasTensors: from `compute_output_shape` when a layer defines it, else by a dry run."""
        if type(self).compute_output_shape is not Layer.compute_output_shape:
            shape = self.compute_output_shape(shape_of(args[0]))
            return _shapes_to_tensors(shape, self.compute_dtype)
        kwargs = dict(kwargs)
        kwargs.setdefault("training", False) if _call_signature_flags(type(self))[0] else None
        return run_on_placeholders(self.call, args, kwargs)

    def compute_output_shape(self, input_shape):
        """Output shape(s) for an input shape; by default found by a dry run on zeros."""
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            placeholders = [KerasTensor(s, self.compute_dtype) for s in input_shape]
        else:
            placeholders = KerasTensor(input_shape, self.compute_dtype)
        spec = run_on_placeholders(self.call, (placeholders,), {})
        return map_structure(lambda t: t.shape, spec)

    def compute_mask(self, inputs, previous_mask):
        """Mask of the outputs; layers that support masking pass the input mask through."""
        return previous_mask if self.supports_masking else None

    # ---------------------------------------------------------------- graph info
    def _node_output(self, attribute):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer '{self.name}' has never been called on a symbolic input; it has no {attribute}.")
        if len(self._inbound_nodes) > 1:
            raise AttributeError(f"Layer '{self.name}' has several inbound nodes; its {attribute} is ambiguous.")
        node = self._inbound_nodes[0]
        return node

    @property
    def input(self):
        node = self._node_output("input")
        return node.input_tensors[0] if len(node.input_tensors) == 1 else node.input_tensors

    @property
    def output(self):
        node = self._node_output("output")
        return node.outputs

    # ---------------------------------------------------------------- config
    def get_config(self):
        """Keras's base keys (`name`, `trainable`, `dtype`), plus constructor arguments of custom layers."""
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": serialize.serialize_keras_object(self.dtype_policy),
        }
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = serialize.serialize_keras_object(self.activity_regularizer)
        if not _is_keramic_class(type(self)):
            config.update(_auto_config(self))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = dtype_policies.get(config["dtype"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other


def _is_keramic_class(cls):
    return cls.__module__.startswith("keramic.")


def _auto_config(layer):
    """Constructor arguments of a custom layer whose class has no get_config of its own."""
    args, kwargs = layer._init_args
    init = type(layer).__init__
    if init is Layer.__init__:
        return {}
    try:
        bound = inspect.signature(init).bind(None, *args, **kwargs).arguments
    except TypeError:
        return {}
    bound.pop(next(iter(bound)))  # self
    extra = {}
    for key, value in bound.items():
        parameter = inspect.signature(init).parameters[key]
        if parameter.kind is parameter.VAR_KEYWORD:
            extra.update({k: v for k, v in value.items() if k not in ("name", "trainable", "dtype")})
        elif parameter.kind is not parameter.VAR_POSITIONAL and key not in ("name", "trainable", "dtype"):
            extra[key] = value
    return extra




def _collect_mask(inputs):
    if isinstance(inputs, (list, tuple)):
        masks = [getattr(x, "_keras_mask", None) for x in inputs]
        return None if all(m is None for m in masks) else masks
    return getattr(inputs, "_keras_mask", None)


def _attach_mask(outputs, mask):
    if isinstance(outputs, torch.Tensor):
        outputs._keras_mask = mask
    elif isinstance(outputs, (list, tuple)):
        masks = mask if isinstance(mask, (list, tuple)) else [mask] * len(outputs)
        for output, item in zip(outputs, masks):
            if isinstance(output, torch.Tensor) and item is not None:
                output._keras_mask = item


def _shapes_to_tensors(shape, dtype):
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, (list, tuple)) for s in shape):
        return [KerasTensor(s, dtype) for s in shape]
    if isinstance(shape, dict):
        return {key: KerasTensor(s, dtype) for key, s in shape.items()}
    return KerasTensor(shape, dtype)


def _shape_to_json(shape):
    if isinstance(shape, dict):
        return {k: _shape_to_json(v) for k, v in shape.items()}
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return [_shape_to_json(s) for s in shape]
    return None if shape is None else [None if d is None else int(d) for d in shape]


def _shape_from_json(shape):
    if shape is None:
        return None
    if isinstance(shape, dict):
        return {k: _shape_from_json(v) for k, v in shape.items()}
    if shape and isinstance(shape[0], (list, tuple)):
        return [_shape_from_json(s) for s in shape]
    return tuple(shape)


def pending_call_losses():
    """Losses added by `add_loss` during the outermost call in progress or just finished."""
    return [loss for layer in _context.layers_with_losses for loss in layer._call_losses]


def serialize_or_none(obj):
    """The Keras config of `obj`, or None for None."""
    return serialize.serialize_keras_object(obj) if obj is not None else None


def weight_settings(layer, names, activity=False, prefix=""):
    """`<name>_initializer`, `_regularizer` (then `activity_regularizer`) and `_constraint` configs of each weight name."""
    kinds = [[f"{name}_{kind}" for name in names] for kind in ("initializer", "regularizer", "constraint")]
    keys = kinds[0] + kinds[1] + (["activity_regularizer"] if activity else []) + kinds[2]
    return {key: serialize_or_none(getattr(layer, prefix + key)) for key in keys}

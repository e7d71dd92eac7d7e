"""The Layer base class: a `torch.nn.Module` with Keras's naming, lazy build, weights and configs."""

import contextlib
import functools
import inspect
import random
import threading
import warnings

import numpy as np
import torch
from torch.nn.modules import module as torch_module

from keramic import backend, dtype_policies, rematerialization
from keramic.errors import NotBuiltError, WeightsMismatchError
from keramic.layers import auto_config, symbolic_masks, tf_graph
from keramic.layers.input_spec import assert_input_compatibility
from keramic.layers.stateless_call import stateless_call as _stateless_call
from keramic.random import SeedGenerator
from keramic.serialization import restore_hooks, saveable, serialize
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor, Node, any_symbolic, flatten, in_dry_run, map_structure, run_on_placeholders, shape_of
from keramic.symbolic import building as symbolic_building
from keramic.utils import naming


class _CallContext(threading.local):
    """Per-thread state of the call in progress: training flag, name scopes, pending losses."""

    def __init__(self):
        self.training = None
        self.scopes = []
        self.depth = 0
        self.layers_with_losses = []
        self.autocasting = False  # an enclosing call of a mixed-precision layer set Keras's autocast scope


_context = _CallContext()


def explicit_training(training):
    """`{"training": training}` for a model's `call(x, training=...)` made directly, whose layers must
    be told (a call through `__call__` already set the flag every layer reads); else `{}`."""
    return {} if training is None or training is _context.training else {"training": training}


def building_scopes() -> list:
    """Names of the layers being built or called around this point, outermost first (Keras puts
    them in the path of a variable made there, a SeedGenerator's state included)."""
    return list(_context.scopes)

_LAYER_KWARGS = ("input_shape", "batch_input_shape", "batch_size", "input_dim")
# Attribute values that are never variables, layers or containers: set without the tracking checks.
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


def _call_signature_flags(cls):
    """Cache on the class which of `training` / `mask` its `call` accepts (read once per class)."""
    flags = cls.__dict__.get("_call_flags")
    if flags is None:
        parameters = inspect.signature(cls.call).parameters
        takes_var_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        training_default = parameters["training"].default if "training" in parameters else None
        training_default = None if training_default is inspect.Parameter.empty else training_default
        flags = ("training" in parameters, "mask" in parameters, takes_var_kwargs, training_default)
        cls._call_flags = flags
    return flags


def _keyword_call_arguments(cls, args, kwargs):
    """Arguments given by position from `call`'s `training` on move to keywords, as Keras reads a
    positional `training` (CaiT's `self.attn_drop(attn, training)`); a `None` there means unset."""
    names = cls.__dict__.get("_keyword_from")
    if names is None:
        parameters = list(inspect.signature(cls.call).parameters.values())[1:]
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = ()
        for index, parameter in enumerate(positional):
            if parameter.name == "training":
                if all(p.kind is p.POSITIONAL_OR_KEYWORD for p in positional[index:]):
                    names = (index, tuple(p.name for p in positional[index:]))
                break
        cls._keyword_from = names
    if not names or len(args) <= names[0]:
        return args, kwargs
    index, keywords = names
    moved = dict(zip(keywords, args[index:]))
    if moved["training"] is None:
        del moved["training"]
    return args[:index], {**kwargs, **moved}


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
    input_spec = None  # as Keras: what calls must look like (rank, sizes); layers set it, each call checks it
    # Keras refuses Python numbers as positional inputs (`model([1, 10, 7])`: ValueError); op nodes
    # take them as constants, models refuse them as Keras does.
    _rejects_python_numbers = False
    # As Keras: only tensors (or None) go by position (`Dense(3)(x, True)` is a ValueError), except
    # for Functional models, op nodes and preprocessing layers, which take Python values and strings.
    _allows_non_tensor_positional_args = False
    # tf.autograph (inside `tf.data.Dataset.map`) calls objects carrying this marker as they are,
    # rather than rewriting keramic's torch code into graph code (see keramic.layers.tf_graph).
    autograph_info__: frozenset = frozenset()

    def __init_subclass__(cls, **kwargs):
        """Wrap each class's own `build` so that calling it directly marks the layer built."""
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        if build is None or getattr(build, "_marks_built", False):
            return

        @functools.wraps(build)
        def build_and_mark(self, *args, **kwargs):
            # As Keras: a build called directly (a parent's build building its sublayers) runs in the
            # layer's own name scope, as one its first call makes (`_maybe_build`) does.
            scoped = type(self).build is build_and_mark and not (_context.scopes and _context.scopes[-1] == self.name)
            if scoped:
                _context.scopes.append(self.name)
            state = self.__dict__
            state["_building"] = state.get("_building", 0) + 1  # as Keras: state stays open until build returns
            try:
                if "_path" not in self.__dict__:  # as Keras: set as the build starts (a DTypePolicyMap looks it up)
                    self.__dict__["_path"] = "/".join(self._weight_prefix())
                build(self, *args, **kwargs)
            finally:
                state["_building"] -= 1
                if scoped:
                    _context.scopes.pop()
            if self._build_shapes is None:
                self._build_shapes = tuple(args[0]) if args and args[0] is not None and not isinstance(args[0], dict) else (kwargs or None)
            self.built = True
            if restore_hooks.PENDING and type(self).build is build_and_mark:  # the outermost build only
                restore_hooks.layer_built(self)

        build_and_mark._marks_built = True
        cls.build = build_and_mark

    def __new__(cls, *args, **kwargs):
        layer = super().__new__(cls)
        torch.nn.Module.__init__(layer)
        state = layer.__dict__
        state["_init_args"] = (args, kwargs)
        state["_tracked_order"] = []
        state["_saveable_attrs"] = set()
        state["_own_trainable"] = []
        state["_own_non_trainable"] = []
        state["_seed_generators"] = []  # their states are `variables`, not `weights` (as in Keras)
        state["_inbound_nodes"] = []
        state["_call_losses"] = []
        # Layers without a `build` of their own have nothing to build (and no build_config),
        # unless Keras's version of the layer records a build_config anyway (as for a user's layer).
        state["built"] = cls.build is Layer.build and not cls._records_build_config and not _first_keramic_class_is_layer(cls)
        state["_trainable"] = True
        state["_build_shapes"] = None
        state["supports_masking"] = cls.compute_mask is not Layer.compute_mask  # Keras: a layer writing compute_mask supports masks
        # Torch-side view (see docs/torch.md): attribute -> variable (for mixed-precision autocast),
        # `_modules` keys this class derived from layer names, and the device inputs are sent to.
        state["_variable_attrs"] = {}
        state["_derived_children"] = []
        state["_device"] = backend.get_device()
        state["_remat_mode"] = rematerialization.get_current_remat_mode()  # as Keras: the scope at construction
        return layer

    def __init__(self, *, activity_regularizer=None, trainable=True, dtype=None, autocast=True, name=None, **kwargs):
        unknown = set(kwargs) - set(_LAYER_KWARGS)
        if unknown:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}")
        if name is not None and (not isinstance(name, str) or "/" in name):
            raise ValueError(
                "Argument `name` must be a string and cannot contain character `/`. "
                f"Received: name={name} (of type {type(name)})"
            )
        self._input_shape_arg = self._input_shape_from_kwargs(kwargs)
        self.name = name or naming.auto_name(type(self).__name__)
        self.dtype_policy = dtype_policies.get(dtype)
        self.autocast = autocast
        self._trainable = bool(trainable)
        from keramic import regularizers

        self.activity_regularizer = regularizers.get(activity_regularizer)

    @staticmethod
    def _input_shape_from_kwargs(kwargs):
        if "batch_input_shape" in kwargs:  # Keras 2 configs
            return tuple(kwargs["batch_input_shape"])
        if kwargs.get("input_shape") is None and kwargs.get("input_dim") is None:
            return None
        warnings.warn(
            "Do not pass an `input_shape`/`input_dim` argument to a layer. When using Sequential models, "
            "prefer using an `Input(shape)` object as the first layer in the model instead.",
            stacklevel=3,
        )
        if kwargs.get("input_shape") is not None:
            return (kwargs.get("batch_size"),) + tuple(kwargs["input_shape"])
        return (kwargs.get("batch_size"), kwargs["input_dim"])

    # ---------------------------------------------------------------- tracking
    def __setattr__(self, name, value):
        state = self.__dict__
        if type(value) in _PLAIN_TYPES and not (
            name in state["_variable_attrs"] or name in state["_saveable_attrs"] or name in state["_modules"]
            or name in state["_parameters"] or name in state["_buffers"]
        ):
            object.__setattr__(self, name, value)  # a plain value where nothing tracked was: nothing to update
            return
        if isinstance(value, torch.Tensor) and isinstance(value, backend.Variable):  # the Tensor check skips Parameter's slow metaclass check
            if not any(value is v for v in state["_own_trainable"] + state["_own_non_trainable"]):
                (state["_own_trainable"] if value.trainable else state["_own_non_trainable"]).append(value)
                self._register_variable(value)
            # A plain attribute: torch already knows the variable (registered once, by its own name).
            state["_variable_attrs"][name] = value
            object.__setattr__(self, name, value)
            return
        if isinstance(value, SeedGenerator) and not any(value is g for g in state["_seed_generators"]):
            state["_seed_generators"].append(value)
        structural = isinstance(value, (Layer, list, tuple, dict))
        if state["_variable_attrs"].pop(name, None) is not None and not structural:
            object.__setattr__(self, name, value)  # replacing a variable attribute keeps the variable registered
            return
        # Classify once, here, what the saving walk visits (children and containers), so a walk
        # never has to list and test every attribute of every layer.
        if (structural and name in state["_tracked_order"] and (not state["built"] or state.get("_building"))
                and not type(self).__module__.startswith("keramic.")):
            _retire_replaced_layers(self, name, value)
        if structural or saveable.saving_kind(value):
            state["_saveable_attrs"].add(name)
            if structural and name not in state["_tracked_order"] and not name.startswith("__"):
                state["_tracked_order"].append(name)
        else:
            state["_saveable_attrs"].discard(name)
        if isinstance(value, (torch.nn.Module, torch.Tensor)) or name in state["_modules"] or name in state["_parameters"] or name in state["_buffers"]:
            super().__setattr__(name, value)
        else:
            object.__setattr__(self, name, value)  # what torch does for plain values, without its checks

    # ---------------------------------------------------------------- torch.nn.Module view
    def _register_variable(self, variable):
        """Put a variable in `_parameters` once, keyed by its name (made unique in this layer).

        A variable another layer registered first (tied weights) stays with that layer, so
        `state_dict()` holds each variable exactly once.
        """
        if getattr(variable, "_keramic_registered", False):
            return
        key = _unique_key(variable.name.replace(".", "_"), self._parameters, self._modules)
        self._parameters[key] = variable
        variable._keramic_registered = True

    def _sync_children(self):
        """Register in `_modules` the sub-layers torch cannot see from attributes (graph and
        Sequential layers, layers in lists and dicts), keyed by layer name; drop stale ones."""
        modules, derived = self._modules, self.__dict__["_derived_children"]
        by_attribute = {id(m) for key, m in modules.items() if key not in derived and m is not None}
        wanted = [layer for layer in self._sublayers() if id(layer) not in by_attribute]
        if [modules.get(key) for key in derived] == wanted:
            return
        for key in derived:
            modules.pop(key, None)
        derived.clear()
        for layer in wanted:
            key = _unique_key(layer.name.replace(".", "_"), self._parameters, modules)
            modules[key] = layer
            derived.append(key)

    def _sync_tree(self):
        for layer in self._flatten_layers():
            layer._sync_children()

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            self._sync_tree()
        return super().named_modules(memo, prefix, remove_duplicate)

    def named_children(self):
        self._sync_children()
        return super().named_children()

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        if destination is None and not prefix:
            self._sync_tree()
        return super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        self._sync_tree()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn, recurse=True):
        """`.to()`, `.cuda()`, `.half()`, `.double()`: cast and move variables in place, then let
        the dtype policy and the input device follow (a float64 model computes in float64)."""
        self._sync_children()
        result = super()._apply(fn, recurse)
        probe = fn(torch.zeros((), dtype=backend.torch_dtype(self.variable_dtype), device=self._device))
        if probe.is_floating_point() and probe.dtype != backend.torch_dtype(self.variable_dtype):
            self.dtype_policy = dtype_policies.DTypePolicy(backend.standardize_dtype(probe.dtype))
        self.__dict__["_device"] = probe.device
        return result

    def forward(self, *args, **kwargs):
        """torch's entry point (DDP, hooks): the same as calling the layer."""
        return self(*args, **kwargs)

    def _sublayers(self):
        """Direct sub-layers in the order they were assigned (lists and dicts searched too)."""
        found, seen = [], set()
        retired = self.__dict__.get("_retired_layers", {})
        for attribute in self._tracked_order:
            for layer in _layers_in(retired[attribute] if attribute in retired else getattr(self, attribute, None)):
                if id(layer) not in seen:
                    seen.add(id(layer))
                    found.append(layer)
        return found

    def _flatten_layers(self, include_self=True, recursive=True):
        """This layer and its sublayers in Keras's order: direct sublayers in order, and each one's
        own sublayers visited next, last-tracked first (Keras pushes them with `extendleft`)."""
        result, seen = ([self], {id(self)}) if include_self else ([], set())
        stack = list(self._sublayers())
        while stack:
            layer = stack.pop(0)
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            result.append(layer)
            if recursive:
                stack = list(reversed(layer._sublayers())) + stack
        return result

    # ---------------------------------------------------------------- weights
    @property
    def dtype(self):
        return self._own_policy().variable_dtype

    @property
    def compute_dtype(self):
        return self._own_policy().compute_dtype

    @property
    def variable_dtype(self):
        return self._own_policy().variable_dtype

    @property
    def input_dtype(self):
        """The dtype inputs are converted to (Keras: the compute dtype; lookups override it)."""
        return self.compute_dtype

    @property
    def quantization_mode(self):
        """The quantization mode of this layer (`"int8"`, ...), None if not quantized."""
        return getattr(self._own_policy(), "quantization_mode", None)

    @property
    def path(self):
        """As Keras: the name scopes and building layers around this layer's build, then its name;
        None before the build."""
        return self.__dict__.get("_path")

    @property
    def dtype_policy(self):
        return self.__dict__["_dtype_policy"]

    @dtype_policy.setter
    def dtype_policy(self, value):
        """As Keras: a built layer whose policy is a `DTypePolicyMap` writes the new policy into the
        map under its path (the map stays shared); setting a quantized policy on a built, float
        layer quantizes it."""
        policy = dtype_policies.get(value)
        state = self.__dict__
        current, path = state.get("_dtype_policy"), state.get("_path")
        previous = None if current is None else self._own_policy()
        mode = getattr(policy, "quantization_mode", None)
        if mode is not None and self.built and previous.quantization_mode is None and not state.get("_quantizing"):
            self.quantize(mode.split("/")[0])
        if isinstance(current, dtype_policies.DTypePolicyMap) and path and not isinstance(policy, dtype_policies.DTypePolicyMap):
            if path in current:
                del current[path]
            current[path] = policy
        else:
            state["_dtype_policy"] = policy
        if self.built and previous is not None and self._own_policy().compute_dtype != previous.compute_dtype:
            state["_variables_predate_policy"] = True  # as Keras: variables are cast to the new compute dtype

    def _own_policy(self):
        """The policy this layer computes with: a `DTypePolicyMap`'s entry for the layer's path once
        it is built (the map's default before), as Keras; `dtype_policy` itself stays the map."""
        policy = self.dtype_policy
        if isinstance(policy, dtype_policies.DTypePolicyMap):
            path = self.__dict__.get("_path")
            if path:
                return policy[path]
        return policy

    def _weight_prefix(self):
        """Keras's path of this layer's weights: the `keras.name_scope`s around the build, the building
        layers, the name. A weight added after the build (quantize's scales) keeps the prefix the build gave."""
        if _context.scopes:
            prefix = [*naming.scope_names(), *_context.scopes]
            if _context.scopes[-1] == self.name:
                self.__dict__["_weight_path_prefix"] = prefix
            return prefix
        return self.__dict__.get("_weight_path_prefix") or [*naming.scope_names(), self.name]

    def quantize(self, mode=None, type_check=True, config=None):
        """Quantize this built layer's weights in place (Dense, EinsumDense, Embedding; see layers/quantized.py)."""
        from keramic.layers import quantized

        self.__dict__["_quantizing"] = True  # its own policy update must not quantize again
        try:
            quantized.quantize_layer(self, mode, type_check=type_check, config=config)
        finally:
            self.__dict__["_quantizing"] = False

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
        name = name or naming.auto_name("variable")  # Keras numbers unnamed weights session-wide: variable, variable_1, ...
        path = "/".join([*self._weight_prefix(), name])
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
        if not self.trainable:  # as Keras: a frozen layer's new weights are frozen too (a model sums flags)
            variable.trainable = False
        variable.constraint = constraints.get(constraint)
        variable.regularizer = regularizers.get(regularizer)
        variable.overwrite_with_gradient = overwrite_with_gradient
        variable._keramic_autocast = bool(autocast)
        (self._own_trainable if trainable else self._own_non_trainable).append(variable)
        self._register_variable(variable)
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

    @property
    def variables(self):
        """`weights` plus the states of the layers' seed generators (Keras's order: own variables,
        own seed states, then each sub-layer's variables). Files and `parameters()` hold no seed state."""
        own = self._own_trainable + self._own_non_trainable + [g.state for g in self._seed_generators]
        return self._dedup(own + [v for layer in self._sublayers() for v in layer.variables])

    @property
    def metrics(self):
        """As Keras: the metrics kept as public attributes of this layer and of its sublayers."""
        return self._metrics_in_attributes()

    def _metrics_in_attributes(self, skip=None):
        """Metrics held in public attributes of this layer and of its sublayers, leaving out the
        attributes of those sublayers `skip(layer)` names."""
        from keramic.metrics import Metric

        found = []
        for layer in self._flatten_layers():
            if skip is not None and layer is not self and skip(layer):
                continue
            for name, value in vars(layer).items():
                if isinstance(value, Metric) and not name.startswith("_") and all(value is not f for f in found):
                    found.append(value)
        return found

    @property
    def metrics_variables(self):
        """The state variables of every entry of `metrics`, in that order (as Keras)."""
        return [variable for metric in self.metrics for variable in metric.variables]

    @property
    def torch_params(self) -> torch.nn.ParameterDict:
        """As Keras on torch: every variable of the layer and its sublayers, keyed by its path."""
        return torch.nn.ParameterDict({v.path: v for v in sorted(self.variables, key=lambda v: v.path)})

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

    @property
    def non_trainable_variables(self):
        if not self.trainable:
            return self.variables
        return [v for v in self.variables if not v.trainable]

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
        scope = backend.current_stateless_scope()
        if scope is not None and scope.collect_losses:  # keras.StatelessScope(collect_losses=True)
            scope.add_loss(loss)
        if in_dry_run():  # a symbolic call's shape probe: Keras keeps no loss from tracing either
            return
        if not self._call_losses:
            _context.layers_with_losses.append(self)
        self._call_losses.append(loss)

    def add_metric(self, *args, **kwargs):
        """Gone in Keras 3, which raises NotImplementedError here too."""
        raise NotImplementedError(
            "add_metric() is not part of Keras 3: pass metrics to Model.compile(metrics=[...]), or create "
            "metric objects in __init__/build and call their update_state() in call."
        )

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
        """Create weights once the input shape is known. The default creates none; called directly
        (not by a first call, which builds by running), it marks the layer built as Keras does,
        warning as Keras where sublayers are left unbuilt."""
        if type(self).build is Layer.build:
            self._mark_built_unrun(input_shape, stacklevel=3)

    def _mark_built_unrun(self, input_shape, stacklevel=4):
        """Keras's default build: mark the layer built without running it, warning where sublayers
        are left unbuilt."""
        if any(not layer.built for layer in self._sublayers()):
            warnings.warn(
                f"`build()` was called on layer '{self.name}', however the layer does not have a `build()` "
                "method implemented and it looks like it has unbuilt state. This will cause the layer to be "
                "marked as built, despite not being actually built, which may cause failures down the line. "
                "Make sure to implement a proper `build()` method.",
                stacklevel=stacklevel,
            )
        if self._build_shapes is None and input_shape is not None and not isinstance(input_shape, dict):
            self._build_shapes = tuple(input_shape)
        self.built = True

    def _build_arguments(self, args, kwargs):
        """Map call arguments to `build`'s parameters (`input_shape`, or `query_shape`, ...)."""
        parameters = [p for p in inspect.signature(self.build).parameters.values() if p.kind is not p.VAR_KEYWORD]
        if not parameters:  # `def build(self)`: Keras calls it with no shapes (its build config: `shapes_dict: {}`)
            return (), {}
        if len(parameters) == 1 or not all(p.name.endswith("_shape") for p in parameters):
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
            # The default build creates nothing (the call builds any sublayers) and is not run here.
            if type(self).build is not Layer.build:
                with symbolic_building():
                    if shapes is None:
                        self.build(*positional)
                    else:
                        self.build(**shapes)
        finally:
            _context.scopes.pop()
        self._build_shapes = positional[0] if shapes is None else shapes
        self.built = True

    def _trace_to_build(self, args, kwargs):
        """As Keras: a layer without a `build` whose sublayers are unbuilt is first traced on its
        inputs, with the caller's arguments (not the `training` flag the call fills in), which
        builds them and shows what a call shows (a dropped mask's warning). A call that cannot be
        traced builds them itself."""
        if type(self).build is not Layer.build or all(layer.built for layer in self._sublayers()):
            return
        if "training" in kwargs and not _call_signature_flags(type(self))[0]:
            kwargs = {key: value for key, value in kwargs.items() if key != "training"}
        _context.scopes.append(self.name)
        states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        try:
            run_on_placeholders(self.call, args, kwargs)
        except Exception:  # as Keras: the real call builds what the trace could not
            pass
        finally:
            _context.scopes.pop()
            # Keras's trace is symbolic and draws nothing: a `call` that picks with Python's, NumPy's
            # or torch's global generator (AugMix's chains) must not spend those draws here.
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)

    def get_build_config(self):
        if self._build_shapes is None:
            return None
        # Shapes per build argument are keyed `<argument>_shape`; any other dict is one dict-structured input.
        if isinstance(self._build_shapes, dict) and all(str(k).endswith("_shape") for k in self._build_shapes):
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
        if not self._allows_non_tensor_positional_args and not in_dry_run():  # a dry run fills in `training=False`
            _reject_non_tensor_positionals(args)
        args, kwargs = _keyword_call_arguments(type(self), args, kwargs)
        if any_symbolic(args, kwargs):
            return self._symbolic_call(args, kwargs)
        if tf_graph.is_graph_call(args):  # inside `tf.data.Dataset.map`
            return tf_graph.call_in_graph(self, args, kwargs)
        if args and not isinstance(args[0], torch.Tensor):
            if isinstance(args[0], (list, tuple)) and self._rejects_python_numbers:
                _reject_python_numbers(args[0])
            args = (map_structure(self._as_input_tensor, args[0]),) + args[1:]
        if (len(args) > 1 or kwargs) and type(self)._as_input_tensor is Layer._as_input_tensor:
            args, kwargs = self._convert_extra_arrays(args, kwargs)
        if args and self.__dict__.get("input_spec") is not None and not in_dry_run():  # as Keras, before the build
            assert_input_compatibility(self.__dict__["input_spec"], args[0], self.name)
        if _has_torch_hooks(self) and not self.__dict__.get("_in_torch_hooks"):
            # torch's own dispatch runs the hooks around `forward`, which comes back here.
            self.__dict__["_in_torch_hooks"] = True
            try:
                return torch.nn.Module._call_impl(self, *args, **kwargs)
            finally:
                self.__dict__["_in_torch_hooks"] = False
        has_training, has_mask, _, training_default = _call_signature_flags(type(self))
        context = _context
        if context.depth == 0 and args:
            args, kwargs = _to_device(args, kwargs, self._device)
        if not self.built:
            self._trace_to_build(args, kwargs)
        outer_training = context.training
        if has_training:
            training = kwargs.get("training")
            if training is None and "training" not in kwargs:
                training = outer_training if outer_training is not None else training_default
            kwargs["training"] = training
        else:
            training = kwargs.pop("training", None) if "training" in kwargs else outer_training
        previous_mask = None
        computes_mask = self.supports_masking  # as Keras: set from `compute_mask` at init; a layer may turn it off (Lambda)
        if (has_mask or computes_mask) and args:
            previous_mask = _collect_mask(args[0])
            if has_mask and previous_mask is not None and kwargs.get("mask") is None and _one_tensor_argument(args, kwargs):
                kwargs["mask"] = previous_mask
            elif has_mask and kwargs.get("mask") is not None:  # as Keras: outputs carry an explicit mask on
                previous_mask = map_structure(lambda m: torch.as_tensor(m, device=self._device) if isinstance(m, np.ndarray) else m, kwargs["mask"])
        paired = _paired_mask_arguments(type(self))
        if paired:
            _hand_over_paired_masks(paired, args, kwargs)
        # As Keras, a mask is dropped only if the inputs had one before the call (an identity `call`
        # of a masking layer inside a Functional model hands the model's own inputs a mask).
        masked_before = self._warns_of_dropped_masks and not computes_mask and bool(args) and _collect_mask(args[0]) is not None
        # As Keras, a mask handed over explicitly (`mask=`) counts as one the layer drops.
        given_mask = kwargs.get("mask") if self._warns_of_dropped_masks and not computes_mask else None
        policy = self.dtype_policy
        if type(policy) is dtype_policies.DTypePolicyMap:
            policy = self._own_policy()
        if self._autocast_inputs and self.autocast:
            args, kwargs = _autocast_inputs(args, kwargs, policy.compute_torch_dtype)
        cast_variables = None
        entry = context.depth == 0
        if entry and context.layers_with_losses:
            for layer in context.layers_with_losses:
                layer.__dict__["_call_losses"] = []
            context.layers_with_losses = []
        context.depth += 1
        context.training = training
        # As Keras: a layer that does not autocast (Embedding) still reads its variables in the compute
        # dtype when called on its own, but not inside the call of a mixed-precision layer or model.
        outer_autocasting = context.autocasting
        context.autocasting = outer_autocasting or policy.is_mixed
        try:
            if not self.built:
                self._maybe_build(args, kwargs)
            if (policy.is_mixed and (self.autocast or not outer_autocasting)) or self.__dict__.get("_variables_predate_policy"):
                cast_variables = self._cast_variables(policy.compute_torch_dtype)
            # As Keras: every call is inside this layer's name scope, so that a sublayer first built
            # in a later call (an RNN cell's, built by its RNN) gets this layer's path.
            context.scopes.append(self.name)
            try:
                outputs = self._call_function(args, kwargs)(*args, **kwargs)
            finally:
                context.scopes.pop()
        finally:
            context.depth -= 1
            context.autocasting = outer_autocasting
            # As Keras: the flag a call settles on stays for the layers called after it (a Resizing's
            # default `training=True` reaches a later Dropout) until the outermost call returns.
            if context.depth == 0:
                context.training = None
            if cast_variables:
                self.__dict__.update(cast_variables)
        if self.activity_regularizer is not None:
            for output in flatten(outputs):
                if isinstance(output, torch.Tensor):
                    self.add_loss(_activity_penalty(self.activity_regularizer, output))
        if computes_mask:
            output_mask = self.compute_mask(args[0] if args else None, previous_mask)
            if output_mask is not None:
                _attach_mask(outputs, output_mask)
        elif given_mask is not None:
            _warn_if_mask_dropped(self, None, mask=given_mask)
        elif masked_before:
            _warn_if_mask_dropped(self, args[0])
        return outputs

    def _call_function(self, args, kwargs):
        """`call`, or `call` rematerialised as the keras.RematScope this layer was built in asks."""
        if self.__dict__.get("_remat_mode") is None:
            return self.call
        return rematerialization.rematerialized_call(self, self.call, args, kwargs)

    # Keras warns when a layer drops its inputs' mask; graph nodes of raw ops (not layers in Keras) do not.
    _warns_of_dropped_masks = True

    # Keras casts float inputs to the compute dtype; Functional and Sequential cast per Input instead.
    _autocast_inputs = True

    stateless_call = _stateless_call  # Keras's functional-style call on given variable values

    # Keras converts call arguments to the compute dtype, except for layers that take their inputs as
    # they come (models, lookups, hashing, ...); graph nodes record filled-in arguments accordingly.
    _converts_input_args = True

    def _as_input_tensor(self, x):
        """NumPy inputs become tensors on the layer's device; float ones in its compute dtype, as Keras autocasts.

        String arrays stay NumPy (torch has no strings), for the lookup layers a custom layer calls."""
        if backend.is_foreign_array(x):  # another framework's eager tensor (a batch of a tf.data dataset)
            x = np.array(x)
        if isinstance(x, np.ndarray) and x.dtype.kind in "USO":
            return x
        if isinstance(x, np.ndarray) or isinstance(x, (float, int, np.generic)):
            array = np.asarray(x)
            if array.dtype.kind == "f":
                # As Keras: a layer that does not autocast (LayerNormalization) keeps the array's own float dtype.
                dtype = self.compute_dtype if self.autocast else array.dtype.name
            else:
                dtype = None
            tensor = backend.convert_to_tensor(array, dtype)
            return tensor if tensor.device == self._device else tensor.to(self._device)
        return x

    def _convert_extra_arrays(self, args, kwargs):
        """As Keras: NumPy (and other frameworks') arrays in the other arguments and keyword
        arguments (a `mask=`, a second input) become tensors too; Python numbers stay as they are."""

        def convert(x):
            if isinstance(x, np.ndarray) or backend.is_foreign_array(x):
                return self._as_input_tensor(x)
            return x

        def has_array(value):
            if isinstance(value, (list, tuple)):
                return any(has_array(v) for v in value)
            if isinstance(value, dict):
                return any(has_array(v) for v in value.values())
            return isinstance(value, np.ndarray) or backend.is_foreign_array(value)

        if any(has_array(a) for a in args[1:]):
            args = args[:1] + tuple(map_structure(convert, list(args[1:])))
        if any(has_array(v) for v in kwargs.values()):
            kwargs = {key: map_structure(convert, value) for key, value in kwargs.items()}
        return args, kwargs

    @contextlib.contextmanager
    def _variables_in_compute_dtype(self):
        """Under a mixed policy, this layer's variables read in the compute dtype for the block (code
        that uses them without going through this layer's `__call__`, such as an RNN's fused path)."""
        policy = self._own_policy()
        originals = self._cast_variables(policy.compute_torch_dtype) if policy.is_mixed else None
        try:
            yield
        finally:
            if originals:
                self.__dict__.update(originals)

    def _cast_variables(self, dtype):
        """Mixed precision: for the duration of `call`, attributes holding float32 variables, and
        lists, tuples and dicts of them, read as `dtype` copies (gradients still reach the float32
        variables). Returns what to put back."""
        state = self.__dict__

        def cast(value):
            if isinstance(value, backend.Variable):
                autocast = value.is_floating_point() and value.dtype != dtype and getattr(value, "_keramic_autocast", True)
                return value.to(dtype) if autocast else value
            if type(value) in (list, tuple):
                items = [cast(item) for item in value]
                return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
            if type(value) is dict:
                items = {key: cast(item) for key, item in value.items()}
                return value if all(items[key] is value[key] for key in value) else items
            return value

        originals = {}
        for name in (*state["_variable_attrs"], *state["_saveable_attrs"]):
            value = state.get(name)
            copy = cast(value)
            if copy is not value:
                originals[name] = value
                state[name] = copy
        return originals or None

    def _symbolic_call(self, args, kwargs):
        """Call on KerasTensors: build, infer the outputs' shapes (and masks), and record a graph node."""
        if args and self.__dict__.get("input_spec") is not None:
            assert_input_compatibility(self.__dict__["input_spec"], args[0], self.name)
        if not self.built:
            self._trace_to_build(args, kwargs)
        self._maybe_build(args, kwargs)
        _context.scopes.append(self.name)  # as Keras: sublayers first built inside this call get this layer's path
        call_kwargs = _with_symbolic_masks(type(self), args, kwargs)
        try:
            outputs = self.compute_output_spec(*args, **call_kwargs)
        finally:
            _context.scopes.pop()
        if args and self.supports_masking:
            _attach_symbolic_mask(self, args[0], kwargs.get("mask"), outputs)
        elif self._warns_of_dropped_masks and kwargs.get("mask") is not None:
            _warn_if_mask_dropped(self, None, stacklevel=4, mask=kwargs["mask"])
        elif args and self._warns_of_dropped_masks:
            _warn_if_mask_dropped(self, args[0], stacklevel=4)
        # The node keeps the caller's arguments and, as Keras, what it fills in (keramic.layers.symbolic_masks).
        has_training, has_mask, _, training_default = _call_signature_flags(type(self))
        training = (_context.training if _context.training is not None else training_default) if has_training else None
        recorded, implicit = symbolic_masks.node_arguments(self, args, kwargs, call_kwargs, training, has_mask)
        Node(self, args, recorded, outputs, implicit)
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

    @symbolic_masks.in_ops
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
        outputs = flatten(node.outputs)  # as Keras: several outputs come back as a flat list
        return outputs[0] if len(outputs) == 1 else outputs

    # ---------------------------------------------------------------- config
    def get_config(self):
        """Keras's base keys (`name`, `trainable`, `dtype`), plus constructor arguments of custom layers."""
        config = {"name": self.name}
        # Keras fills in constructor arguments only for a class that does not write its own get_config
        # (keramic.layers.auto_config); the base keys then take their places or go last.
        if not _is_keramic_class(type(self)) and type(self).get_config is Layer.get_config:
            config.update(auto_config.constructor_arguments(type(self), *self._init_args))
            if not auto_config.keeps_name(type(self)):
                del config["name"]
        config.update(trainable=self.trainable, dtype=serialize.serialize_keras_object(self.dtype_policy))
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = serialize.serialize_keras_object(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            policy = dtype_policies.get(config["dtype"])
            # As Keras: a plain policy is passed on by name (so automatic configs record a string).
            plain = not isinstance(policy, dtype_policies.DTypePolicyMap) and policy.quantization_mode is None
            config["dtype"] = policy.name if plain else policy
        return cls(**config)

    # ---------------------------------------------------------------- saving protocol
    # What saving reads (keramic.serialization.saveable): children in Keras's visiting order, own
    # variables, and Keras's hooks. Saving calls a hook only where a class overrides it; layers that
    # keep the defaults are read and written in bulk.
    _saving_kind = "layer"
    _structure_from_config = False  # True where the config lists every layer (Functional, Sequential)
    # Attributes a layer saves by name, as Keras's class of that name does (Dense: kernel, bias): a
    # subclass's extra variables stay out of its files. None: every own variable is saved.
    _saved_variable_names: tuple | None = None

    @staticmethod
    @functools.cache
    def _bare_attributes() -> frozenset:
        """Attribute names every layer has: they never name children (Keras skips them too)."""
        bare = Layer.__new__(Layer)
        Layer.__init__(bare, name="bare")
        return frozenset(vars(bare)) | frozenset(bare._modules) | {"_functional", "_graph_layers", "_plan", "_run_kwargs"}

    def _saveable_children(self) -> list:
        """(attribute, value) pairs the saving walk visits, public names first, each group sorted."""
        names = (self._saveable_attrs | (set(self._modules) - set(self._derived_children))) - self._bare_attributes()
        if isinstance(getattr(type(self), "layers", None), property):
            names.add("layers")  # a subclassed Model's `layers` sorts among its attributes
        ordered = sorted((n for n in names if not n.startswith("__")), key=lambda n: "~" + n if n.startswith("_") else n)
        return [(name, getattr(self, name, None)) for name in ordered]

    def _attribute_children(self) -> list:
        """(attribute, value) pairs holding layers or containers, in assignment order (checkpoint keys)."""
        return [(name, getattr(self, name, None)) for name in self._tracked_order]

    def _saveable_variables(self) -> list:
        """Own variables in Keras's saving order: trainable, then non-trainable, each in creation order."""
        if self.quantization_mode is not None:  # quantized layers save in Keras's fixed per-class order
            from keramic.layers import quantized

            return quantized.saving_order(self)
        if self._saved_variable_names is not None:
            return [v for v in (getattr(self, name, None) for name in self._saved_variable_names) if v is not None]
        return self._own_trainable + self._own_non_trainable

    def _variables_for_saved(self, count: int) -> list:
        """The variables a saved state of `count` entries fills: Keras 3.15 saves GPTQ/AWQ layers without zero points."""
        variables = self._saveable_variables()
        if self.quantization_mode is not None and count == len(variables) - 1:
            from keramic.layers import quantized

            variables = quantized.load_without_zero(self, variables)
        return variables

    @saveable.default_hook
    def save_own_variables(self, store) -> None:
        """Put this layer's own variables in `store` as "0", "1", ... (override to save other state)."""
        for index, variable in enumerate(self._saveable_variables()):
            store[str(index)] = variable

    @saveable.default_hook
    def load_own_variables(self, store) -> None:
        """Assign this layer's own variables from `store`'s "0", "1", ...; the counts must agree."""
        variables = self._variables_for_saved(len(store.keys()))
        if len(store.keys()) != len(variables):
            raise WeightsMismatchError(
                f"Layer '{self.name}' has {len(variables)} variables, but the saved state lists {len(store.keys())}."
            )
        for index, variable in enumerate(variables):
            variable.assign(store[str(index)])

    @saveable.default_hook
    def save_assets(self, dir_path: str) -> None:
        """Write files this layer needs (a vocabulary, ...) into `dir_path`; nothing by default."""

    @saveable.default_hook
    def load_assets(self, dir_path) -> None:
        """Read what `save_assets` wrote (`dir_path` is None when nothing was saved); nothing by default."""

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other


def _unique_key(base, *taken):
    """`base`, or `base_1`, `base_2`, ... : the first not already a key of any of `taken`."""
    base = base or "variable"
    key, index = base, 0
    while any(key in mapping for mapping in taken):
        index += 1
        key = f"{base}_{index}"
    return key


def _first_keramic_class_is_layer(cls):
    """True for a user's layer written straight on `Layer`: Keras builds it (and records its shapes) at its first call."""
    return next(c for c in cls.__mro__ if _is_keramic_class(c)) is Layer


def _is_keramic_class(cls):
    return cls.__module__.startswith("keramic.")


def _has_torch_hooks(layer) -> bool:
    """True when torch forward/backward hooks (the layer's own or global ones) are registered."""
    return bool(
        layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks or layer._backward_pre_hooks
        or torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks
        or torch_module._global_backward_hooks or torch_module._global_backward_pre_hooks
    )


def _reject_python_numbers(inputs):
    """As Keras: a list of Python numbers (`model([1, 10, 7])`) is not an input tensor (ValueError)."""
    for leaf in flatten(inputs):
        if isinstance(leaf, (bool, int, float)):
            raise ValueError(
                "Only input tensors may be passed as positional arguments. The following argument value "
                f"should be passed as a keyword argument: {leaf} (of type {type(leaf)})"
            )


def _layers_in(value) -> list:
    """The layers a value holds: itself, or those in its (nested) lists, tuples and dicts."""
    if isinstance(value, Layer):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [layer for item in value for layer in _layers_in(item)]
    return []


def _retire_replaced_layers(layer, name, value) -> None:
    """As Keras, whose tracker keeps every sublayer assigned until the layer's build returns: a sublayer
    replaced in a user's `__init__` (a subclass assigning its own head) stays among the layers,
    where it was, and the attribute's new layers come after those assigned since."""
    kept = {id(new) for new in _layers_in(value)}
    dropped = [old for old in _layers_in(getattr(layer, name, None)) if id(old) not in kept]
    if not dropped:
        return
    retired = layer.__dict__.setdefault("_retired_layers", {})
    key = f"\x00retired_{len(retired)}"  # never an attribute name
    retired[key] = dropped
    order = layer.__dict__["_tracked_order"]
    order[order.index(name)] = key
    order.append(name)


_TENSOR_ARGUMENTS = (torch.Tensor, KerasTensor, np.ndarray, np.generic)


def _reject_non_tensor_positionals(args) -> None:
    """As Keras: a Python value given by position (a flag, a number, a string) is a ValueError
    asking for a keyword, rather than a value silently bound to the next parameter."""
    for arg in args:
        if arg is None or isinstance(arg, _TENSOR_ARGUMENTS):
            continue
        for leaf in flatten(arg):
            if leaf is not None and not isinstance(leaf, _TENSOR_ARGUMENTS) and not backend.is_foreign_array(leaf):
                raise ValueError(
                    "Only input tensors may be passed as positional arguments. The following argument value "
                    f"should be passed as a keyword argument: {leaf} (of type {type(leaf)})"
                )


def _to_device(args, kwargs, device):
    """Send tensor arguments of an outermost call to the layer's device (no-op when already there)."""
    if len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].device == device and not kwargs:
        return args, kwargs

    def move(x):
        return x.to(device) if isinstance(x, torch.Tensor) and x.device != device else x

    return map_structure(move, args), {key: move(value) for key, value in kwargs.items()}


def _autocast_inputs(args, kwargs, dtype):
    """Keras's autocast: float tensor arguments in another float dtype are cast to `dtype`."""

    def cast(x):
        if isinstance(x, torch.Tensor) and x.dtype != dtype and x.is_floating_point():
            mask = getattr(x, "_keras_mask", None)
            x = x.to(dtype)
            if mask is not None:
                x._keras_mask = mask
        return x

    if len(args) == 1 and isinstance(args[0], torch.Tensor):
        args = (cast(args[0]),)
    else:
        args = map_structure(cast, args)
    if kwargs:
        kwargs = {key: cast(value) if key != "mask" else value for key, value in kwargs.items()}
    return args, kwargs


def _activity_penalty(regularizer, output):
    """Keras's activity penalty: the regularizer's value divided by the batch size (0 for an empty batch)."""
    loss = regularizer(output)
    if output.dim() > 0:
        batch = output.shape[0]
        loss = loss / batch if batch else torch.zeros_like(loss)
    return loss


def _paired_mask_arguments(cls):
    """`call` arguments `x` that have an `x_mask` partner (`query` / `query_mask`, ...), with their positions."""
    paired = cls.__dict__.get("_paired_masks")
    if paired is None:
        names = [
            p.name
            for p in inspect.signature(cls.call).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ][1:]
        paired = tuple((i, name) for i, name in enumerate(names) if f"{name}_mask" in names)
        cls._paired_masks = paired
    return paired


def _hand_over_paired_masks(paired, args, kwargs):
    """Fill each empty `x_mask` argument from the Keras mask carried by the tensor given as `x`."""
    for index, name in paired:
        key = f"{name}_mask"
        if kwargs.get(key) is not None:
            continue
        value = args[index] if index < len(args) else kwargs.get(name)
        mask = getattr(value, "_keras_mask", None) if isinstance(value, torch.Tensor) else None
        if mask is not None:
            kwargs[key] = mask


def _with_symbolic_masks(cls, args, kwargs):
    """The call's kwargs plus the masks Keras hands a layer (`mask`, `x_mask`), taken from symbolic inputs."""
    has_mask = _call_signature_flags(cls)[1]
    paired = _paired_mask_arguments(cls)
    if not (has_mask or paired) or not args:
        return kwargs
    kwargs = dict(kwargs)
    if has_mask and kwargs.get("mask") is None and _one_tensor_argument(args, kwargs):
        mask = _collect_mask(args[0])
        if mask is not None:
            kwargs["mask"] = mask
    for index, name in paired:
        value = args[index] if index < len(args) else kwargs.get(name)
        mask = getattr(value, "_keras_mask", None) if isinstance(value, KerasTensor) else None
        if mask is not None and kwargs.get(f"{name}_mask") is None:
            kwargs[f"{name}_mask"] = mask
    return kwargs


def _attach_symbolic_mask(layer, inputs, given_mask, outputs):
    """Give symbolic outputs the `_keras_mask` Keras would (`compute_mask` on KerasTensors, or on placeholders)."""
    previous = given_mask if given_mask is not None else _collect_mask(inputs)
    if previous is None and type(layer).compute_mask is Layer.compute_mask:
        return
    try:
        mask = symbolic_masks.compute(layer, inputs, previous, run_on_placeholders)
    except Exception:  # a compute_mask that cannot run on placeholders leaves the outputs unmasked
        return
    if mask is None:
        return
    flat_outputs = flatten(outputs)
    masks = flatten(mask) if isinstance(mask, (list, tuple)) else [mask]  # as Keras: one mask goes to the first output
    for output, item in zip(flat_outputs, masks):
        if isinstance(output, KerasTensor) and isinstance(item, KerasTensor):
            output._keras_mask = item


def _warn_if_mask_dropped(layer, inputs, stacklevel=3, mask=None):
    """Keras's warning when a layer that does not support masking is handed a masked input (or a
    `mask=` argument)."""
    mask = _collect_mask(inputs) if mask is None else mask
    if mask is not None and any(m is not None for m in flatten(mask)):
        warnings.warn(
            f"Layer '{layer.name}' (of type {type(layer).__name__}) was passed an input with a mask attached to it. "
            "However, this layer does not support masking and will therefore destroy the mask information. "
            "Downstream layers will not see the mask.",
            stacklevel=stacklevel,
        )


def _one_tensor_argument(args, kwargs) -> bool:
    """Keras hands the first input's mask to `mask=` only when the call has exactly one tensor
    argument (a tensor, or a structure of tensors and Nones); with more (a decoder's encoder
    outputs, an RNN's `initial_state`) only the `x_mask` partners are filled."""

    def is_tensor(value):
        return isinstance(value, (torch.Tensor, KerasTensor))

    def is_tensor_argument(value):
        if is_tensor(value):
            return True
        if isinstance(value, (list, tuple, dict)) and len(value):
            return all(leaf is None or is_tensor(leaf) for leaf in flatten(value))
        return False

    count = sum(map(is_tensor_argument, args))
    return count + sum(is_tensor_argument(v) for k, v in kwargs.items() if k != "mask") == 1


def _collect_mask(inputs):
    if isinstance(inputs, (list, tuple)):
        masks = [getattr(x, "_keras_mask", None) for x in inputs]
        return None if all(m is None for m in masks) else masks
    return getattr(inputs, "_keras_mask", None)


def _attach_mask(outputs, mask):
    if isinstance(outputs, torch.Tensor):
        # As Keras, outputs and masks pair in flat order: one output takes the first of several masks.
        outputs._keras_mask = flatten(mask)[0] if isinstance(mask, (list, tuple)) else mask
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

"""MultiOptimizer: each variable stepped by the optimizer its path maps to (OptimizerMap or a callable)."""

import re
from collections.abc import MutableMapping

import torch

from keramic.optimizers.base import Optimizer
from keramic.optimizers.loss_scale_optimizer import LossScaleOptimizer
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object


def _check_inner(optimizer, what):
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"{what} must be a Keras Optimizer instance. Received: {optimizer}")
    if isinstance(optimizer, LossScaleOptimizer):
        raise ValueError("LossScaleOptimizer cannot be used inside a MultiOptimizer.")
    if isinstance(optimizer, MultiOptimizer):
        raise ValueError("MultiOptimizer cannot be used inside a MultiOptimizer.")


def _deserialize_optimizer(config):
    """An inner optimizer from its envelope (Keras's `torch_*` module names resolve by class name)."""
    return config if isinstance(config, Optimizer) else deserialize_keras_object(config, ("keras.optimizers",))


@keras_export("keras.optimizers")
class OptimizerMap(MutableMapping):
    """Variable path -> optimizer: an exact key first, else the one key that `re.fullmatch`es the
    path (two matches are an error), else `default_optimizer`."""

    def __init__(self, default_optimizer, optimizer_map=None):
        if not isinstance(default_optimizer, Optimizer):
            raise TypeError(f"default_optimizer must be a Keras Optimizer instance. Received: {default_optimizer}")
        if optimizer_map is not None and not isinstance(optimizer_map, dict):
            raise TypeError(f"optimizer_map must be a dictionary. Received: {optimizer_map}")
        self._default_optimizer = default_optimizer
        self._optimizer_map = optimizer_map or {}

    @property
    def default_optimizer(self):
        return self._default_optimizer

    def __getitem__(self, key: str) -> Optimizer:
        if key in self._optimizer_map:
            return self._optimizer_map[key]
        matches = [pattern for pattern in self._optimizer_map if re.fullmatch(pattern, key)]
        if len(matches) > 1:
            raise ValueError(f"Multiple optimizers assigned to variable {key}: patterns {matches} all match.")
        return self._optimizer_map[matches[0]] if matches else self._default_optimizer

    def __setitem__(self, key, optimizer):
        if key in self._optimizer_map:
            raise ValueError(f"'{key}' already exists in the OptimizerMap with value {self._optimizer_map[key]}. Please make sure to not use duplicated keys.")
        if not isinstance(key, str):
            raise ValueError(f"key must be a string. Received: {key}")
        _check_inner(optimizer, "optimizer")
        self._optimizer_map[key] = optimizer

    def __delitem__(self, key):
        del self._optimizer_map[key]

    def __len__(self):
        return len(self._optimizer_map)

    def __iter__(self):
        return iter(self._optimizer_map)

    def __call__(self, variable: torch.Tensor) -> Optimizer:
        return self[variable.path]

    def get_config(self):
        return {
            "default_optimizer": serialize_keras_object(self._default_optimizer),
            "optimizer_map": serialize_keras_object(self._optimizer_map),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        default = _deserialize_optimizer(config["default_optimizer"])
        mapping = {key: _deserialize_optimizer(value) for key, value in (config.get("optimizer_map") or {}).items()}
        return cls(default, mapping)


@keras_export("keras.optimizers")
class MultiOptimizer(Optimizer):
    """Delegates each variable to an inner optimizer, chosen once at `build` by `optimizer_map`
    (an `OptimizerMap`, or a callable from variable to optimizer).

    Its own variables are `iteration` and an unused `learning_rate` (0.0); `variables` lists
    them, then each inner optimizer's, in order of first use. `loss_scale_factor` overrides
    the inner optimizers'. It has no learning rate of its own: ask the inner optimizers.
    """

    def __init__(self, optimizer_map, loss_scale_factor=None, name=None):
        self._inner_optimizers = []
        super().__init__(learning_rate=0.0, loss_scale_factor=loss_scale_factor, name=name)
        self._optimizer_map = optimizer_map
        inner = list(optimizer_map.values()) if hasattr(optimizer_map, "values") else []
        default = getattr(optimizer_map, "default_optimizer", None)
        for optimizer in [*inner, *([default] if default is not None else [])]:
            if not any(optimizer is known for known in self._inner_optimizers):
                optimizer.loss_scale_factor = loss_scale_factor
                self._inner_optimizers.append(optimizer)

    def _position(self, optimizer):
        return next(i for i, known in enumerate(self._inner_optimizers) if known is optimizer)

    def build(self, var_list):
        if self.built:
            return
        var_list = list(var_list)
        self._owner = {}
        groups = [[] for _ in self._inner_optimizers]
        for variable in var_list:
            optimizer = self._optimizer_map(variable)
            _check_inner(optimizer, f"Optimizer for variable {getattr(variable, 'path', variable)}")
            if not any(optimizer is known for known in self._inner_optimizers):
                optimizer.loss_scale_factor = self.loss_scale_factor
                self._inner_optimizers.append(optimizer)
                groups.append([])
            position = self._position(optimizer)
            self._owner[id(variable)] = position
            groups[position].append(variable)
        for optimizer, variables in zip(self._inner_optimizers, groups):
            if variables:
                optimizer.build(variables)
        # Built last, with every inner slot in place: a waiting checkpoint then fills them all at once.
        self._trainable_variables = var_list
        super().build(var_list)

    @property
    def optimizers(self) -> list[Optimizer]:
        return self._inner_optimizers

    @property
    def variables(self):
        variables = self._variables[:]
        for optimizer in self._inner_optimizers:
            variables.extend(optimizer.variables)
        return variables

    @property
    def learning_rate(self):
        raise AttributeError("Learning rate cannot be accessed on a MultiOptimizer. Access the learning rate on the individual sub-optimizers instead.")

    @learning_rate.setter
    def learning_rate(self, value):
        raise AttributeError("Learning rate cannot be set on a MultiOptimizer. Set the learning rate on the individual sub-optimizers instead.")

    @property
    def loss_scale_factor(self):
        return self.__dict__.get("_loss_scale_factor")

    @loss_scale_factor.setter
    def loss_scale_factor(self, value):
        self._loss_scale_factor = value
        for optimizer in self.__dict__.get("_inner_optimizers", ()):
            optimizer.loss_scale_factor = value

    @property
    def iterations(self):
        return self._iterations

    def _groups(self, variables):
        groups = [[] for _ in self._inner_optimizers]
        for position, variable in enumerate(variables):
            groups[self._owner[id(variable)]].append(position)
        return groups

    def apply(self, grads: list, trainable_variables: list | None = None) -> None:
        """Split the gradients by owner and let each inner optimizer take its own step."""
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer must already be built on a "
                    "list of variables. Call `optimizer.build(trainable_variables)` first."
                )
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            self.build(trainable_variables)
        if len(grads) != len(self._owner):
            raise ValueError(f"Gradients must match trainable variables one-to-one. Received {len(grads)} gradients and {len(self._owner)} variables.")
        for optimizer, positions in zip(self._inner_optimizers, self._groups(trainable_variables)):
            if positions:
                optimizer.apply([grads[i] for i in positions], [trainable_variables[i] for i in positions])
        self._step.increment()

    def finalize_variable_values(self, var_list: list) -> None:
        var_list = list(var_list)
        for optimizer, positions in zip(self._inner_optimizers, self._groups(var_list)):
            if positions:
                optimizer.finalize_variable_values([var_list[i] for i in positions])

    def set_weights(self, weights):
        if not self.built:
            raise ValueError(
                "You are calling `set_weights()` on an optimizer that has not yet been built. Please "
                "call `optimizer.build(trainable_variables)` to create the optimizer weights before "
                "calling `set_weights()`."
            )
        weights = list(weights)
        own = len(self._variables)
        for variable, weight in zip(self._variables, weights[:own]):
            variable.assign(weight)
        start = own
        for optimizer in self._inner_optimizers:
            count = len(optimizer.variables)
            if count:
                optimizer.set_weights(weights[start : start + count])
                start += count

    def get_config(self):
        return {
            "optimizer_map": serialize_keras_object(self._optimizer_map),
            "loss_scale_factor": self.loss_scale_factor,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        mapping = config["optimizer_map"]
        if isinstance(mapping, dict) and "class_name" in mapping:
            config["optimizer_map"] = deserialize_keras_object(mapping, ("keras.optimizers",), custom_objects)
        return cls(**config)

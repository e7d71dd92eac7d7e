"""Weight and activity penalties (`keras.regularizers`): each call returns a scalar tensor.

>>> L2(0.5)(torch.ones(2, 2))
tensor(2.)
"""

import math

import numpy as np
import torch

from keramic.errors import ConfigError
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, get_object, serialize_keras_object

_NAMESPACE = "keras.regularizers"
# Keras's fuzz factor: caps the inverse norm of all-zero rows in OrthogonalRegularizer.
_EPSILON = 1e-7


def _factor(value, name):
    """A non-negative finite float, or a ConfigError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"Invalid value for argument {name}: expected a non-negative float, got {value!r}.")
    return float(value)


def _as_float32(value):
    """Keras keeps some factors in a float32 tensor, so their configs carry float32 precision."""
    return float(np.float32(value))


@keras_export(_NAMESPACE)
class Regularizer:
    """Base class: `__call__(x)` returns the penalty for `x`; the default is zero."""

    def __call__(self, x):
        return x.new_zeros(())

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement get_config().")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras_export(_NAMESPACE, name="l1l2")
@keras_export(_NAMESPACE, name="l1_l2")
@keras_export(_NAMESPACE)
class L1L2(Regularizer):
    """`l1 * sum(abs(x)) + l2 * sum(square(x))`; both factors default to 0."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, x):
        penalty = self.l1 * torch.sum(torch.abs(x)) if self.l1 else None
        if self.l2:
            term = self.l2 * torch.sum(torch.square(x))
            penalty = term if penalty is None else penalty + term
        return x.new_zeros(()) if penalty is None else penalty

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


@keras_export(_NAMESPACE, name="l1")
@keras_export(_NAMESPACE)
class L1(Regularizer):
    """`l1 * sum(abs(x))`."""

    def __init__(self, l1=0.01):
        self.l1 = _as_float32(_factor(0.01 if l1 is None else l1, "l1"))

    def __call__(self, x):
        return self.l1 * torch.sum(torch.abs(x))

    def get_config(self):
        return {"l1": self.l1}


@keras_export(_NAMESPACE, name="l2")
@keras_export(_NAMESPACE)
class L2(Regularizer):
    """`l2 * sum(square(x))`."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(0.01 if l2 is None else l2, "l2")

    def __call__(self, x):
        return self.l2 * torch.sum(torch.square(x))

    def get_config(self):
        return {"l2": self.l2}


@keras_export(_NAMESPACE, name="orthogonal_regularizer")
@keras_export(_NAMESPACE)
class OrthogonalRegularizer(Regularizer):
    """Penalise the mean absolute cosine between distinct rows (or columns) of a rank-2 weight."""

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = _as_float32(_factor(factor, "factor"))
        if mode not in ("rows", "columns"):
            raise ConfigError(f'Invalid value for argument `mode`: expected "rows" or "columns", got {mode!r}.')
        self.mode = mode

    def __call__(self, x):
        if x.dim() != 2:
            raise ValueError(f"Inputs to OrthogonalRegularizer must have rank 2, got shape {tuple(x.shape)}.")
        axis = 1 if self.mode == "rows" else 0
        inverse_norm = torch.rsqrt(torch.sum(torch.square(x), dim=axis, keepdim=True)).clamp(max=1.0 / _EPSILON)
        unit = x * inverse_norm
        product = unit @ unit.T if axis == 1 else unit.T @ unit
        size = product.shape[0]
        off_diagonal = product * (1.0 - torch.eye(size, dtype=x.dtype, device=x.device))
        num_pairs = size * (size - 1.0) / 2.0
        return self.factor * 0.5 * torch.sum(torch.abs(off_diagonal)) / num_pairs

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


def serialize(regularizer):
    """The Keras envelope of a regularizer (`None` stays `None`)."""
    return serialize_keras_object(regularizer)


def deserialize(config, custom_objects=None):
    """The regularizer a name or envelope describes."""
    return deserialize_keras_object(config, (_NAMESPACE,), custom_objects)


def get(identifier):
    """Resolve `None`, a name (`"l2"`), a config dict, a class or a callable to a regularizer."""
    if isinstance(identifier, type):
        return identifier()
    regularizer = get_object(identifier, _NAMESPACE, "regularizer")
    if regularizer is not None and not callable(regularizer):
        raise ConfigError(f"Could not interpret regularizer identifier: {identifier!r}")
    return regularizer


# Keras's lower-case aliases (`keras.regularizers.l2(1e-4)`).
l1 = L1
l2 = L2
l1_l2 = L1L2
orthogonal_regularizer = OrthogonalRegularizer

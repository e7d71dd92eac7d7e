"""Weight constraints (`keras.constraints`): projections optimizers apply after each update.

>>> MaxNorm(2.0)(torch.tensor([[3.0], [4.0]]))  # column norm 5 -> 2
tensor([[1.2000], [1.6000]])
"""

import torch

from keramic.errors import ConfigError
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, get_object, serialize_keras_object

_NAMESPACE = "keras.constraints"
# Keras's fuzz factor: keeps the rescaling finite for all-zero weight vectors.
_EPSILON = 1e-7


def _norms(w, axis):
    return torch.sqrt(torch.sum(torch.square(w), dim=axis, keepdim=True))


@keras_export(_NAMESPACE)
class Constraint:
    """Base class: `__call__(w)` returns the projected weights; the default keeps them."""

    def __call__(self, w):
        return w

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras_export(_NAMESPACE, name="max_norm")
@keras_export(_NAMESPACE)
class MaxNorm(Constraint):
    """Rescale each weight vector along `axis` whose L2 norm exceeds `max_value`."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = torch.clamp(norms, 0, self.max_value)
        return w * (desired / (_EPSILON + norms))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


@keras_export(_NAMESPACE, name="non_neg")
@keras_export(_NAMESPACE)
class NonNeg(Constraint):
    """Clip weights at zero from below."""

    def __call__(self, w):
        return torch.clamp(w, min=0)


@keras_export(_NAMESPACE, name="unit_norm")
@keras_export(_NAMESPACE)
class UnitNorm(Constraint):
    """Scale each weight vector along `axis` to unit L2 norm."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        return w / (_EPSILON + _norms(w, self.axis))

    def get_config(self):
        return {"axis": self.axis}


@keras_export(_NAMESPACE, name="min_max_norm")
@keras_export(_NAMESPACE)
class MinMaxNorm(Constraint):
    """Move each weight vector's norm into `[min_value, max_value]`, by the fraction `rate` per call."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = self.rate * torch.clamp(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (_EPSILON + norms))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


def serialize(constraint):
    """The Keras envelope of a constraint (`None` stays `None`)."""
    return serialize_keras_object(constraint)


def deserialize(config, custom_objects=None):
    """The constraint a name or envelope describes."""
    return deserialize_keras_object(config, (_NAMESPACE,), custom_objects)


def get(identifier):
    """Resolve `None`, a name (`"max_norm"`), a config dict, a class or a callable to a constraint."""
    if isinstance(identifier, type):
        return identifier()
    constraint = get_object(identifier, _NAMESPACE, "constraint")
    if constraint is not None and not callable(constraint):
        raise ConfigError(f"Could not interpret constraint identifier: {identifier!r}")
    return constraint


# Keras's lower-case aliases (`keras.constraints.max_norm(2.0)`).
max_norm = MaxNorm
non_neg = NonNeg
unit_norm = UnitNorm
min_max_norm = MinMaxNorm

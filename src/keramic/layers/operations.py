"""Raw tensor operations recorded in Keras 3 Functional configs (e.g. `NotEqual` for an
embedding mask). They run in the graph but, as in Keras, are not part of `model.layers`."""

import torch

from keramic import backend
from keramic.layers.base import Layer
from keramic.serialization.registry import keras_export


class Operation(Layer):
    """A weightless graph node that is not listed in `model.layers`."""

    def get_config(self):
        return {"name": self.name}


def _binary(class_name, namespace, fn):
    class BinaryOperation(Operation):
        def call(self, x, y):
            return fn(x, torch.as_tensor(y, device=x.device) if not isinstance(y, torch.Tensor) else y)

    BinaryOperation.__name__ = BinaryOperation.__qualname__ = class_name
    keras_export(namespace, class_name)(BinaryOperation)
    BinaryOperation._keras_registered_name = class_name
    return BinaryOperation


NotEqual = _binary("NotEqual", "keras.src.ops.numpy", torch.ne)
Equal = _binary("Equal", "keras.src.ops.numpy", torch.eq)
Greater = _binary("Greater", "keras.src.ops.numpy", torch.gt)
Less = _binary("Less", "keras.src.ops.numpy", torch.lt)
Divide = _binary("Divide", "keras.src.ops.numpy", torch.divide)


@keras_export("keras.src.ops.core", "Cast")
class Cast(Operation):
    """`ops.cast(x, dtype)` as a graph node."""

    _keras_registered_name = "Cast"

    def __init__(self, dtype, name=None):
        super().__init__(name=name)
        self.target_dtype = backend.standardize_dtype(dtype)

    def call(self, x):
        return x.to(backend.torch_dtype(self.target_dtype))

    def get_config(self):
        return {"name": self.name, "dtype": self.target_dtype}

"""`Input()` and `InputLayer`: where a Functional graph starts."""

import warnings

from keramic import backend
from keramic.layers.base import Layer
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor, Node
from keramic.utils import naming


@keras_export("keras.layers")
class InputLayer(Layer):
    """Holds the symbolic tensor a model is built from; it has no weights."""

    def __init__(
        self,
        shape=None,
        batch_size=None,
        dtype=None,
        sparse=None,
        batch_shape=None,
        input_tensor=None,
        optional=False,
        name=None,
        ragged=None,
        **kwargs,
    ):
        # Keras 2 spellings read from old configs.
        legacy_shape = kwargs.pop("batch_input_shape", None)
        batch_shape = legacy_shape if batch_shape is None else batch_shape  # `()` is a shape: a scalar per batch
        if "input_shape" in kwargs and shape is None:
            warnings.warn("Argument `input_shape` is deprecated. Use `shape` instead.", stacklevel=2)
            shape = kwargs.pop("input_shape")
        for legacy in ("input_shape", "trainable"):
            kwargs.pop(legacy, None)
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to InputLayer: {kwargs}")
        if ragged:
            raise ValueError("`ragged=True` is not supported with the torch backend")
        if isinstance(dtype, dict):  # a DTypePolicy envelope from a Keras 2 config
            dtype = dtype.get("config", {}).get("name")
        self._dtype = backend.standardize_dtype(dtype)
        # As in Keras, the tensor's dtype is `dtype`, while the layer's (unused) policy is the global one.
        super().__init__(name=name or naming.auto_name("InputLayer"))
        if batch_shape is None:
            if shape is None and input_tensor is None:
                raise ValueError("InputLayer needs `shape` or `batch_shape`.")
            if shape is not None and not isinstance(shape, (tuple, list)):
                raise ValueError(f"Cannot convert '{shape}' to a shape.")  # as Keras: `shape=2` is no shape
            batch_shape = (batch_size,) + tuple(shape) if shape is not None else input_tensor.shape
        self.batch_shape = tuple(None if d is None else int(d) for d in batch_shape)
        self.sparse = bool(sparse)
        self.optional = optional
        self.built = True
        # As Keras: the tensor of an unnamed Input gets a tensor's automatic name, not its layer's.
        tensor = KerasTensor(self.batch_shape, self._dtype, name=name)
        Node(self, (), {}, tensor)
        self.output_tensor = tensor

    @property
    def dtype(self):
        return self._dtype

    def call(self, inputs):
        return inputs

    def get_config(self):
        return {
            "batch_shape": self.batch_shape,
            "dtype": self._dtype,
            "sparse": self.sparse,
            "ragged": False,
            "name": self.name,
            "optional": self.optional,
        }


@keras_export("keras.layers")
@keras_export("keras")
def Input(shape=None, batch_size=None, dtype=None, sparse=None, ragged=None, batch_shape=None, name=None, tensor=None, optional=False):
    """A symbolic input: `x = Input(shape=(784,), name="digits")`."""
    layer = InputLayer(
        ragged=ragged,
        shape=shape,
        batch_size=batch_size,
        dtype=dtype,
        sparse=sparse,
        batch_shape=batch_shape,
        name=name,
        input_tensor=tensor,
        optional=optional,
    )
    return layer.output_tensor

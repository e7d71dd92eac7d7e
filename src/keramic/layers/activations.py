"""Activation layers with arguments: ReLU, LeakyReLU, PReLU, ELU, Softmax."""

import warnings

import torch
import torch.nn.functional as F

from keramic import activations, backend, constraints, initializers, regularizers
from keramic.layers.base import Layer, weight_settings
from keramic.ops.nn import warn_if_softmax_over_one
from keramic.serialization.registry import keras_export


@keras_export("keras.layers")
class ReLU(Layer):
    """`x` above `threshold` (capped at `max_value`), `negative_slope * (x - threshold)` below.

    >>> ReLU(max_value=6.0)(np.array([[-1.0, 3.0, 9.0]], "float32"))
    tensor([[0., 3., 6.]])
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0.0:
            raise ValueError(f"max_value of a ReLU layer cannot be a negative value. Received: max_value={max_value}")
        if negative_slope is None or negative_slope < 0.0:
            raise ValueError(
                "negative_slope of a ReLU layer cannot be None or a negative value. "
                f"Received: negative_slope={negative_slope}"
            )
        if threshold is None or threshold < 0.0:
            raise ValueError(
                "threshold of a ReLU layer cannot be None or a negative value. "
                f"Received: threshold={threshold}"
            )
        self.max_value = max_value
        self.negative_slope = negative_slope
        self.threshold = threshold
        self.supports_masking = True

    def call(self, inputs):
        return activations.relu(inputs, self.negative_slope, self.max_value, self.threshold)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_value": self.max_value, "negative_slope": self.negative_slope, "threshold": self.threshold})
        return config


@keras_export("keras.layers")
class LeakyReLU(Layer):
    """`x` for positive inputs, `negative_slope * x` otherwise (Keras 2's `alpha` is accepted).

    >>> LeakyReLU(negative_slope=0.5)(np.array([[-2.0, 2.0]], "float32"))
    tensor([[-1.,  2.]])
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        super().__init__(**kwargs)
        if negative_slope is None or negative_slope < 0:
            raise ValueError(
                "The negative_slope value of a Leaky ReLU layer cannot be None or negative value. "
                f"Expected a float. Received: negative_slope={negative_slope}"
            )
        self.negative_slope = negative_slope
        self.supports_masking = True

    def call(self, inputs):
        return F.leaky_relu(inputs, self.negative_slope)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config


@keras_export("keras.layers")
class PReLU(Layer):
    """Leaky ReLU with a learned slope `alpha` per input position (shared along `shared_axes`).

    >>> PReLU(shared_axes=[1, 2])(np.zeros((1, 4, 4, 3), "float32")).shape
    torch.Size([1, 4, 4, 3])
    """

    def __init__(
        self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        elif isinstance(shared_axes, (list, tuple)):
            self.shared_axes = list(shared_axes)
        else:
            self.shared_axes = [shared_axes]

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for axis in self.shared_axes or ():
            shape[axis - 1] = 1
        self.alpha = self.add_weight(
            shape=shape,
            initializer=self.alpha_initializer,
            regularizer=self.alpha_regularizer,
            constraint=self.alpha_constraint,
            name="alpha",
        )

    def call(self, inputs):
        return torch.where(inputs > 0, inputs, inputs * self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **weight_settings(self, ("alpha",)),
                "shared_axes": self.shared_axes,
            }
        )
        return config


@keras_export("keras.layers")
class ELU(Layer):
    """`x` for positive inputs, `alpha * (exp(x) - 1)` otherwise.

    >>> ELU()(np.array([[0.0, 1.0]], "float32"))
    tensor([[0., 1.]])
    """

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha
        self.supports_masking = True

    def call(self, inputs):
        return F.elu(inputs, self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        # Keras's ELU has no get_config of its own; its generic one puts `alpha` right after `name`.
        base = super().get_config()
        config = {"name": base.pop("name"), "alpha": self.alpha}
        config.update(base)
        return config


@keras_export("keras.layers")
class Softmax(Layer):
    """Softmax over `axis` (an int or a tuple); masked-out positions get probability 0.

    >>> Softmax()(np.array([[1.0, 1.0]], "float32"))
    tensor([[0.5000, 0.5000]])
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is not None:
            broadcastable = mask.dim() <= inputs.dim() and all(
                m in (1, i) for m, i in zip(reversed(mask.shape), reversed(inputs.shape))
            )
            if not broadcastable:
                raise ValueError(
                    "The `mask` must be broadcastable to `inputs`. "
                    f"Received: inputs.shape={tuple(inputs.shape)}, mask.shape={tuple(mask.shape)}"
                )
            mask = mask if mask.dtype == torch.bool else mask > 0.5
            lowest = -3e4 if inputs.dtype == torch.float16 else -1e9
            inputs = torch.where(mask, inputs, torch.tensor(lowest, dtype=inputs.dtype, device=inputs.device))
        if isinstance(self.axis, (list, tuple)) and len(self.axis) == 1:  # Keras: a plain softmax
            warn_if_softmax_over_one(inputs, self.axis[0])
            outputs = backend.softmax(inputs, self.axis[0])
        elif isinstance(self.axis, (list, tuple)):
            axes = tuple(self.axis)
            outputs = torch.exp(inputs - torch.logsumexp(inputs, dim=axes, keepdim=True))
        else:
            warn_if_softmax_over_one(inputs, self.axis)
            outputs = backend.softmax(inputs, self.axis)
        if mask is not None:
            outputs = torch.where(mask, outputs, torch.zeros((), dtype=outputs.dtype, device=outputs.device))
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config

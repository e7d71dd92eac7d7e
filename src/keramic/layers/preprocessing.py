"""Preprocessing layers that live inside a model: Rescaling and Normalization."""

import math

import numpy as np
import torch

from keramic import backend
from keramic.layers.base import Layer
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object

# Keras's backend.epsilon(): the smallest standard deviation Normalization divides by.
_EPSILON = 1e-7


@keras_export("keras.layers")
class Rescaling(Layer):
    """`inputs * scale + offset` in the compute dtype; `scale`/`offset` may be per-channel lists.

    >>> Rescaling(1 / 255)(np.full((1, 2), 255.0, "float32"))
    tensor([[1., 1.]])
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset
        self.supports_masking = True

    def build(self, input_shape):
        """No weights; defined so the config records a `build_config`, as Keras's Rescaling does."""

    def _constant(self, value, like):
        if isinstance(value, (int, float)):
            return value
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)

    def call(self, inputs):
        x = inputs.to(backend.torch_dtype(self.compute_dtype))
        return x * self._constant(self.scale, x) + self._constant(self.offset, x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"scale": serialize_keras_object(self.scale), "offset": serialize_keras_object(self.offset)})
        return config

    @classmethod
    def from_config(cls, config):
        """`scale`/`offset` may be stored as array envelopes."""
        config = dict(config)
        for key in ("scale", "offset"):
            config[key] = deserialize_keras_object(config[key])
        return super().from_config(config)


def _first_of_batch(batch):
    """A dataset element may be `(x, y)` or `(x, y, sample_weight)`: adapt only reads `x`."""
    return batch[0] if isinstance(batch, tuple) else batch


@keras_export("keras.layers")
class Normalization(Layer):
    """`(inputs - mean) / sqrt(variance)` per feature along `axis` (`invert=True` undoes it).

    The statistics are given as `mean`/`variance`, or learned from data with `adapt()`; adapted
    ones are the weights `mean`, `variance` and `count`, as in Keras.

    >>> layer = Normalization()
    >>> layer.adapt(np.array([[0.0], [2.0]], "float32"))
    >>> layer(np.array([[2.0]], "float32"))
    tensor([[1.]])
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, int):
            axis = (axis,)
        else:
            axis = tuple(axis)
        self.axis = axis
        self.input_mean = mean
        self.input_variance = variance
        self.invert = invert
        self.supports_masking = True
        if (mean is None) != (variance is None):
            raise ValueError(
                "When setting values directly, both `mean` and `variance` must be set. "
                f"Received: mean={mean} and variance={variance}"
            )
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise ValueError(
                    "When setting values directly, `mean` and `variance` must have the same shape. "
                    f"Received: mean shape {np.shape(mean)} and variance shape {np.shape(variance)}"
                )
            if np.ndim(mean) > len(self.axis):
                raise ValueError(
                    f"The rank of `mean` must be less than or equal to the number of axes ({len(self.axis)}). "
                    f"Received: mean shape {np.shape(mean)} for axis {self.axis}"
                )

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(
                "All `axis` values must be in the range [-ndim, ndim). "
                f"Received inputs with ndim={ndim}, while axis={self.axis}"
            )
        self._keep_axis = tuple(sorted(a % ndim for a in self.axis))
        for d in self._keep_axis:
            if input_shape[d] is None:
                raise ValueError(
                    f"All `axis` values to be kept must have a known shape. Received axis={self.axis}, "
                    f"inputs.shape={input_shape}, with unknown axis at index {d}"
                )
        self._reduce_axis = tuple(d for d in range(ndim) if d not in self._keep_axis)
        self._broadcast_shape = [input_shape[d] if d in self._keep_axis else 1 for d in range(ndim)]
        self._stats_shape = tuple(input_shape[d] for d in self._keep_axis)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(
                shape=self._stats_shape, initializer="zeros", trainable=False, name="mean"
            )
            self.adapt_variance = self.add_weight(
                shape=self._stats_shape, initializer="ones", trainable=False, name="variance"
            )
            self.count = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False, name="count")
        else:
            self._fixed_mean = self._broadcast_given(self.input_mean)
            self._fixed_variance = self._broadcast_given(self.input_variance)

    def _broadcast_given(self, value):
        """A given mean/variance, aligned with the kept axes from the right, at full broadcast shape."""
        value = torch.as_tensor(np.asarray(value, dtype="float64"), device=backend.get_device())
        aligned = [1] * len(self._broadcast_shape)
        for i in range(1, value.dim() + 1):
            aligned[self._keep_axis[-i]] = value.shape[-i]
        value = value.reshape(aligned).expand(self._broadcast_shape)
        return value.to(backend.torch_dtype(self.compute_dtype)).contiguous()

    def adapt(self, data):
        """Set `mean` and `variance` from an array, a tensor, or an iterable of batches."""
        if self.input_mean is not None:
            raise ValueError("adapt() cannot be used on a Normalization layer given a fixed `mean` and `variance`.")
        if isinstance(data, (np.ndarray, torch.Tensor)):
            batches = [data]
        elif hasattr(data, "__iter__"):
            batches = (_first_of_batch(batch) for batch in data)
        else:
            raise TypeError(
                f"Unsupported data type: {type(data)}. "
                "`adapt` supports arrays, tensors and iterables of batches."
            )
        total_mean = total_variance = None
        total_count = 0
        for batch in batches:
            batch = torch.as_tensor(backend.convert_to_numpy(batch), dtype=torch.float64)
            if not self.built:
                self.build_from_config({"input_shape": tuple(batch.shape)})
            if tuple(batch.shape[d] for d in self._keep_axis) != self._stats_shape:
                raise ValueError(
                    f"adapt() received data of shape {tuple(batch.shape)}, but the layer's statistics have shape "
                    f"{self._stats_shape} along axis {self.axis}."
                )
            if self._reduce_axis:
                variance, mean = torch.var_mean(batch, dim=self._reduce_axis, correction=0)
            else:
                mean, variance = batch, torch.zeros_like(batch)
            count = math.prod(batch.shape[d] for d in self._reduce_axis)
            if total_mean is None:
                total_mean, total_variance, total_count = mean, variance, count
                continue
            # Merge two sets of moments (Chan et al.), exact for any split into batches.
            new_count = total_count + count
            delta = mean - total_mean
            total_variance = (
                total_variance * total_count + variance * count + delta.square() * total_count * count / new_count
            ) / new_count
            total_mean = total_mean + delta * count / new_count
            total_count = new_count
        if total_mean is None:
            raise ValueError("adapt() received an empty iterable (no batches).")
        self.adapt_mean.assign(total_mean.to(self.adapt_mean.dtype))
        self.adapt_variance.assign(total_variance.to(self.adapt_variance.dtype))

    def call(self, inputs):
        x = inputs.to(backend.torch_dtype(self.compute_dtype))
        if self.input_mean is None:
            mean = self.adapt_mean.reshape(self._broadcast_shape).to(x.dtype)
            variance = self.adapt_variance.reshape(self._broadcast_shape).to(x.dtype)
        else:
            mean, variance = self._fixed_mean, self._fixed_variance
        std = torch.sqrt(variance).clamp_min(_EPSILON)
        if self.invert:
            return mean + x * std
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "invert": self.invert,
                "mean": np.array(self.input_mean).tolist(),
                "variance": np.array(self.input_variance).tolist(),
            }
        )
        return config

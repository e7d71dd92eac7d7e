"""Numerical preprocessing: Rescaling, Normalization, Discretization and CategoryEncoding."""

import math

import numpy as np
import torch

from keramic import backend
from keramic.layers.base import Layer
from keramic.layers.preprocessing import encoding
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

    _allows_non_tensor_positional_args = True  # as Keras's data layers

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

    _allows_non_tensor_positional_args = True  # as Keras's data layers

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


def _adapt_batches(data):
    """Arrays and tensors are one batch; any other iterable yields batches (`x` of `(x, y)` pairs)."""
    if isinstance(data, (np.ndarray, torch.Tensor, list)) and not (
        isinstance(data, list) and data and isinstance(data[0], (np.ndarray, torch.Tensor))
    ):
        return [data]
    if hasattr(data, "__iter__"):
        return (_first_of_batch(batch) for batch in data)
    raise TypeError(f"adapt() expects an array, a tensor or an iterable of batches; received {type(data).__name__}.")


def _summarize(values, epsilon):
    """Every `1/epsilon`-th sorted value, each weighted by the stride (all values when there are few)."""
    values = np.sort(np.reshape(values, [-1]))
    stride = max(values.size * epsilon, 1)
    picked = values[int(stride - 1) :: int(stride)]
    return np.stack([picked, np.full_like(picked, stride)])


def _compress(summary, epsilon):
    """Re-sample a weighted summary at `1/epsilon` evenly spaced cumulative-weight levels."""
    if summary.shape[1] * epsilon < 1:
        return summary
    levels = epsilon + np.arange(0.0, 1.0, epsilon)
    cumulative = summary[1].cumsum()
    fractions = cumulative / cumulative[-1]
    points = np.interp(levels, fractions, summary[0])
    cumulative_at = np.interp(levels, fractions, cumulative)
    weights = cumulative_at - np.concatenate(([0.0], cumulative_at[:-1]))
    return np.stack((points, weights)).astype("float32")


def _merge(first, second, epsilon):
    both = np.concatenate((first, second), axis=1)
    return _compress(np.take(both, np.argsort(both[0]), axis=1), epsilon)


@keras_export("keras.layers")
class Discretization(Layer):
    """Bucket index of each value among sorted `bin_boundaries` (given, or approximate quantiles from `adapt`).

    >>> Discretization(bin_boundaries=[0.0, 1.0])(np.array([-1.0, 0.5, 2.0], "float32"))
    tensor([0, 1, 2], dtype=torch.int32)
    """

    _allows_non_tensor_positional_args = True  # as Keras's data layers

    _records_build_config = True  # Keras records a build config for it once called
    # Keras casts its float inputs to floatx, not to its (integer, in saved configs) dtype.
    _autocast_inputs = False

    def __init__(self, bin_boundaries=None, num_bins=None, epsilon=0.01, output_mode="int", sparse=False, dtype=None, name=None):
        super().__init__(name=name, dtype=dtype)
        if sparse:
            raise ValueError(f"`sparse=True` is not supported on the torch backend. Received: sparse={sparse}")
        encoding.check_output_mode(output_mode, ("int", "one_hot", "multi_hot", "count"), "Discretization")
        if num_bins is not None and num_bins < 0:
            raise ValueError(f"`num_bins` must be greater than or equal to 0. Received: `num_bins={num_bins}`")
        if num_bins is not None and bin_boundaries is not None:
            raise ValueError(
                "Both `num_bins` and `bin_boundaries` should not be set. "
                f"Received: `num_bins={num_bins}` and `bin_boundaries={bin_boundaries}`"
            )
        if num_bins is None and bin_boundaries is None:
            raise ValueError("You need to set either `num_bins` or `bin_boundaries`.")
        self.bin_boundaries = bin_boundaries
        self.num_bins = num_bins
        self.epsilon = epsilon
        self.output_mode = output_mode
        self.sparse = sparse
        self.summary = None if bin_boundaries else np.array([[], []], dtype="float32")

    @property
    def output_dtype(self):
        return "int32" if self.output_mode == "int" else self.compute_dtype

    def adapt(self, data, steps=None):
        """Set `bin_boundaries` to approximate `num_bins` quantiles of `data` (arrays or batches)."""
        if self.num_bins is None:
            raise ValueError(
                "Cannot adapt a Discretization layer that has been initialized with `bin_boundaries`, "
                "use `num_bins` instead."
            )
        self.summary = np.array([[], []], dtype="float32")
        for step, batch in enumerate(_adapt_batches(data)):
            if steps is not None and step >= steps:
                break
            self.update_state(batch)
        self.finalize_state()

    def update_state(self, data):
        values = np.asarray(backend.convert_to_numpy(data)).astype("float32")
        self.summary = _merge(_summarize(values, self.epsilon), self.summary, self.epsilon)

    def finalize_state(self):
        if self.num_bins is not None:
            self.bin_boundaries = _compress(self.summary, 1.0 / self.num_bins)[0, :-1].tolist()

    def reset_state(self):
        if self.num_bins is not None:
            self.summary = np.array([[], []], dtype="float32")

    def call(self, inputs):
        if self.bin_boundaries is None:
            raise ValueError(
                "You need to either pass the `bin_boundaries` argument at construction time or call "
                "`adapt(dataset)` before you can start using the `Discretization` layer."
            )
        x = torch.as_tensor(inputs)
        if x.is_floating_point():
            x = x.to(backend.torch_dtype(backend.floatx()))
        boundaries = torch.tensor(self.bin_boundaries, dtype=x.dtype if x.is_floating_point() else torch.float64, device=x.device)
        indices = torch.bucketize(x.to(boundaries.dtype), boundaries, right=True)
        return encoding.encode(indices, self.output_mode, len(self.bin_boundaries) + 1, self.output_dtype)

    def compute_output_shape(self, input_shape):
        depth = len(self.bin_boundaries) + 1 if self.bin_boundaries is not None else self.num_bins
        return encoding.output_shape(input_shape, self.output_mode, depth)

    def compute_output_spec(self, inputs):
        from keramic.symbolic import KerasTensor

        return KerasTensor(self.compute_output_shape(inputs.shape), self.output_dtype)

    def get_config(self):
        return {
            "bin_boundaries": self.bin_boundaries,
            "num_bins": self.num_bins,
            "epsilon": self.epsilon,
            "output_mode": self.output_mode,
            "sparse": self.sparse,
            "name": self.name,
            "dtype": self.dtype,
        }

    @classmethod
    def from_config(cls, config):
        """An adapted layer's config holds both `num_bins` and `bin_boundaries`: set the boundaries after."""
        config = dict(config)
        boundaries = config.pop("bin_boundaries", None) if config.get("num_bins") is not None else None
        if isinstance(config.get("dtype"), dict):
            from keramic import dtype_policies

            config["dtype"] = dtype_policies.get(config["dtype"])
        layer = cls(**config)
        if boundaries is not None:
            layer.bin_boundaries = boundaries
        return layer


@keras_export("keras.layers")
class CategoryEncoding(Layer):
    """Integer category ids -> one-hot, multi-hot or count vectors of length `num_tokens`.

    >>> CategoryEncoding(4, output_mode="one_hot")(np.array([3, 0]))
    tensor([[0., 0., 0., 1.],
            [1., 0., 0., 0.]])
    """

    _allows_non_tensor_positional_args = True  # as Keras's data layers

    _converts_input_args = False  # as Keras: inputs are taken as they come

    _records_build_config = True  # Keras records a build config for it once called

    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False, **kwargs):
        super().__init__(**kwargs)
        if output_mode == "binary":
            output_mode = "multi_hot"
        if output_mode not in ("count", "one_hot", "multi_hot"):
            raise ValueError(f"Unknown arg for output_mode: {output_mode}")
        if num_tokens is None:
            raise ValueError(
                "num_tokens must be set to use this layer. If the number of tokens is not known beforehand, "
                "use the IntegerLookup layer instead."
            )
        if num_tokens < 1:
            raise ValueError(f"`num_tokens` must be >= 1. Received: num_tokens={num_tokens}.")
        if sparse:
            raise ValueError(f"`sparse=True` is not supported on the torch backend. Received: sparse={sparse}")
        self.num_tokens = num_tokens
        self.output_mode = output_mode
        self.sparse = sparse

    def _as_input_tensor(self, x):
        """Category ids keep their integer dtype (the base class would cast floats only)."""
        return torch.as_tensor(np.asarray(x), device=backend.get_device()) if not isinstance(x, torch.Tensor) else x

    def call(self, inputs, count_weights=None):
        if count_weights is not None:
            if self.output_mode != "count":
                raise ValueError(
                    f"`count_weights` is not used when `output_mode` is not `'count'`. Received `count_weights={count_weights}`."
                )
            count_weights = torch.as_tensor(np.asarray(count_weights) if not isinstance(count_weights, torch.Tensor) else count_weights)
            count_weights = count_weights.to(backend.torch_dtype(self.compute_dtype))
        return encoding.encode(torch.as_tensor(inputs), self.output_mode, self.num_tokens, self.compute_dtype, count_weights)

    def compute_output_shape(self, input_shape):
        if input_shape is not None and len(input_shape) == 0:
            return (self.num_tokens,)
        if self.output_mode == "one_hot" and (input_shape[-1] != 1 or len(input_shape) == 1):
            return tuple(input_shape) + (self.num_tokens,)
        return tuple(input_shape[:-1]) + (self.num_tokens,)

    def get_config(self):
        config = super().get_config()
        config.update({"num_tokens": self.num_tokens, "output_mode": self.output_mode})
        return config

"""Regularization layers: noise and dropout variants that act only in training, and ActivityRegularization.

Each is the identity at inference. Each noisy layer owns a `SeedGenerator` (made from `seed`, or
from Python's `random` when unseeded) and draws through `keramic.random`, so its training-time
noise is Keras's for the same seeds.
"""

import math

from keramic import backend, regularizers
from keramic import random as keramic_random
from keramic.layers.base import Layer
from keramic.layers.core import Dropout
from keramic.serialization.registry import keras_export

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class _Noisy(Layer):
    """Shared: a seed generator (when the layer's strength is positive, as Keras makes it)."""

    def _seed_generator_for(self, strength, seed):
        if strength > 0:
            self.seed_generator = keramic_random.SeedGenerator(seed)

    def _normal(self, like, mean, stddev):
        return keramic_random.normal(tuple(like.shape), mean, stddev, self.compute_dtype, self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape


def _check_rate(rate):
    if not 0 <= rate <= 1:
        raise ValueError(f"Invalid value received for argument `rate`. Expected a float value between 0 and 1. Received: rate={rate}")


@keras_export("keras.layers")
class ActivityRegularization(Layer):
    """Identity that adds an L1/L2 penalty on its input to the model's losses (scaled by Keras's rule)."""

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.supports_masking = True
        self.l1 = l1
        self.l2 = l2

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)
        config.update({"l1": self.l1, "l2": self.l2})
        return config


@keras_export("keras.layers")
class GaussianNoise(_Noisy):
    """Adds zero-mean Gaussian noise of standard deviation `stddev` while training."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= stddev <= 1:
            raise ValueError(
                f"Invalid value received for argument `stddev`. Expected a float value between 0 and 1. "
                f"Received: stddev={stddev}"
            )
        self.stddev = stddev
        self.seed = seed
        self._seed_generator_for(stddev, seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if training and self.stddev > 0:
            return inputs + self._normal(inputs, 0.0, self.stddev)
        return inputs

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


@keras_export("keras.layers")
class GaussianDropout(_Noisy):
    """Multiplies inputs by Gaussian noise of mean 1 and variance `rate / (1 - rate)` while training."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        _check_rate(rate)
        self.rate = rate
        self.seed = seed
        self._seed_generator_for(rate, seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if training and 0 < self.rate < 1:
            return inputs * self._normal(inputs, 1.0, math.sqrt(self.rate / (1.0 - self.rate)))
        return inputs

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras_export("keras.layers")
class AlphaDropout(_Noisy):
    """Dropout that keeps SELU's self-normalizing mean and variance: dropped units take SELU's floor."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        _check_rate(rate)
        self.rate = rate
        self.noise_shape = noise_shape
        self.seed = seed
        self._seed_generator_for(rate, seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if not training or self.rate <= 0:
            return inputs
        shape = inputs.shape if self.noise_shape is None else [
            inputs.shape[i] if d is None else d for i, d in enumerate(self.noise_shape)
        ]
        kept = (keramic_random.uniform(shape, seed=self.seed_generator) >= self.rate).to(inputs.dtype)
        alpha_p = -_SELU_ALPHA * _SELU_SCALE
        a = ((1 - self.rate) * (1 + self.rate * alpha_p**2)) ** -0.5
        b = -a * alpha_p * self.rate
        return a * (inputs * kept + alpha_p * (1 - kept)) + b

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "noise_shape": self.noise_shape}


class _SpatialDropout(Dropout):
    """Dropout of whole feature maps: one keep/drop draw per (sample, channel)."""

    rank: int | None = None

    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)
        # Keras's SpatialDropout1D is always channels-last; 2D/3D follow the global image data format.
        default = "channels_last" if self.rank == 1 else backend.image_data_format()
        self.data_format = default if data_format is None else data_format
        if self.data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"`data_format` must be 'channels_last' or 'channels_first'. Received: {data_format}")

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        if self.data_format == "channels_last":
            shape = (inputs.shape[0],) + (1,) * self.rank + (inputs.shape[-1],)
        else:
            shape = (inputs.shape[0], inputs.shape[1]) + (1,) * self.rank
        return keramic_random.dropout(inputs, self.rate, noise_shape=shape, seed=self.seed_generator)

    def get_config(self):
        return {
            "rate": self.rate,
            "seed": self.seed,
            "name": self.name,
            "dtype": self.dtype,
            **({"data_format": self.data_format} if self.rank > 1 else {}),
        }


@keras_export("keras.layers")
class SpatialDropout1D(_SpatialDropout):
    """Drops whole 1D feature maps (channels) of `(batch, steps, channels)` inputs while training."""

    rank = 1

    def __init__(self, rate, seed=None, name=None, dtype=None):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)


@keras_export("keras.layers")
class SpatialDropout2D(_SpatialDropout):
    """Drops whole 2D feature maps of `(batch, rows, cols, channels)` inputs while training."""

    rank = 2


@keras_export("keras.layers")
class SpatialDropout3D(_SpatialDropout):
    """Drops whole 3D feature maps of `(batch, d1, d2, d3, channels)` inputs while training."""

    rank = 3

"""Normalization over axes: Batch, Layer, Group, Unit and RMS normalization.

Batch and Layer normalization compute in at least float32 (half-precision inputs are upcast, as Keras does) and return the
layer's compute dtype.
"""

import torch
import torch.nn.functional as F

from keramic import backend, constraints, initializers, regularizers
from keramic.layers.base import Layer, serialize_or_none, weight_settings
from keramic.layers.input_spec import InputSpec
from keramic.serialization.registry import keras_export

# Keras's backend.epsilon(): guards the masked-moments division.
_EPSILON = 1e-7



def _at_least_float32(x):
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@keras_export("keras.layers")
class BatchNormalization(Layer):
    """Normalizes over the batch while training and with moving statistics otherwise.

    Training updates `moving = moving * momentum + batch * (1 - momentum)` with the biased batch
    variance, as Keras does (torch's own running variance is unbiased, so it is not used).

    >>> layer = BatchNormalization()
    >>> layer(np.random.rand(8, 3).astype("float32"), training=True).shape
    torch.Size([8, 3])
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        renorm=False,
        renorm_clipping=None,
        renorm_momentum=0.99,
        synchronized=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if renorm:
            raise NotImplementedError("keramic's BatchNormalization does not support renorm=True.")
        self.axis = int(axis)
        # One process sees the whole batch, so synchronized statistics are the plain ones.
        self.synchronized = synchronized
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.renorm = renorm
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = renorm_momentum
        self.supports_masking = True
        self.gamma = None
        self.beta = None

    def build(self, input_shape):
        self.input_spec = InputSpec(ndim=len(input_shape), axes={self.axis: input_shape[self.axis]})  # as Keras
        shape = (input_shape[self.axis],)
        if self.scale:
            self.gamma = self.add_weight(
                shape=shape,
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                autocast=False,
                name="gamma",
            )
        if self.center:
            self.beta = self.add_weight(
                shape=shape,
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                autocast=False,
                name="beta",
            )
        self.moving_mean = self.add_weight(
            shape=shape, initializer=self.moving_mean_initializer, trainable=False, autocast=False, name="moving_mean"
        )
        self.moving_variance = self.add_weight(
            shape=shape,
            initializer=self.moving_variance_initializer,
            trainable=False,
            autocast=False,
            name="moving_variance",
        )

    def call(self, inputs, training=None, mask=None):
        if mask is not None and mask.dim() != inputs.dim() - 1:
            raise ValueError(
                "The mask provided should be one dimension less than the inputs. "
                f"Received: mask.shape={tuple(mask.shape)}, inputs.shape={tuple(inputs.shape)}"
            )
        x = _at_least_float32(inputs)
        ndim = x.dim()
        axis = self.axis % ndim
        broadcast = [1] * ndim
        broadcast[axis] = x.shape[axis]
        if training and self.trainable:
            reduce = tuple(d for d in range(ndim) if d != axis)
            mean, variance = self._moments(x, mask, reduce)
            with torch.no_grad():
                momentum = self.momentum
                self.moving_mean.copy_(self.moving_mean * momentum + mean.detach() * (1.0 - momentum))
                self.moving_variance.copy_(self.moving_variance * momentum + variance.detach() * (1.0 - momentum))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        # y = (x - mean) * a + beta with a = gamma / sqrt(var + eps), in Keras's order: folding the mean
        # into the offset (x * a + (beta - mean * a)) cancels away the digits when |mean| >> the spread.
        a = torch.rsqrt(variance.to(x.dtype) + self.epsilon)
        if self.gamma is not None:
            a = a * self.gamma.to(x.dtype)
        outputs = (x - mean.to(x.dtype).reshape(broadcast)) * a.reshape(broadcast)
        if self.beta is not None:
            outputs = outputs + self.beta.to(x.dtype).reshape(broadcast)
        return outputs.to(backend.torch_dtype(self.compute_dtype))

    def _moments(self, x, mask, reduce):
        if mask is None:
            variance, mean = torch.var_mean(x, dim=reduce, correction=0)
            return mean, variance
        weights = mask.unsqueeze(-1).expand(x.shape).to(torch.bool)
        count = weights.to(x.dtype).sum(dim=reduce, keepdim=True) + _EPSILON
        mean = torch.where(weights, x, 0).sum(dim=reduce, keepdim=True) / count
        variance = torch.where(weights, x - mean, 0).square().sum(dim=reduce, keepdim=True) / count
        return mean.flatten(), variance.flatten()

    def compute_output_shape(self, input_shape):
        if self.axis >= len(input_shape) or self.axis < -len(input_shape):
            raise ValueError(
                f"Axis {self.axis} is out of bounds for input shape {input_shape}. "
                f"Received: axis={self.axis}"
            )
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": serialize_or_none(self.beta_initializer),
                "gamma_initializer": serialize_or_none(self.gamma_initializer),
                "moving_mean_initializer": serialize_or_none(self.moving_mean_initializer),
                "moving_variance_initializer": serialize_or_none(self.moving_variance_initializer),
                "beta_regularizer": serialize_or_none(self.beta_regularizer),
                "gamma_regularizer": serialize_or_none(self.gamma_regularizer),
                "beta_constraint": serialize_or_none(self.beta_constraint),
                "gamma_constraint": serialize_or_none(self.gamma_constraint),
                "synchronized": self.synchronized,
                "renorm": self.renorm,
                "renorm_clipping": self.renorm_clipping,
                "renorm_momentum": self.renorm_momentum,
            }
        )
        return config


@keras_export("keras.layers")
class LayerNormalization(Layer):
    """Normalizes each sample over `axis` (an int or a list of axes), then scales and shifts.

    `rms_scaling=True` (deprecated in Keras, kept for old configs) divides by the standard
    deviation without centring and has no `beta`.

    >>> LayerNormalization()(np.random.rand(2, 5).astype("float32")).shape
    torch.Size([2, 5])
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        rms_scaling=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = list(axis)
        elif isinstance(axis, int):
            self.axis = axis
        else:
            raise TypeError(f"Expected an int or a list/tuple of ints for the argument 'axis', but received: {axis!r}")
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.rms_scaling = rms_scaling
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.supports_masking = True
        self.autocast = False

    def build(self, input_shape):
        # Keras turns `axis` into a sorted list here, and its config shows the list afterwards.
        self.axis = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        shape = tuple(input_shape[d] for d in self.axis)
        self.gamma = None
        if self.scale or self.rms_scaling:
            self.gamma = self.add_weight(
                shape=shape,
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                autocast=False,
                name="gamma",
            )
        self.beta = None
        if self.center and not self.rms_scaling:
            self.beta = self.add_weight(
                shape=shape,
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                autocast=False,
                name="beta",
            )

    def call(self, inputs):
        x = inputs.float()  # as Keras: float32 whatever the input (float64 and float16 alike)
        ndim = x.dim()
        axes = sorted(d % ndim for d in self.axis)
        gamma = None if self.gamma is None else self.gamma.to(x.dtype)
        beta = None if self.beta is None else self.beta.to(x.dtype)
        trailing = axes == list(range(ndim - len(axes), ndim))
        if trailing and not self.rms_scaling:
            outputs = F.layer_norm(x, tuple(x.shape[d] for d in axes), gamma, beta, self.epsilon)
        else:
            broadcast = [x.shape[d] if d in axes else 1 for d in range(ndim)]
            variance, mean = torch.var_mean(x, dim=axes, correction=0, keepdim=True)
            inverse = torch.rsqrt(variance + self.epsilon)
            if gamma is not None:
                inverse = inverse * gamma.reshape(broadcast)
            if self.rms_scaling:
                outputs = x * inverse
            else:
                outputs = (x - mean) * inverse
                if beta is not None:
                    outputs = outputs + beta.reshape(broadcast)
        # As Keras: back to the input's dtype first (a float16 input in a float32 layer rounds there).
        return outputs.to(inputs.dtype).to(backend.torch_dtype(self.compute_dtype))

    def compute_output_shape(self, input_shape):
        for axis in self.axis if isinstance(self.axis, list) else [self.axis]:
            if axis >= len(input_shape) or axis < -len(input_shape):
                raise ValueError(
                    f"Axis {axis} is out of bounds for input shape {input_shape}. "
                    f"Received: axis={self.axis}"
                )
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "rms_scaling": self.rms_scaling,
                **weight_settings(self, ("beta", "gamma")),
            }
        )
        return config


def _check_axes(axis, input_shape):
    for item in axis if isinstance(axis, (list, tuple)) else [axis]:
        if item >= len(input_shape) or item < -len(input_shape):
            raise ValueError(f"Axis {item} is out of bounds for input shape {tuple(input_shape)}. Received: axis={axis}")
    return input_shape


@keras_export("keras.layers")
class UnitNormalization(Layer):
    """Scales each input to unit L2 norm along `axis` (norms below 1e-12 count as 1e-12)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = list(axis)
        elif isinstance(axis, int):
            self.axis = axis
        else:
            raise TypeError(f"Invalid value for `axis` argument: expected an int or a list/tuple of ints. Received: axis={axis}")
        self.supports_masking = True

    def call(self, inputs):
        axis = tuple(self.axis) if isinstance(self.axis, list) else self.axis
        square_sum = inputs.square().sum(dim=axis, keepdim=True)
        return inputs * torch.minimum(torch.rsqrt(square_sum), torch.tensor(1e12, dtype=inputs.dtype, device=inputs.device))

    def compute_output_shape(self, input_shape):
        return _check_axes(self.axis, input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


@keras_export("keras.layers")
class RMSNormalization(Layer):
    """`x / sqrt(mean(x**2, axis) + epsilon) * scale`, computed in at least float32."""

    def __init__(self, axis=-1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = epsilon

    def build(self, input_shape):
        if isinstance(self.axis, (list, tuple)):
            self.axis = sorted(self.axis)
            shape = tuple(input_shape[dim] for dim in self.axis)
        else:
            shape = (input_shape[self.axis],)
            self.axis = [self.axis]
        self.scale = self.add_weight(name="scale", shape=shape, initializer="ones")

    def call(self, inputs):
        dtype = inputs.dtype
        x = _at_least_float32(inputs)
        rank = x.dim()
        axes = sorted(a % rank for a in self.axis)
        if axes == list(range(rank - len(axes), rank)):
            outputs = F.rms_norm(x, tuple(x.shape[a] for a in axes), self.scale.to(x.dtype), self.epsilon)
        else:
            outputs = x * torch.rsqrt(x.square().mean(dim=tuple(axes), keepdim=True) + self.epsilon) * self.scale.to(x.dtype)
        return outputs.to(dtype)

    def compute_output_shape(self, input_shape):
        return _check_axes(self.axis, input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}


@keras_export("keras.layers")
class GroupNormalization(Layer):
    """Normalizes each group of `groups` channels (over the group and every non-batch axis).

    `groups=-1` is instance normalization (one channel per group); `gamma`/`beta` are per channel.
    """

    def __init__(
        self,
        groups=32,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        if not isinstance(groups, int) or (groups <= 0 and groups != -1):
            raise ValueError(
                "Received an invalid value for argument `groups`, expected a positive integer (or `-1` for "
                f"instance normalization). Received: groups={groups}"
            )
        super().__init__(**kwargs)
        self.supports_masking = True
        self.autocast = False
        self.groups = groups
        self.axis = axis
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)

    def build(self, input_shape):
        dim = input_shape[self.axis]
        if dim is None:
            raise ValueError(
                f"Axis {self.axis} of input tensor should have a defined dimension but the layer received an "
                f"input with shape {tuple(input_shape)}."
            )
        if self.groups == -1:
            self.groups = dim
        if dim < self.groups:
            raise ValueError(f"Number of groups ({self.groups}) cannot be more than the number of channels ({dim}).")
        if dim % self.groups != 0:
            raise ValueError(f"Number of groups ({self.groups}) must be a multiple of the number of channels ({dim}).")
        self.gamma = self.beta = None
        if self.scale:
            self.gamma = self.add_weight(
                shape=(dim,),
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=(dim,),
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                autocast=False,
            )

    def call(self, inputs):
        """Keras's op order exactly, for its roundings: the channel axis split into (groups, size),
        moments as E[x^2] - E[x]^2, then `x * inv + (beta - mean * inv)` with
        `inv = rsqrt(variance + epsilon) * gamma`; all in float32, float64 inputs too (as Keras)."""
        axis = self.axis % inputs.dim()
        shape = tuple(inputs.shape)
        size = shape[axis] // self.groups
        grouped = inputs.reshape(shape[:axis] + (self.groups, size) + shape[axis + 1 :])
        x = grouped.to(torch.float32)
        reduced = [d for d in range(1, x.dim()) if d != axis]
        mean = torch.mean(x, dim=reduced, keepdim=True)
        variance = torch.mean(torch.square(x), dim=reduced, keepdim=True) - torch.square(mean)
        broadcast = [1] * x.dim()
        broadcast[axis], broadcast[axis + 1] = self.groups, size
        inv = torch.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            inv = inv * self.gamma.reshape(broadcast).to(x.dtype)
        shift = -mean * inv
        if self.beta is not None:
            shift = shift + self.beta.reshape(broadcast).to(x.dtype)
        outputs = (x * inv + shift).to(grouped.dtype).reshape(shape)
        return outputs.to(backend.torch_dtype(self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return _check_axes(self.axis, input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "groups": self.groups,
                "axis": self.axis,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                **weight_settings(self, ("beta", "gamma")),
            }
        )
        return config

"""Convolution layers Conv1D/2D/3D, and the shape and padding helpers every spatial layer shares.

Weights keep Keras's layout (`(k..., in, out)`); each call views them in torch's layout and runs
one `torch.nn.functional` convolution. channels_last inputs are viewed as NCHW with a permute
(no copy), so torch sees a channels_last-strided tensor and returns one.
"""

import torch.nn.functional as F

from keramic import activations, backend, constraints, initializers, regularizers
from keramic.layers.base import Layer, weight_settings
from keramic.layers.input_spec import InputSpec
from keramic.serialization.registry import keras_export

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def normalize_tuple(value, n, name, allow_zero=False):
    """An int or a sequence of `n` ints -> a tuple of `n` ints (Keras's `standardize_tuple`)."""
    if isinstance(value, int):
        values = (value,) * n
    else:
        try:
            values = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(
                f"The `{name}` argument must be a tuple of {n} integers. "
                f"Received {name}={value}"
            ) from None
        if len(values) != n:
            raise ValueError(f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}")
    lowest = 0 if allow_zero else 1
    if any(v < lowest for v in values):
        raise ValueError(
            f"The `{name}` argument must be a tuple of {n} integers >= {lowest}. Received {name}={value}"
        )
    return values


def normalize_data_format(value):
    """None -> the global `keramic.config.image_data_format()`, as Keras does; else validated."""
    value = backend.image_data_format() if value is None else str(value).lower()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(
            f"The `data_format` argument must be one of {{'channels_first', 'channels_last'}}. Received: {value}"
        )
    return value


def normalize_padding(value, allow_causal=False):
    padding = str(value).lower()
    allowed = ("valid", "same", "causal") if allow_causal else ("valid", "same")
    if padding not in allowed:
        raise ValueError(f"The `padding` argument must be one of {set(allowed)}. Received: {value}")
    return padding


def same_padding(length, kernel, stride, dilation=1):
    """(before, after) padding of TF's "same": output = ceil(length / stride), extra pad after."""
    effective = (kernel - 1) * dilation + 1
    output = -(-length // stride)
    total = max((output - 1) * stride + effective - length, 0)
    return total // 2, total - total // 2


def output_length(length, kernel, stride, padding, dilation=1):
    """Spatial output size of a convolution or pooling window (None stays None)."""
    if length is None:
        return None
    if padding == "valid":
        return (length - (kernel - 1) * dilation - 1) // stride + 1
    return (length - 1) // stride + 1


def to_channels_first(x, data_format):
    """An NC... view of the input (a permute, not a copy, for channels_last)."""
    return x.movedim(-1, 1) if data_format == "channels_last" else x


def from_channels_first(x, data_format):
    return x.movedim(1, -1) if data_format == "channels_last" else x


def pad_same(x, kernel_size, strides, dilation_rate):
    """Apply "same" padding to an NC... tensor.

    Returns the (possibly padded) tensor and the symmetric padding torch should still add itself:
    symmetric cases are left to torch, asymmetric ones are padded here.
    """
    pads = [same_padding(n, k, s, d) for n, k, s, d in zip(x.shape[2:], kernel_size, strides, dilation_rate)]
    if all(before == after for before, after in pads):
        return x, tuple(before for before, _ in pads)
    flat = [p for before, after in reversed(pads) for p in (before, after)]
    return F.pad(x, flat), (0,) * len(pads)


def channel_spec(rank, data_format, channels):
    """The InputSpec a built spatial layer keeps: its rank and its number of channels."""
    axis = -1 if data_format == "channels_last" else 1
    return InputSpec(min_ndim=rank + 2, axes={axis: channels})


class _Conv(Layer):
    """Shared constructor, build and call of the Conv{1,2,3}D layers."""

    rank = None

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.input_spec = InputSpec(min_ndim=self.rank + 2)
        rank = self.rank
        self.filters = filters
        self.groups = groups
        self.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size")
        self.strides = normalize_tuple(strides, rank, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = normalize_padding(padding, allow_causal=rank == 1)
        self.data_format = normalize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        if filters is not None and filters <= 0:
            raise ValueError(
                "Invalid value for argument `filters`. "
                f"Expected a strictly positive value. Received filters={filters}."
            )
        if groups <= 0:
            raise ValueError(f"The number of groups must be a positive integer. Received: groups={groups}.")
        if filters is not None and filters % groups:
            raise ValueError(
                "The number of filters must be evenly divisible by the number of groups. "
                f"Received: groups={groups}, filters={filters}."
            )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )

    def _channels(self, input_shape):
        return input_shape[-1] if self.data_format == "channels_last" else input_shape[1]

    def build(self, input_shape):
        channels = self._channels(input_shape)
        if channels % self.groups:
            raise ValueError(
                "The number of input channels must be evenly divisible by the number of groups. "
                f"Received groups={self.groups}, but the input has {channels} channels "
                f"(full input shape is {input_shape})."
            )
        self._check_output_shape(input_shape)
        self.input_spec = channel_spec(self.rank, self.data_format, channels)
        self.kernel = self.add_weight(
            shape=self.kernel_size + (channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            name="kernel",
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                name="bias",
            )

    def _check_output_shape(self, input_shape):
        shape = self.compute_output_shape(input_shape)
        spatial = shape[1:-1] if self.data_format == "channels_last" else shape[2:]
        if any(d is not None and d <= 0 for d in spatial):
            raise ValueError(
                f"Computed output size would be zero or negative. Received inputs shape={input_shape}, "
                f"kernel_size={self.kernel_size}, dilation_rate={self.dilation_rate}, strides={self.strides}, "
                f"padding={self.padding}."
            )

    def _torch_kernel(self):
        """Keras (k..., in, out) -> torch (out, in, k...)."""
        rank = self.rank
        return self.kernel.permute(rank + 1, rank, *range(rank))

    def call(self, inputs):
        x = to_channels_first(inputs, self.data_format)
        padding = 0
        if self.padding == "same":
            x, padding = pad_same(x, self.kernel_size, self.strides, self.dilation_rate)
        elif self.padding == "causal":
            x = F.pad(x, ((self.kernel_size[0] - 1) * self.dilation_rate[0], 0))
        outputs = _CONV[self.rank](
            x, self._torch_kernel(), self.bias, self.strides, padding, self.dilation_rate, self.groups
        )
        outputs = from_channels_first(outputs, self.data_format)
        return outputs if self.activation is activations.linear else self.activation(outputs)

    def compute_output_shape(self, input_shape):
        spatial = input_shape[1:-1] if self.data_format == "channels_last" else input_shape[2:]
        sizes = tuple(
            output_length(n, k, s, self.padding, d)
            for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)
        )
        if self.data_format == "channels_last":
            return (input_shape[0],) + sizes + (self.filters,)
        return (input_shape[0], self.filters) + sizes

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "groups": self.groups,
                "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                **weight_settings(self, ("kernel", "bias"), activity=True),
            }
        )
        return config


@keras_export("keras.layers", name="Convolution1D")
@keras_export("keras.layers")
class Conv1D(_Conv):
    """1D convolution over (batch, steps, channels); `padding="causal"` pads only the past.

    >>> Conv1D(8, 3, padding="causal")(np.zeros((2, 10, 4), "float32")).shape
    torch.Size([2, 10, 8])
    """

    rank = 1


@keras_export("keras.layers", name="Convolution2D")
@keras_export("keras.layers")
class Conv2D(_Conv):
    """2D convolution over (batch, height, width, channels) images.

    >>> Conv2D(8, 3, padding="same", strides=2)(np.zeros((2, 9, 9, 3), "float32")).shape
    torch.Size([2, 5, 5, 8])
    """

    rank = 2


@keras_export("keras.layers", name="Convolution3D")
@keras_export("keras.layers")
class Conv3D(_Conv):
    """3D convolution over (batch, depth, height, width, channels) volumes.

    >>> Conv3D(8, 3, padding="same")(np.zeros((1, 4, 6, 6, 2), "float32")).shape
    torch.Size([1, 4, 6, 6, 8])
    """

    rank = 3

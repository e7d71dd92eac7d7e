"""Convolution layers: Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D.

Weights keep Keras's layout (`(kh, kw, in, out)`); each call views them in torch's layout and runs
one `torch.nn.functional` convolution. channels_last inputs are viewed as NCHW with a permute
(no copy), so torch sees a channels_last-strided tensor and returns one.
"""

import torch.nn.functional as F

from keramic import activations, constraints, initializers, regularizers
from keramic.layers.base import Layer, weight_settings
from keramic.serialization.registry import keras_export

_CONV = {1: F.conv1d, 2: F.conv2d}



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
    value = "channels_last" if value is None else str(value).lower()
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


class _Conv(Layer):
    """Shared constructor, build and call of the Conv{1,2}D layers."""

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
        lora_rank=None,
        lora_alpha=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if lora_rank is not None:
            raise NotImplementedError("keramic's convolution layers do not support LoRA yet.")
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


def _transpose_output_length(length, kernel, stride, padding, output_padding, dilation):
    """Keras's output size of a transposed convolution (TF's rule)."""
    if length is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(effective, stride) - effective if output_padding is None else output_padding
        return (length - 1) * stride + effective + extra
    if output_padding is None:
        return length * stride
    return (length - 1) * stride + effective % 2 + output_padding


@keras_export("keras.layers", name="Convolution2DTranspose")
@keras_export("keras.layers")
class Conv2DTranspose(Layer):
    """Transposed 2D convolution (the gradient of Conv2D): upsamples by `strides`.

    >>> Conv2DTranspose(4, 3, strides=2, padding="same")(np.zeros((1, 5, 5, 2), "float32")).shape
    torch.Size([1, 10, 10, 4])
    """

    rank = 2

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=(1, 1),
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
        rank = self.rank
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size")
        self.strides = normalize_tuple(strides, rank, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = normalize_padding(padding)
        self.output_padding = (
            None if output_padding is None else normalize_tuple(output_padding, rank, "output_padding", allow_zero=True)
        )
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
        if self.output_padding is not None:
            for i, (extra, stride) in enumerate(zip(self.output_padding, self.strides)):
                if extra >= stride:
                    raise ValueError(
                        f"`output_padding` must be strictly less than `strides` for all dimensions. At dimension {i}, "
                        f"`output_padding` is {extra} but `strides` is {stride}. Received: "
                        f"output_padding={self.output_padding}, strides={self.strides}"
                    )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )

    def build(self, input_shape):
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        self.kernel = self.add_weight(
            shape=self.kernel_size + (self.filters, channels),
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

    def _crops(self, spatial):
        """Per axis, how much of torch's full output (length (n-1)*s + k_eff) to cut before and after.

        The cut before is what the forward "same"/"valid" conv would pad before; a negative cut
        after means zeros to append (output_padding beyond the full output).
        """
        crops = []
        for i, n in enumerate(spatial):
            k, s, d = self.kernel_size[i], self.strides[i], self.dilation_rate[i]
            extra = None if self.output_padding is None else self.output_padding[i]
            full = (n - 1) * s + (k - 1) * d + 1
            size = _transpose_output_length(n, k, s, self.padding, extra, d)
            before = max(full - size, 0) // 2
            crops.append((before, full - size - before))
        return crops

    def call(self, inputs):
        x = to_channels_first(inputs, self.data_format)
        crops = self._crops(x.shape[2:])
        kernel = self.kernel.permute(self.rank + 1, self.rank, *range(self.rank))
        # torch cuts `padding` from both ends, then gives back `output_padding` at the end. An axis
        # where "same" cuts one more after than before is cut here instead (its cut after is > 0).
        padding, extra, window = [], [], [slice(None), slice(None)]
        for (before, after), s, d in zip(crops, self.strides, self.dilation_rate):
            if 0 <= before - after < max(s, d):
                padding.append(before)
                extra.append(before - after)
                window.append(slice(None))
            else:
                padding.append(0)
                extra.append(0)
                window.append(slice(before, -after))
        outputs = F.conv_transpose2d(
            x, kernel, self.bias, self.strides, tuple(padding), tuple(extra), 1, self.dilation_rate
        )
        outputs = outputs[tuple(window)]
        outputs = from_channels_first(outputs, self.data_format)
        return outputs if self.activation is activations.linear else self.activation(outputs)

    def compute_output_shape(self, input_shape):
        spatial = input_shape[1:-1] if self.data_format == "channels_last" else input_shape[2:]
        sizes = tuple(
            _transpose_output_length(
                n,
                self.kernel_size[i],
                self.strides[i],
                self.padding,
                None if self.output_padding is None else self.output_padding[i],
                self.dilation_rate[i],
            )
            for i, n in enumerate(spatial)
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
                "output_padding": self.output_padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                **weight_settings(self, ("kernel", "bias"), activity=True),
            }
        )
        return config


class _DepthwiseBase(Layer):
    """Constructor arguments shared by DepthwiseConv2D and SeparableConv2D."""

    rank = 2

    def __init__(
        self,
        kernel_size,
        strides,
        padding,
        data_format,
        dilation_rate,
        depth_multiplier,
        activation,
        use_bias,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.depth_multiplier = depth_multiplier
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size")
        self.strides = normalize_tuple(strides, self.rank, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate")
        self.padding = normalize_padding(padding)
        self.data_format = normalize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        if depth_multiplier is not None and depth_multiplier <= 0:
            raise ValueError(
                "Invalid value for argument `depth_multiplier`. Expected a strictly positive value. "
                f"Received depth_multiplier={depth_multiplier}."
            )

    def _channels(self, input_shape):
        return input_shape[-1] if self.data_format == "channels_last" else input_shape[1]

    def _depthwise(self, x, depthwise_kernel, bias):
        """Grouped conv with one group per input channel on an NC... tensor.

        Keras (k..., in, m) becomes torch (in*m, 1, k...): output channel c*m + j reads input c.
        """
        channels = depthwise_kernel.shape[-2]
        weight = depthwise_kernel.reshape(self.kernel_size + (1, -1))
        weight = weight.permute(self.rank + 1, self.rank, *range(self.rank))
        padding = 0
        if self.padding == "same":
            x, padding = pad_same(x, self.kernel_size, self.strides, self.dilation_rate)
        return _CONV[self.rank](x, weight, bias, self.strides, padding, self.dilation_rate, channels)

    def _output_shape(self, input_shape, channels):
        spatial = input_shape[1:-1] if self.data_format == "channels_last" else input_shape[2:]
        sizes = tuple(
            output_length(n, k, s, self.padding, d)
            for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)
        )
        if self.data_format == "channels_last":
            return (input_shape[0],) + sizes + (channels,)
        return (input_shape[0], channels) + sizes

    def _activate(self, outputs):
        outputs = from_channels_first(outputs, self.data_format)
        return outputs if self.activation is activations.linear else self.activation(outputs)

    def _base_config(self):
        return {
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }


@keras_export("keras.layers")
class DepthwiseConv2D(_DepthwiseBase):
    """Convolves each input channel with its own `depth_multiplier` filters.

    >>> DepthwiseConv2D(3, depth_multiplier=2)(np.zeros((1, 8, 8, 4), "float32")).shape
    torch.Size([1, 6, 6, 8])
    """

    def __init__(
        self,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            depth_multiplier,
            activation,
            use_bias,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        channels = self._channels(input_shape)
        self.kernel = self.add_weight(
            shape=self.kernel_size + (channels, self.depth_multiplier),
            initializer=self.depthwise_initializer,
            regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint,
            name="kernel",
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(channels * self.depth_multiplier,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                name="bias",
            )

    def call(self, inputs):
        x = to_channels_first(inputs, self.data_format)
        return self._activate(self._depthwise(x, self.kernel, self.bias))

    def compute_output_shape(self, input_shape):
        channels = self._channels(input_shape)
        return self._output_shape(input_shape, None if channels is None else channels * self.depth_multiplier)

    def get_config(self):
        config = super().get_config()
        config["depth_multiplier"] = self.depth_multiplier
        config.update(self._base_config())
        config.update(
            {
                **weight_settings(self, ("depthwise", "bias"), activity=True),
            }
        )
        return config


@keras_export("keras.layers", name="SeparableConvolution2D")
@keras_export("keras.layers")
class SeparableConv2D(_DepthwiseBase):
    """A depthwise convolution followed by a 1x1 convolution that mixes channels.

    >>> SeparableConv2D(8, 3, padding="same")(np.zeros((1, 8, 8, 4), "float32")).shape
    torch.Size([1, 8, 8, 8])
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        depth_multiplier=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        pointwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            depth_multiplier,
            activation,
            use_bias,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.filters = filters
        if filters is not None and filters <= 0:
            raise ValueError(
                "Invalid value for argument `filters`. "
                f"Expected a strictly positive value. Received filters={filters}."
            )
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.pointwise_constraint = constraints.get(pointwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        channels = self._channels(input_shape)
        self.depthwise_kernel = self.add_weight(
            shape=self.kernel_size + (channels, self.depth_multiplier),
            initializer=self.depthwise_initializer,
            regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint,
            name="depthwise_kernel",
        )
        self.pointwise_kernel = self.add_weight(
            shape=(1,) * self.rank + (channels * self.depth_multiplier, self.filters),
            initializer=self.pointwise_initializer,
            regularizer=self.pointwise_regularizer,
            constraint=self.pointwise_constraint,
            name="pointwise_kernel",
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

    def call(self, inputs):
        x = self._depthwise(to_channels_first(inputs, self.data_format), self.depthwise_kernel, None)
        pointwise = self.pointwise_kernel.permute(self.rank + 1, self.rank, *range(self.rank))
        return self._activate(_CONV[self.rank](x, pointwise, self.bias))

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"depth_multiplier": self.depth_multiplier, "filters": self.filters})
        config.update(self._base_config())
        config.update(
            {
                **weight_settings(self, ("depthwise", "pointwise", "bias"), activity=True),
            }
        )
        return config

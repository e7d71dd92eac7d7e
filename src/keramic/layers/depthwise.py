"""Depthwise and separable convolutions, 1D and 2D: one filter set per input channel.

A depthwise convolution is torch's grouped convolution with one group per input channel; a
separable one follows it with a 1x1 convolution that mixes channels.
"""

import torch.nn.functional as F

from keramic import activations, constraints, initializers, regularizers
from keramic.layers.base import Layer, weight_settings
from keramic.layers.conv import (
    channel_spec,
    from_channels_first,
    normalize_data_format,
    normalize_padding,
    normalize_tuple,
    output_length,
    pad_same,
    to_channels_first,
)
from keramic.layers.input_spec import InputSpec
from keramic.serialization.registry import keras_export

_CONV = {1: F.conv1d, 2: F.conv2d}


class _DepthwiseBase(Layer):
    """Constructor arguments shared by the DepthwiseConv and SeparableConv layers."""

    rank = None

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
        self.input_spec = InputSpec(min_ndim=self.rank + 2)
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


class _DepthwiseConv(_DepthwiseBase):
    """Convolves each input channel with its own `depth_multiplier` filters."""

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=1,
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
        self.input_spec = channel_spec(self.rank, self.data_format, channels)
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


class _SeparableConv(_DepthwiseBase):
    """A depthwise convolution followed by a 1x1 convolution that mixes channels."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
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
        self.input_spec = channel_spec(self.rank, self.data_format, channels)
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


@keras_export("keras.layers")
class DepthwiseConv1D(_DepthwiseConv):
    """Depthwise 1D convolution over (batch, steps, channels).

    >>> DepthwiseConv1D(3, depth_multiplier=2)(np.zeros((1, 8, 4), "float32")).shape
    torch.Size([1, 6, 8])
    """

    rank = 1


@keras_export("keras.layers")
class DepthwiseConv2D(_DepthwiseConv):
    """Depthwise 2D convolution over (batch, height, width, channels) images.

    >>> DepthwiseConv2D(3, depth_multiplier=2)(np.zeros((1, 8, 8, 4), "float32")).shape
    torch.Size([1, 6, 6, 8])
    """

    rank = 2


@keras_export("keras.layers", name="SeparableConvolution1D")
@keras_export("keras.layers")
class SeparableConv1D(_SeparableConv):
    """Separable 1D convolution over (batch, steps, channels).

    >>> SeparableConv1D(8, 3, padding="same")(np.zeros((1, 8, 4), "float32")).shape
    torch.Size([1, 8, 8])
    """

    rank = 1


@keras_export("keras.layers", name="SeparableConvolution2D")
@keras_export("keras.layers")
class SeparableConv2D(_SeparableConv):
    """Separable 2D convolution over (batch, height, width, channels) images.

    >>> SeparableConv2D(8, 3, padding="same")(np.zeros((1, 8, 8, 4), "float32")).shape
    torch.Size([1, 8, 8, 8])
    """

    rank = 2

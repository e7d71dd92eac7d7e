"""Depthwise and separable convolutions, 1D and 2D: one filter set per input channel.

A depthwise convolution is torch's grouped convolution with one group per input channel; a
separable one follows it with a 1x1 convolution that mixes channels.
"""

import torch.nn.functional as F

from keramic import activations
from keramic.layers.base import Layer, weight_settings
from keramic.layers.conv import (
    activate,
    add_bias,
    add_configured_weight,
    add_late_bias,
    attribute_config,
    channel_count,
    channel_spec,
    check_filters,
    conv_input,
    pad_same,
    set_weight_setting,
    set_window,
    torch_kernel,
    window_output_shape,
)
from keramic.layers.input_spec import InputSpec
from keramic.serialization.registry import keras_export

_CONV = {1: F.conv1d, 2: F.conv2d}


class _DepthwiseBase(Layer):
    """Constructor arguments shared by the DepthwiseConv and SeparableConv layers."""

    rank: int | None = None

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
        set_window(self, self.rank, kernel_size, strides, padding, data_format, dilation_rate)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        if depth_multiplier is not None and depth_multiplier <= 0:
            raise ValueError(
                "Invalid value for argument `depth_multiplier`. Expected a strictly positive value. "
                f"Received depth_multiplier={depth_multiplier}."
            )

    def _depthwise(self, x, depthwise_kernel, bias):
        """Grouped conv with one group per input channel on an NC... tensor.

        Keras (k..., in, m) becomes torch (in*m, 1, k...): output channel c*m + j reads input c.
        """
        channels = depthwise_kernel.shape[-2]
        weight = torch_kernel(depthwise_kernel.reshape(self.kernel_size + (1, -1)), self.rank)
        padding = 0
        if self.padding == "same":
            x, padding = pad_same(x, self.kernel_size, self.strides, self.dilation_rate)
        outputs = _CONV[self.rank](x, weight, None, self.strides, padding, self.dilation_rate, channels)
        return add_late_bias(outputs, bias)

    def _base_config(self):
        return attribute_config(self, ("kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation", "use_bias"))


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
        set_weight_setting(self, "depthwise", depthwise_initializer, depthwise_regularizer, depthwise_constraint)
        set_weight_setting(self, "bias", bias_initializer, bias_regularizer, bias_constraint)

    def build(self, input_shape):
        channels = channel_count(input_shape, self.data_format)
        self.input_spec = channel_spec(self.rank, self.data_format, channels)
        self.kernel = add_configured_weight(self, "depthwise", self.kernel_size + (channels, self.depth_multiplier), "kernel")
        self.bias = add_bias(self, channels * self.depth_multiplier)

    def call(self, inputs):
        x = conv_input(inputs, self.data_format)
        return activate(self, self._depthwise(x, self.kernel, self.bias))

    def compute_output_shape(self, input_shape):
        channels = channel_count(input_shape, self.data_format)
        return window_output_shape(self, input_shape, None if channels is None else channels * self.depth_multiplier)

    def get_config(self):
        config = super().get_config()
        config["depth_multiplier"] = self.depth_multiplier
        config.update(self._base_config())
        config.update(weight_settings(self, ("depthwise", "bias"), activity=True))
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
        check_filters(filters)
        set_weight_setting(self, "depthwise", depthwise_initializer, depthwise_regularizer, depthwise_constraint)
        set_weight_setting(self, "pointwise", pointwise_initializer, pointwise_regularizer, pointwise_constraint)
        set_weight_setting(self, "bias", bias_initializer, bias_regularizer, bias_constraint)

    def build(self, input_shape):
        channels = channel_count(input_shape, self.data_format)
        self.input_spec = channel_spec(self.rank, self.data_format, channels)
        depthwise_shape = self.kernel_size + (channels, self.depth_multiplier)
        self.depthwise_kernel = add_configured_weight(self, "depthwise", depthwise_shape, "depthwise_kernel")
        pointwise_shape = (1,) * self.rank + (channels * self.depth_multiplier, self.filters)
        self.pointwise_kernel = add_configured_weight(self, "pointwise", pointwise_shape, "pointwise_kernel")
        self.bias = add_bias(self, self.filters)

    def call(self, inputs):
        x = self._depthwise(conv_input(inputs, self.data_format), self.depthwise_kernel, None)
        outputs = _CONV[self.rank](x, torch_kernel(self.pointwise_kernel, self.rank))
        return activate(self, add_late_bias(outputs, self.bias))

    def compute_output_shape(self, input_shape):
        return window_output_shape(self, input_shape, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"depth_multiplier": self.depth_multiplier, "filters": self.filters})
        config.update(self._base_config())
        config.update(weight_settings(self, ("depthwise", "pointwise", "bias"), activity=True))
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

"""Transposed convolutions Conv1DTranspose/2D/3D: the gradient of a convolution, used to upsample.

Output sizes follow Keras (TF's rule); torch's full transposed output is sliced to that size (zeros
appended where `output_padding` reaches past it), as Keras's torch backend does, for its roundings.
"""

import torch.nn.functional as F

from keramic import activations
from keramic.layers.base import Layer, weight_settings
from keramic.layers.conv import (
    add_bias,
    add_configured_weight,
    attribute_config,
    channel_count,
    channel_spec,
    check_filters,
    check_strides_and_dilation,
    from_channels_first,
    full_shape,
    normalize_tuple,
    set_weight_setting,
    set_window,
    spatial_dims,
    to_channels_first,
    torch_kernel,
)
from keramic.layers.input_spec import InputSpec
from keramic.serialization.registry import keras_export

_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


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


class _ConvTranspose(Layer):
    """Shared constructor, build and call of the Conv{1,2,3}DTranspose layers."""

    rank: int | None = None

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=1,
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
        self.filters = filters
        set_window(self, self.rank, kernel_size, strides, padding, data_format, dilation_rate)
        self.output_padding = (
            None if output_padding is None else normalize_tuple(output_padding, self.rank, "output_padding", allow_zero=True)
        )
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        set_weight_setting(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        set_weight_setting(self, "bias", bias_initializer, bias_regularizer, bias_constraint)
        check_filters(filters)
        if self.output_padding is not None:
            for i, (extra, stride) in enumerate(zip(self.output_padding, self.strides)):
                if extra >= stride:
                    raise ValueError(
                        f"`output_padding` must be strictly less than `strides` for all dimensions. At dimension {i}, "
                        f"`output_padding` is {extra} but `strides` is {stride}. Received: "
                        f"output_padding={self.output_padding}, strides={self.strides}"
                    )
        check_strides_and_dilation(self.strides, self.dilation_rate)

    def build(self, input_shape):
        channels = channel_count(input_shape, self.data_format)
        self.input_spec = channel_spec(self.rank, self.data_format, channels)
        self.kernel = add_configured_weight(self, "kernel", self.kernel_size + (self.filters, channels), "kernel")
        self.bias = add_bias(self, self.filters)

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
        # As Keras's torch backend (whose roundings and output strides this keeps): a contiguous
        # NC... copy of the input, torch's full transposed output (no `padding`/`output_padding`),
        # the cut (zeros appended past the full output), then the bias.
        x = to_channels_first(inputs, self.data_format).contiguous()
        crops = self._crops(x.shape[2:])
        window = [slice(None), slice(None)] + [slice(before, -after if after > 0 else None) for before, after in crops]
        outputs = _CONV_TRANSPOSE[self.rank](
            x, torch_kernel(self.kernel, self.rank), None, self.strides, 0, 0, 1, self.dilation_rate
        )[tuple(window)]
        appended = [pad for _, after in reversed(crops) for pad in (0, max(-after, 0))]
        if any(appended):
            outputs = F.pad(outputs, appended)
        outputs = from_channels_first(outputs, self.data_format)
        if self.bias is not None:
            outputs = outputs + self.bias.reshape((-1,) + (1,) * self.rank if self.data_format == "channels_first" else (-1,))
        return outputs if self.activation in (None, activations.linear) else self.activation(outputs)

    def compute_output_shape(self, input_shape):
        spatial = spatial_dims(input_shape, self.data_format)
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
        return full_shape(input_shape[0], sizes, self.filters, self.data_format)

    def get_config(self):
        config = super().get_config()
        keys = ("filters", "kernel_size", "strides", "padding", "output_padding", "data_format", "dilation_rate", "activation", "use_bias")
        config.update(attribute_config(self, keys))
        config.update(weight_settings(self, ("kernel", "bias"), activity=True))
        return config


@keras_export("keras.layers", name="Convolution1DTranspose")
@keras_export("keras.layers")
class Conv1DTranspose(_ConvTranspose):
    """Transposed 1D convolution over (batch, steps, channels): upsamples steps by `strides`.

    >>> Conv1DTranspose(4, 3, strides=2, padding="same")(np.zeros((1, 5, 2), "float32")).shape
    torch.Size([1, 10, 4])
    """

    rank = 1


@keras_export("keras.layers", name="Convolution2DTranspose")
@keras_export("keras.layers")
class Conv2DTranspose(_ConvTranspose):
    """Transposed 2D convolution (the gradient of Conv2D): upsamples images by `strides`.

    >>> Conv2DTranspose(4, 3, strides=2, padding="same")(np.zeros((1, 5, 5, 2), "float32")).shape
    torch.Size([1, 10, 10, 4])
    """

    rank = 2


@keras_export("keras.layers", name="Convolution3DTranspose")
@keras_export("keras.layers")
class Conv3DTranspose(_ConvTranspose):
    """Transposed 3D convolution over (batch, depth, height, width, channels) volumes.

    >>> Conv3DTranspose(4, 3, strides=2, padding="same")(np.zeros((1, 2, 3, 3, 2), "float32")).shape
    torch.Size([1, 4, 6, 6, 4])
    """

    rank = 3

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,  # Keras takes `data_format` before `output_padding` here (only in 3D)
        output_padding=None,
        dilation_rate=1,
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
        super().__init__(
            filters,
            kernel_size,
            strides,
            padding,
            output_padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            activity_regularizer,
            kernel_constraint,
            bias_constraint,
            **kwargs,
        )

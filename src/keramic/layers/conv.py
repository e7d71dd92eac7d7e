"""Convolution layers Conv1D/2D/3D, and the helpers every spatial layer shares: shapes and padding,
and (for the convolution family) argument checks, weight settings, weights and config entries.

Weights keep Keras's layout (`(k..., in, out)`); each call views them in torch's layout and runs
one `torch.nn.functional` convolution. channels_last inputs are viewed as NCHW with a permute, in
torch's channels_last memory format as Keras hands them (a copy only for an input laid out
otherwise), so torch returns a channels_last-strided tensor, as in Keras.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from keramic import activations, backend, constraints, initializers, regularizers
from keramic.layers import lora
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


def conv_input(x: torch.Tensor, data_format: str) -> torch.Tensor:
    """The NC... tensor Keras's torch backend hands a convolution: a channels_last input in torch's
    channels_last memory format (2D/3D windows; a copy only when it is laid out otherwise, as after
    a pooling layer), a 1D one contiguous. The layout fixes the output's strides, and an unseeded
    Dropout's mask follows those strides, so it must be Keras's."""
    if data_format != "channels_last":
        return x
    x = x.movedim(-1, 1)
    if x.dim() in (4, 5):
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    return x.contiguous()


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


def spatial_dims(shape: Sequence, data_format: str) -> tuple:
    """The spatial part of a full shape: what a window slides over."""
    return tuple(shape[1:-1]) if data_format == "channels_last" else tuple(shape[2:])


def channel_count(shape: Sequence, data_format: str) -> int | None:
    """The size of the channel axis of a full shape."""
    return shape[-1] if data_format == "channels_last" else shape[1]


def full_shape(batch: int | None, spatial: Sequence, channels: int | None, data_format: str) -> tuple:
    """A full shape from its parts, the channel axis where `data_format` puts it."""
    if data_format == "channels_last":
        return (batch, *spatial, channels)
    return (batch, channels, *spatial)


def window_output_sizes(layer: Layer, spatial: Sequence) -> tuple:
    """Output spatial sizes of a layer's kernel_size/strides/padding/dilation_rate window."""
    return tuple(
        output_length(n, k, s, layer.padding, d)
        for n, k, s, d in zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)
    )


def window_output_shape(layer: Layer, input_shape: Sequence, channels: int | None) -> tuple:
    """Output shape of a convolution-like layer with `channels` output channels."""
    sizes = window_output_sizes(layer, spatial_dims(input_shape, layer.data_format))
    return full_shape(input_shape[0], sizes, channels, layer.data_format)


def torch_kernel(kernel: torch.Tensor, rank: int) -> torch.Tensor:
    """Keras kernel layout (k..., in, out) -> torch's (out, in, k...), as a view."""
    return kernel.permute(rank + 1, rank, *range(rank))


def set_window(
    layer: Layer, rank: int, kernel_size, strides, padding: str, data_format: str | None, dilation_rate, allow_causal: bool = False
) -> None:
    """Validate and store the window arguments every convolution layer takes."""
    layer.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size")
    layer.strides = normalize_tuple(strides, rank, "strides")
    layer.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate")
    layer.padding = normalize_padding(padding, allow_causal=allow_causal)
    layer.data_format = normalize_data_format(data_format)


def check_filters(filters: int | None) -> None:
    """Keras refuses zero or negative `filters` (None passes)."""
    if filters is not None and filters <= 0:
        raise ValueError(
            "Invalid value for argument `filters`. "
            f"Expected a strictly positive value. Received filters={filters}."
        )


def check_strides_and_dilation(strides: tuple, dilation_rate: tuple) -> None:
    """Keras refuses a strided window that is also dilated."""
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError(
            "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            f"Received: strides={strides} and dilation_rate={dilation_rate}"
        )


def set_weight_setting(layer: Layer, weight: str, initializer, regularizer, constraint) -> None:
    """Store `<weight>_initializer`, `_regularizer` and `_constraint`, resolved from their identifiers."""
    setattr(layer, f"{weight}_initializer", initializers.get(initializer))
    setattr(layer, f"{weight}_regularizer", regularizers.get(regularizer))
    setattr(layer, f"{weight}_constraint", constraints.get(constraint))


def add_configured_weight(layer: Layer, weight: str, shape: tuple, name: str, initializer=None):
    """A weight made with the layer's `<weight>_*` settings (`initializer` overrides the stored one)."""
    return layer.add_weight(
        shape=shape,
        initializer=getattr(layer, f"{weight}_initializer") if initializer is None else initializer,
        regularizer=getattr(layer, f"{weight}_regularizer"),
        constraint=getattr(layer, f"{weight}_constraint"),
        name=name,
    )


def add_bias(layer: Layer, size: int, initializer=None):
    """The layer's "bias" weight of `size` values, or None when `use_bias` is off."""
    if not layer.use_bias:
        return None
    return add_configured_weight(layer, "bias", (size,), "bias", initializer)


def attribute_config(layer: Layer, keys: Sequence[str]) -> dict:
    """Config entries read from the layer's attributes of the same names; activations serialized."""
    return {key: activations.serialize(getattr(layer, key)) if key.endswith("activation") else getattr(layer, key) for key in keys}


def add_late_bias(outputs: torch.Tensor, bias) -> torch.Tensor:
    """NC... `outputs` plus the bias, added after the convolution as Keras does (never fused into
    torch's kernel): the output's rounding and the bias gradient (autograd's sum) are then Keras's."""
    if bias is None:
        return outputs
    return outputs + bias.reshape((-1,) + (1,) * (outputs.dim() - 2))


def activate(layer: Layer, outputs: torch.Tensor) -> torch.Tensor:
    """Back from NC... to the layer's data format, then its activation."""
    outputs = from_channels_first(outputs, layer.data_format)
    return outputs if layer.activation is None or layer.activation is activations.linear else layer.activation(outputs)


class _Conv(lora.LoraLayer, Layer):
    """Shared constructor, build and call of the Conv{1,2,3}D layers (LoRA-capable, as in Keras 3.15)."""

    rank: int | None = None
    _saved_variable_names = ("kernel", "bias")  # as Keras's BaseConv: a subclass's extra variables are not saved
    _lora_base_name = "kernel"
    kernel = lora.LoraWeight("kernel")  # with LoRA enabled: the base kernel plus the low-rank update

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
        # As Keras's signature: LoRA's arguments arrive among the keyword arguments.
        lora_rank, lora_alpha = kwargs.pop("lora_rank", None), kwargs.pop("lora_alpha", None)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.input_spec = InputSpec(min_ndim=self.rank + 2)
        lora.init(self, lora_rank, lora_alpha)
        self.filters = filters
        self.groups = groups
        set_window(self, self.rank, kernel_size, strides, padding, data_format, dilation_rate, allow_causal=self.rank == 1)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        set_weight_setting(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        set_weight_setting(self, "bias", bias_initializer, bias_regularizer, bias_constraint)
        check_filters(filters)
        if groups <= 0:
            raise ValueError(f"The number of groups must be a positive integer. Received: groups={groups}.")
        if filters is not None and filters % groups:
            raise ValueError(
                "The number of filters must be evenly divisible by the number of groups. "
                f"Received: groups={groups}, filters={filters}."
            )
        check_strides_and_dilation(self.strides, self.dilation_rate)

    def build(self, input_shape):
        channels = channel_count(input_shape, self.data_format)
        if channels % self.groups:
            raise ValueError(
                "The number of input channels must be evenly divisible by the number of groups. "
                f"Received groups={self.groups}, but the input has {channels} channels "
                f"(full input shape is {input_shape})."
            )
        self._check_output_shape(input_shape)
        self.input_spec = channel_spec(self.rank, self.data_format, channels)
        self._lora_base_shape = self.kernel_size + (channels // self.groups, self.filters)
        self.kernel = add_configured_weight(self, "kernel", self._lora_base_shape, "kernel")
        self.bias = add_bias(self, self.filters)
        if self.lora_rank:  # as Keras 3.15: `lora_alpha` given to the constructor is reset to the rank here
            self.built = True
            self.enable_lora(self.lora_rank)

    def _check_output_shape(self, input_shape):
        spatial = spatial_dims(self.compute_output_shape(input_shape), self.data_format)
        if any(d is not None and d <= 0 for d in spatial):
            raise ValueError(
                f"Computed output size would be zero or negative. Received inputs shape={input_shape}, "
                f"kernel_size={self.kernel_size}, dilation_rate={self.dilation_rate}, strides={self.strides}, "
                f"padding={self.padding}."
            )

    def _convolve(self, inputs, kernel, bias):
        x = conv_input(inputs, self.data_format)
        padding = 0
        if self.padding == "same":
            x, padding = pad_same(x, self.kernel_size, self.strides, self.dilation_rate)
        elif self.padding == "causal":
            x = F.pad(x, ((self.kernel_size[0] - 1) * self.dilation_rate[0], 0))
        outputs = _CONV[self.rank](x, torch_kernel(kernel, self.rank), None, self.strides, padding, self.dilation_rate, self.groups)
        return add_late_bias(outputs, bias)

    def convolution_op(self, inputs, kernel):
        """The bare convolution (no bias, no activation), in the layer's data format.

        Subclasses override it to transform the kernel (Keras's `Conv.convolution_op` API).
        """
        inputs, kernel = (x if isinstance(x, torch.Tensor) else backend.convert_to_tensor(x) for x in (inputs, kernel))
        return from_channels_first(self._convolve(inputs, kernel, None), self.data_format)

    def call(self, inputs):
        if type(self).convolution_op is _Conv.convolution_op:
            return activate(self, self._convolve(inputs, self.kernel, self.bias))
        outputs = self.convolution_op(inputs, self.kernel)
        if self.use_bias:
            channel_axis = -1 if self.data_format == "channels_last" else 1
            outputs = outputs + self.bias.reshape([-1 if axis == channel_axis % outputs.ndim else 1 for axis in range(outputs.ndim)])
        return outputs if self.activation is None or self.activation is activations.linear else self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return window_output_shape(self, input_shape, self.filters)

    def get_config(self):
        config = super().get_config()
        keys = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups", "activation", "use_bias")
        config.update(attribute_config(self, keys))
        config.update(weight_settings(self, ("kernel", "bias"), activity=True))
        config.update(lora.config(self))
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

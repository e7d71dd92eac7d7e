"""Pooling layers, 1D/2D/3D: Max/Average pooling over windows, and global pooling over all positions.

"same" padding centres windows with any extra padding after. Padded positions never win a max;
an average leaves them out of its count when the padding is even, and, as real Keras does on the
torch backend, counts repeated edge values when it is not.
"""

import torch
import torch.nn.functional as F

from keramic.layers.base import Layer
from keramic.layers.conv import (
    from_channels_first,
    normalize_data_format,
    normalize_tuple,
    output_length,
    same_padding,
    to_channels_first,
)
from keramic.layers.input_spec import InputSpec
from keramic.serialization.registry import keras_export

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class _Pooling(Layer):
    """Window pooling shared by the 1D/2D/3D, max and average layers."""

    rank: int | None = None
    mode: str | None = None

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size")
        self.strides = normalize_tuple(pool_size if strides is None else strides, self.rank, "strides", allow_zero=True)
        self.padding = padding
        self.data_format = normalize_data_format(data_format)
        self._padding = str(padding).lower()
        if self._padding not in ("valid", "same"):
            raise ValueError(f"The `padding` argument must be one of {{'valid', 'same'}}. Received: {padding}")

    def call(self, inputs):
        # A contiguous copy, as Keras's torch backend pools: the output's memory layout (which an
        # unseeded dropout's mask follows) is then Keras's.
        x = to_channels_first(inputs, self.data_format).contiguous()
        if self.mode == "max":
            outputs = self._max_pool(x)
        else:
            outputs = self._average_pool(x)
        return from_channels_first(outputs, self.data_format)

    def _pads(self, x):
        return [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], self.pool_size, self.strides)]

    def _max_pool(self, x):
        pool = _MAX_POOL[self.rank]
        if self._padding == "valid":
            return pool(x, self.pool_size, self.strides)
        pads = self._pads(x)
        if all(before == after for before, after in pads):
            return pool(x, self.pool_size, self.strides, tuple(before for before, _ in pads))
        flat = [p for pair in reversed(pads) for p in pair]
        return pool(F.pad(x, flat, value=float("-inf")), self.pool_size, self.strides)

    def _average_pool(self, x):
        pool = _AVG_POOL[self.rank]
        if self._padding == "valid":
            return pool(x, self.pool_size, self.strides)
        pads = self._pads(x)
        if all(before == after for before, after in pads):
            return pool(x, self.pool_size, self.strides, tuple(b for b, _ in pads), count_include_pad=False)
        # Uneven padding: as Keras does on torch, repeat the edge values into the padding and
        # average whole windows (TF instead leaves the padding out of the count).
        flat = [p for pair in reversed(pads) for p in pair]
        return pool(F.pad(x, flat, mode="replicate"), self.pool_size, self.strides)

    def compute_output_shape(self, input_shape):
        spatial = input_shape[1:-1] if self.data_format == "channels_last" else input_shape[2:]
        sizes = tuple(output_length(n, k, s, self._padding) for n, k, s in zip(spatial, self.pool_size, self.strides))
        if self.data_format == "channels_last":
            return (input_shape[0],) + sizes + (input_shape[-1],)
        return (input_shape[0], input_shape[1]) + sizes

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pool_size": self.pool_size,
                "padding": self.padding,
                "strides": self.strides,
                "data_format": self.data_format,
            }
        )
        return config


@keras_export("keras.layers", name="MaxPool1D")
@keras_export("keras.layers")
class MaxPooling1D(_Pooling):
    """Max over windows of `pool_size` steps.

    >>> MaxPooling1D(2)(np.zeros((1, 6, 3), "float32")).shape
    torch.Size([1, 3, 3])
    """

    rank, mode = 1, "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


@keras_export("keras.layers", name="MaxPool2D")
@keras_export("keras.layers")
class MaxPooling2D(_Pooling):
    """Max over `pool_size` windows of an image.

    >>> MaxPooling2D()(np.zeros((1, 6, 6, 3), "float32")).shape
    torch.Size([1, 3, 3, 3])
    """

    rank, mode = 2, "max"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


@keras_export("keras.layers", name="AvgPool1D")
@keras_export("keras.layers")
class AveragePooling1D(_Pooling):
    """Mean over windows of `pool_size` steps.

    >>> AveragePooling1D(2)(np.zeros((1, 6, 3), "float32")).shape
    torch.Size([1, 3, 3])
    """

    rank, mode = 1, "average"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


@keras_export("keras.layers", name="AvgPool2D")
@keras_export("keras.layers")
class AveragePooling2D(_Pooling):
    """Mean over `pool_size` windows of an image.

    >>> AveragePooling2D(2)(np.zeros((1, 6, 6, 3), "float32")).shape
    torch.Size([1, 3, 3, 3])
    """

    rank, mode = 2, "average"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


@keras_export("keras.layers", name="MaxPool3D")
@keras_export("keras.layers")
class MaxPooling3D(_Pooling):
    """Max over `pool_size` windows of a volume.

    >>> MaxPooling3D()(np.zeros((1, 4, 4, 4, 3), "float32")).shape
    torch.Size([1, 2, 2, 2, 3])
    """

    rank, mode = 3, "max"

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


@keras_export("keras.layers", name="AvgPool3D")
@keras_export("keras.layers")
class AveragePooling3D(_Pooling):
    """Mean over `pool_size` windows of a volume.

    >>> AveragePooling3D(2)(np.zeros((1, 4, 4, 4, 3), "float32")).shape
    torch.Size([1, 2, 2, 2, 3])
    """

    rank, mode = 3, "average"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


class _GlobalPooling(Layer):
    """Reduce every spatial axis; `keepdims` keeps them with size 1."""

    rank: int | None = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        self.data_format = normalize_data_format(data_format)
        self.keepdims = keepdims

    def _axes(self, ndim):
        return tuple(range(1, ndim - 1)) if self.data_format == "channels_last" else tuple(range(2, ndim))

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_last":
            if self.keepdims:
                return (input_shape[0],) + (1,) * self.rank + (input_shape[-1],)
            return (input_shape[0], input_shape[-1])
        if self.keepdims:
            return (input_shape[0], input_shape[1]) + (1,) * self.rank
        return (input_shape[0], input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return config


@keras_export("keras.layers", name="GlobalAvgPool1D")
@keras_export("keras.layers")
class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over steps; masked steps (a (batch, steps) mask) are left out of the mean.

    >>> GlobalAveragePooling1D()(np.ones((2, 5, 3), "float32")).shape
    torch.Size([2, 3])
    """

    rank = 1

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format=data_format, keepdims=keepdims, **kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        steps = 1 if self.data_format == "channels_last" else 2
        if mask is None:
            return inputs.mean(dim=steps, keepdim=self.keepdims)
        weights = mask.to(torch.bool).unsqueeze(2 if self.data_format == "channels_last" else 1)
        total = torch.where(weights, inputs, 0).sum(dim=steps, keepdim=self.keepdims)
        return total / weights.to(inputs.dtype).sum(dim=steps, keepdim=self.keepdims)

    def compute_mask(self, inputs, previous_mask):
        return None


@keras_export("keras.layers", name="GlobalAvgPool2D")
@keras_export("keras.layers")
class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over height and width.

    >>> GlobalAveragePooling2D()(np.ones((2, 4, 4, 3), "float32")).shape
    torch.Size([2, 3])
    """

    rank = 2

    def call(self, inputs):
        return inputs.mean(dim=self._axes(inputs.dim()), keepdim=self.keepdims)


@keras_export("keras.layers", name="GlobalMaxPool1D")
@keras_export("keras.layers")
class GlobalMaxPooling1D(_GlobalPooling):
    """Max over steps.

    >>> GlobalMaxPooling1D()(np.ones((2, 5, 3), "float32")).shape
    torch.Size([2, 3])
    """

    rank = 1

    def call(self, inputs):
        return inputs.amax(dim=self._axes(inputs.dim()), keepdim=self.keepdims)


@keras_export("keras.layers", name="GlobalMaxPool2D")
@keras_export("keras.layers")
class GlobalMaxPooling2D(_GlobalPooling):
    """Max over height and width.

    >>> GlobalMaxPooling2D()(np.ones((2, 4, 4, 3), "float32")).shape
    torch.Size([2, 3])
    """

    rank = 2

    def call(self, inputs):
        return inputs.amax(dim=self._axes(inputs.dim()), keepdim=self.keepdims)


@keras_export("keras.layers", name="GlobalAvgPool3D")
@keras_export("keras.layers")
class GlobalAveragePooling3D(_GlobalPooling):
    """Mean over depth, height and width.

    >>> GlobalAveragePooling3D()(np.ones((2, 3, 4, 4, 3), "float32")).shape
    torch.Size([2, 3])
    """

    rank = 3

    def call(self, inputs):
        return inputs.mean(dim=self._axes(inputs.dim()), keepdim=self.keepdims)


@keras_export("keras.layers", name="GlobalMaxPool3D")
@keras_export("keras.layers")
class GlobalMaxPooling3D(_GlobalPooling):
    """Max over depth, height and width.

    >>> GlobalMaxPooling3D()(np.ones((2, 3, 4, 4, 3), "float32")).shape
    torch.Size([2, 3])
    """

    rank = 3

    def call(self, inputs):
        return inputs.amax(dim=self._axes(inputs.dim()), keepdim=self.keepdims)

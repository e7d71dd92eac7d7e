"""Adaptive pooling 1D/2D/3D: pool to a fixed `output_size` whatever the input size.

Windows are torch's (and Keras's, on every backend): output cell i covers input positions
floor(i * n / out) up to ceil((i + 1) * n / out), so windows may overlap or differ in size.
"""

import torch.nn.functional as F

from keramic.layers.base import Layer
from keramic.layers.conv import from_channels_first, normalize_data_format, normalize_tuple, to_channels_first
from keramic.serialization.registry import keras_export

_ADAPTIVE = {
    ("average", 1): F.adaptive_avg_pool1d,
    ("average", 2): F.adaptive_avg_pool2d,
    ("average", 3): F.adaptive_avg_pool3d,
    ("max", 1): F.adaptive_max_pool1d,
    ("max", 2): F.adaptive_max_pool2d,
    ("max", 3): F.adaptive_max_pool3d,
}


class _AdaptivePooling(Layer):
    """Shared constructor, call and shape of the adaptive pooling layers."""

    rank: int | None = None
    mode: str | None = None
    _records_build_config = True  # as Keras's adaptive pooling layers do

    def __init__(self, output_size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.output_size = normalize_tuple(output_size, self.rank, "output_size")
        self.data_format = normalize_data_format(data_format)

    def call(self, inputs):
        # A contiguous copy, as Keras's torch backend pools: the output's memory layout (which an
        # unseeded dropout's mask follows) is then Keras's.
        x = to_channels_first(inputs, self.data_format).contiguous()
        outputs = _ADAPTIVE[self.mode, self.rank](x, self.output_size)
        return from_channels_first(outputs, self.data_format)

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_last":
            return (input_shape[0],) + self.output_size + (input_shape[-1],)
        return (input_shape[0], input_shape[1]) + self.output_size

    def get_config(self):
        config = super().get_config()
        config.update({"output_size": self.output_size, "data_format": self.data_format})
        return config


@keras_export("keras.layers")
class AdaptiveAveragePooling1D(_AdaptivePooling):
    """Mean over adaptive windows so the steps axis becomes `output_size` long.

    >>> AdaptiveAveragePooling1D(4)(np.zeros((2, 10, 3), "float32")).shape
    torch.Size([2, 4, 3])
    """

    rank, mode = 1, "average"


@keras_export("keras.layers")
class AdaptiveAveragePooling2D(_AdaptivePooling):
    """Mean over adaptive windows so the image becomes `output_size` (height, width).

    >>> AdaptiveAveragePooling2D((2, 3))(np.zeros((2, 7, 9, 3), "float32")).shape
    torch.Size([2, 2, 3, 3])
    """

    rank, mode = 2, "average"


@keras_export("keras.layers")
class AdaptiveAveragePooling3D(_AdaptivePooling):
    """Mean over adaptive windows so the volume becomes `output_size` (depth, height, width).

    >>> AdaptiveAveragePooling3D(2)(np.zeros((1, 5, 5, 5, 3), "float32")).shape
    torch.Size([1, 2, 2, 2, 3])
    """

    rank, mode = 3, "average"


@keras_export("keras.layers")
class AdaptiveMaxPooling1D(_AdaptivePooling):
    """Max over adaptive windows so the steps axis becomes `output_size` long.

    >>> AdaptiveMaxPooling1D(4)(np.zeros((2, 10, 3), "float32")).shape
    torch.Size([2, 4, 3])
    """

    rank, mode = 1, "max"


@keras_export("keras.layers")
class AdaptiveMaxPooling2D(_AdaptivePooling):
    """Max over adaptive windows so the image becomes `output_size` (height, width).

    >>> AdaptiveMaxPooling2D((2, 3))(np.zeros((2, 7, 9, 3), "float32")).shape
    torch.Size([2, 2, 3, 3])
    """

    rank, mode = 2, "max"


@keras_export("keras.layers")
class AdaptiveMaxPooling3D(_AdaptivePooling):
    """Max over adaptive windows so the volume becomes `output_size` (depth, height, width).

    >>> AdaptiveMaxPooling3D(2)(np.zeros((1, 5, 5, 5, 3), "float32")).shape
    torch.Size([1, 2, 2, 2, 3])
    """

    rank, mode = 3, "max"

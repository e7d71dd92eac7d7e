"""Spatial reshaping layers: UpSampling2D and ZeroPadding2D."""

import torch.nn.functional as F

from keramic.layers.base import Layer
from keramic.layers.conv import from_channels_first, normalize_data_format, normalize_tuple, to_channels_first
from keramic.serialization.registry import keras_export


@keras_export("keras.layers")
class UpSampling2D(Layer):
    """Repeats rows and columns `size` times ("nearest") or resizes bilinearly (half-pixel centres).

    >>> UpSampling2D((2, 3))(np.zeros((1, 2, 2, 4), "float32")).shape
    torch.Size([1, 4, 6, 4])
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format)
        self.size = normalize_tuple(size, 2, "size")
        self.interpolation = interpolation.lower()
        if self.interpolation not in ("nearest", "bilinear"):
            raise NotImplementedError(
                f"UpSampling2D supports interpolation 'nearest' and 'bilinear'; received {interpolation!r}."
            )

    def build(self, input_shape):
        """No weights; defined so the config records a `build_config`, as Keras's UpSampling2D does."""

    def call(self, inputs):
        height_factor, width_factor = self.size
        if self.interpolation == "nearest":
            # One copy: broadcast each pixel over a (height_factor, width_factor) block.
            if self.data_format == "channels_last":
                n, h, w, c = inputs.shape
                blocks = inputs[:, :, None, :, None, :].expand(n, h, height_factor, w, width_factor, c)
                return blocks.reshape(n, h * height_factor, w * width_factor, c)
            n, c, h, w = inputs.shape
            blocks = inputs[:, :, :, None, :, None].expand(n, c, h, height_factor, w, width_factor)
            return blocks.reshape(n, c, h * height_factor, w * width_factor)
        x = to_channels_first(inputs, self.data_format)
        size = (x.shape[2] * height_factor, x.shape[3] * width_factor)
        outputs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return from_channels_first(outputs, self.data_format)

    def compute_output_shape(self, input_shape):
        first = 2 if self.data_format == "channels_first" else 1
        shape = list(input_shape)
        for i, factor in enumerate(self.size):
            if shape[first + i] is not None:
                shape[first + i] *= factor
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "data_format": self.data_format, "interpolation": self.interpolation})
        return config


@keras_export("keras.layers")
class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros: `padding` is an int, (rows, cols) or ((top, bottom), (left, right)).

    >>> ZeroPadding2D(((1, 0), (2, 1)))(np.zeros((1, 3, 3, 2), "float32")).shape
    torch.Size([1, 4, 6, 2])
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format)
        if isinstance(padding, int):
            self.padding = ((padding, padding), (padding, padding))
        elif hasattr(padding, "__len__") and len(padding) == 2:
            self.padding = (
                normalize_tuple(padding[0], 2, "1st entry of padding", allow_zero=True),
                normalize_tuple(padding[1], 2, "2nd entry of padding", allow_zero=True),
            )
        else:
            raise ValueError(
                "`padding` should be either an int, a tuple of 2 ints (symmetric_height_pad, symmetric_width_pad), "
                "or a tuple of 2 tuples of 2 ints ((top_pad, bottom_pad), (left_pad, right_pad)). "
                f"Received: padding={padding}."
            )

    def build(self, input_shape):
        """No weights; defined so the config records a `build_config`, as Keras's ZeroPadding2D does."""

    def call(self, inputs):
        (top, bottom), (left, right) = self.padding
        if self.data_format == "channels_first":
            return F.pad(inputs, (left, right, top, bottom))
        return F.pad(inputs, (0, 0, left, right, top, bottom))

    def compute_output_shape(self, input_shape):
        first = 2 if self.data_format == "channels_first" else 1
        shape = list(input_shape)
        for i, (before, after) in enumerate(self.padding):
            if shape[first + i] is not None:
                shape[first + i] += before + after
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "data_format": self.data_format})
        return config

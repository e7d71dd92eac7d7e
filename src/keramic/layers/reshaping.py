"""Spatial reshaping layers, 1D/2D/3D: Cropping, ZeroPadding and UpSampling.

Each works on the spatial axes only: (batch, steps..., channels) for channels_last,
(batch, channels, steps...) for channels_first. All three record a build_config, as Keras's do.
"""

import torch.nn.functional as F

from keramic.layers.base import Layer
from keramic.layers.conv import from_channels_first, normalize_data_format, normalize_tuple, to_channels_first
from keramic.layers.input_spec import InputSpec
from keramic.serialization.registry import keras_export

_UPSAMPLING_2D_MODES = ("nearest", "bilinear", "bicubic")


def normalize_pairs(value, rank, name):
    """An int, `rank` ints, or `rank` (before, after) pairs -> `rank` (before, after) pairs."""
    if isinstance(value, int):
        return ((value, value),) * rank
    if hasattr(value, "__len__") and len(value) == rank:
        ordinals = ("1st", "2nd", "3rd")
        return tuple(
            (entry, entry) if isinstance(entry, int)
            else normalize_tuple(entry, 2, f"{ordinals[i]} entry of {name}", allow_zero=True)
            for i, entry in enumerate(value)
        )
    raise ValueError(
        f"`{name}` should be an int, a tuple of {rank} ints, or a tuple of {rank} tuples of 2 ints "
        f"(before, after) for each spatial axis. Received: {name}={value}."
    )


def _spatial_start(data_format):
    return 2 if data_format == "channels_first" else 1


class _Cropping(Layer):
    """Removes `cropping` positions before and after along each spatial axis."""

    rank: int | None = None
    _records_build_config = True

    def __init__(self, cropping, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        self.data_format = normalize_data_format(data_format)
        self.cropping = normalize_pairs(cropping, self.rank, "cropping")
        if any(c < 0 for pair in self.cropping for c in pair):
            raise ValueError(f"`cropping` values must be >= 0. Received: cropping={cropping}.")

    def call(self, inputs):
        start = _spatial_start(self.data_format)
        window = [slice(None)] * inputs.dim()
        for i, (before, after) in enumerate(self.cropping):
            length = inputs.shape[start + i]
            if before + after >= length:
                raise ValueError(
                    f"`cropping` {self.cropping} must leave at least one position on every spatial axis; "
                    f"received inputs of shape {tuple(inputs.shape)} (axis {start + i} has {length})."
                )
            window[start + i] = slice(before, length - after)
        return inputs[tuple(window)]

    def compute_output_shape(self, input_shape):
        start = _spatial_start(self.data_format)
        shape = list(input_shape)
        for i, (before, after) in enumerate(self.cropping):
            length = shape[start + i]
            if length is not None:
                if before + after >= length:
                    raise ValueError(
                        f"`cropping` {self.cropping} must be smaller than the spatial axes of input shape "
                        f"{tuple(input_shape)}."
                    )
                shape[start + i] = length - before - after
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"cropping": self.cropping, "data_format": self.data_format})
        return config


@keras_export("keras.layers")
class Cropping1D(_Cropping):
    """Cuts steps off the start and end of (batch, steps, features) sequences.

    >>> Cropping1D((1, 2))(np.zeros((1, 6, 3), "float32")).shape
    torch.Size([1, 3, 3])
    """

    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__((cropping,) if isinstance(cropping, int) else (tuple(cropping),), "channels_last", **kwargs)

    def get_config(self):
        config = super().get_config()
        config["cropping"] = self.cropping[0]
        del config["data_format"]
        return config


@keras_export("keras.layers")
class Cropping2D(_Cropping):
    """Cuts rows and columns off the borders of images.

    >>> Cropping2D(((1, 0), (2, 1)))(np.zeros((1, 5, 6, 2), "float32")).shape
    torch.Size([1, 4, 3, 2])
    """

    rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)


@keras_export("keras.layers")
class Cropping3D(_Cropping):
    """Cuts planes off the borders of volumes.

    >>> Cropping3D(1)(np.zeros((1, 4, 5, 6, 2), "float32")).shape
    torch.Size([1, 2, 3, 4, 2])
    """

    rank = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)


class _ZeroPadding(Layer):
    """Adds `padding` zeros before and after along each spatial axis."""

    rank: int | None = None
    _records_build_config = True

    def __init__(self, padding, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        self.data_format = normalize_data_format(data_format)
        self.padding = normalize_pairs(padding, self.rank, "padding")
        if any(p < 0 for pair in self.padding for p in pair):
            raise ValueError(f"`padding` values must be >= 0. Received: padding={padding}.")

    def call(self, inputs):
        # F.pad lists (before, after) from the last axis backwards.
        flat = [p for pair in reversed(self.padding) for p in pair]
        if self.data_format == "channels_last":
            flat = [0, 0] + flat
        return F.pad(inputs, flat)

    def compute_output_shape(self, input_shape):
        start = _spatial_start(self.data_format)
        shape = list(input_shape)
        for i, (before, after) in enumerate(self.padding):
            if shape[start + i] is not None:
                shape[start + i] += before + after
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "data_format": self.data_format})
        return config


@keras_export("keras.layers")
class ZeroPadding1D(_ZeroPadding):
    """Adds zero steps at the start and end of sequences: `padding` is an int or (before, after).

    >>> ZeroPadding1D((1, 2))(np.zeros((1, 3, 2), "float32")).shape
    torch.Size([1, 6, 2])
    """

    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__((padding,) if isinstance(padding, int) else (tuple(padding),), data_format, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["padding"] = self.padding[0]
        return config


@keras_export("keras.layers")
class ZeroPadding2D(_ZeroPadding):
    """Adds rows and columns of zeros: `padding` is an int, (rows, cols) or ((top, bottom), (left, right)).

    >>> ZeroPadding2D(((1, 0), (2, 1)))(np.zeros((1, 3, 3, 2), "float32")).shape
    torch.Size([1, 4, 6, 2])
    """

    rank = 2

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


@keras_export("keras.layers")
class ZeroPadding3D(_ZeroPadding):
    """Adds planes of zeros around volumes: an int, 3 ints, or 3 (before, after) pairs.

    >>> ZeroPadding3D(1)(np.zeros((1, 2, 3, 4, 2), "float32")).shape
    torch.Size([1, 4, 5, 6, 2])
    """

    rank = 3

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


def _repeat_nearest(x, factors, start):
    """Repeat every position `factors[i]` times along axis `start + i`: one copy, via a broadcast view."""
    index, view, out_shape = [slice(None)] * start, list(x.shape[:start]), list(x.shape[:start])
    for offset, factor in enumerate(factors):
        length = x.shape[start + offset]
        index += [slice(None), None]
        view += [length, factor]
        out_shape.append(length * factor)
    rest = list(x.shape[start + len(factors):])
    return x[tuple(index)].expand(view + rest).reshape(out_shape + rest)


@keras_export("keras.layers")
class UpSampling1D(Layer):
    """Repeats each step `size` times in (batch, steps, features) sequences.

    >>> UpSampling1D(3)(np.zeros((1, 4, 2), "float32")).shape
    torch.Size([1, 12, 2])
    """

    _records_build_config = True

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=3)
        self.size = int(size)
        if self.size <= 0:
            raise ValueError(f"`size` must be a positive integer. Received: size={size}.")

    def call(self, inputs):
        return _repeat_nearest(inputs, (self.size,), 1)

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] * self.size
        return (input_shape[0], steps) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config["size"] = self.size
        return config


class _UpSampling(Layer):
    """Upsampling of the spatial axes by integer factors `size`."""

    rank: int | None = None
    _records_build_config = True

    def __init__(self, size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        self.data_format = normalize_data_format(data_format)
        self.size = normalize_tuple(size, self.rank, "size")

    def call(self, inputs):
        return _repeat_nearest(inputs, self.size, _spatial_start(self.data_format))

    def compute_output_shape(self, input_shape):
        start = _spatial_start(self.data_format)
        shape = list(input_shape)
        for i, factor in enumerate(self.size):
            if shape[start + i] is not None:
                shape[start + i] *= factor
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "data_format": self.data_format})
        return config


@keras_export("keras.layers")
class UpSampling2D(_UpSampling):
    """Repeats rows and columns `size` times ("nearest"), or resizes ("bilinear", "bicubic"; half-pixel centres).

    >>> UpSampling2D((2, 3))(np.zeros((1, 2, 2, 4), "float32")).shape
    torch.Size([1, 4, 6, 4])
    """

    rank = 2

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(size, data_format, **kwargs)
        self.interpolation = str(interpolation).lower()
        if self.interpolation not in _UPSAMPLING_2D_MODES:
            raise ValueError(
                f"UpSampling2D's `interpolation` must be one of {_UPSAMPLING_2D_MODES} (those Keras supports on "
                f"the torch backend). Received: interpolation={interpolation!r}."
            )

    def call(self, inputs):
        if self.interpolation == "nearest":
            return super().call(inputs)
        x = to_channels_first(inputs, self.data_format)
        size = (x.shape[2] * self.size[0], x.shape[3] * self.size[1])
        outputs = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False)
        return from_channels_first(outputs, self.data_format)

    def get_config(self):
        config = super().get_config()
        config["interpolation"] = self.interpolation
        return config


@keras_export("keras.layers")
class UpSampling3D(_UpSampling):
    """Repeats every voxel `size` times along depth, height and width.

    >>> UpSampling3D(2)(np.zeros((1, 2, 2, 2, 3), "float32")).shape
    torch.Size([1, 4, 4, 4, 3])
    """

    rank = 3

    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(size, data_format, **kwargs)

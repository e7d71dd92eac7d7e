"""`keras.ops.image`: resizing, cropping, padding, patches and colour conversions."""

import torch
import torch.nn.functional as F

from keramic import backend
from keramic.ops.convert import to_tensor
from keramic.ops.node import keras_op
from keramic.ops.numpy import _float_input

_t = to_tensor


def _data_format(data_format):
    return data_format or backend.image_data_format()


def _to_nchw(images, data_format):
    x = _t(images)
    unbatched = x.dim() == 3
    if unbatched:
        x = x[None]
    if _data_format(data_format) == "channels_last":
        x = x.permute(0, 3, 1, 2)
    return x, unbatched


def _from_nchw(x, unbatched, data_format):
    if _data_format(data_format) == "channels_last":
        x = x.permute(0, 2, 3, 1)
    return x[0] if unbatched else x


@keras_op
def resize(images, size, interpolation="bilinear", antialias=False, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
           fill_mode="constant", fill_value=0.0, data_format=None):
    x, unbatched = _to_nchw(images, data_format)
    dtype = x.dtype
    x = x if x.is_floating_point() else x.float()
    mode = {"bilinear": "bilinear", "nearest": "nearest-exact", "bicubic": "bicubic", "area": "area"}.get(interpolation)
    if mode is None:
        raise ValueError(f"ops.image.resize: unsupported interpolation {interpolation!r}.")
    kwargs = {} if mode in ("nearest-exact", "area") else {"align_corners": False, "antialias": antialias}
    out = F.interpolate(x, size=tuple(size), mode=mode, **kwargs)
    if not dtype.is_floating_point:
        out = torch.round(out).clamp(torch.iinfo(dtype).min, torch.iinfo(dtype).max).to(dtype)
    return _from_nchw(out, unbatched, data_format)


@keras_op
def rgb_to_grayscale(images, data_format=None):
    x = _float_input(images)
    axis = -1 if _data_format(data_format) == "channels_last" else -3
    weights = torch.tensor([0.2989, 0.5870, 0.1140], dtype=x.dtype, device=x.device)
    shape = [1] * x.dim()
    shape[axis] = 3
    return torch.sum(x * weights.reshape(shape), dim=axis, keepdim=True)


@keras_op
def crop_images(images, top_cropping=None, left_cropping=None, bottom_cropping=None, right_cropping=None,
                target_height=None, target_width=None, data_format=None):
    x, unbatched = _to_nchw(images, data_format)
    height, width = x.shape[-2:]
    top, left = top_cropping or 0, left_cropping or 0
    if target_height is None:
        target_height = height - top - (bottom_cropping or 0)
    if target_width is None:
        target_width = width - left - (right_cropping or 0)
    return _from_nchw(x[..., top:top + target_height, left:left + target_width], unbatched, data_format)


@keras_op
def pad_images(images, top_padding=None, left_padding=None, bottom_padding=None, right_padding=None,
               target_height=None, target_width=None, data_format=None):
    x, unbatched = _to_nchw(images, data_format)
    height, width = x.shape[-2:]
    top, left = top_padding or 0, left_padding or 0
    bottom = bottom_padding if bottom_padding is not None else target_height - height - top
    right = right_padding if right_padding is not None else target_width - width - left
    return _from_nchw(F.pad(x, (left, right, top, bottom)), unbatched, data_format)


@keras_op
def extract_patches(images, size, strides=None, dilation_rate=1, padding="valid", data_format=None):
    x, unbatched = _to_nchw(images, data_format)
    size = (size, size) if isinstance(size, int) else tuple(size)
    strides = size if strides is None else ((strides, strides) if isinstance(strides, int) else tuple(strides))
    if padding == "same":
        from keramic.ops.nn import _pad_same

        x = _pad_same(x, size, strides, (dilation_rate, dilation_rate))
    patches = F.unfold(x, size, dilation=dilation_rate, stride=strides)  # (N, C*kh*kw, L)
    n, c = x.shape[:2]
    out_h = (x.shape[2] - dilation_rate * (size[0] - 1) - 1) // strides[0] + 1
    out_w = (x.shape[3] - dilation_rate * (size[1] - 1) - 1) // strides[1] + 1
    patches = patches.reshape(n, c, size[0] * size[1], out_h, out_w)
    if _data_format(data_format) == "channels_last":
        out = patches.permute(0, 3, 4, 2, 1).reshape(n, out_h, out_w, -1)
    else:
        out = patches.permute(0, 2, 1, 3, 4).reshape(n, -1, out_h, out_w)
    return out[0] if unbatched else out


@keras_op
def rgb_to_hsv(images, data_format=None):
    x = _float_input(images)
    axis = -1 if _data_format(data_format) == "channels_last" else -3
    r, g, b = torch.unbind(x, dim=axis)
    value = torch.maximum(torch.maximum(r, g), b)
    minimum = torch.minimum(torch.minimum(r, g), b)
    delta = value - minimum
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    saturation = torch.where(value > 0, delta / torch.where(value > 0, value, torch.ones_like(value)), torch.zeros_like(value))
    hue = torch.where(value == r, (g - b) / safe, torch.where(value == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = torch.where(delta > 0, torch.remainder(hue / 6.0, 1.0), torch.zeros_like(hue))
    return torch.stack([hue, saturation, value], dim=axis)


@keras_op
def hsv_to_rgb(images, data_format=None):
    x = _float_input(images)
    axis = -1 if _data_format(data_format) == "channels_last" else -3
    h, s, v = torch.unbind(x, dim=axis)
    k = lambda n: torch.remainder(n + h * 6.0, 6.0)  # noqa: E731
    channel = lambda n: v - v * s * torch.clamp(torch.minimum(k(n), 4.0 - k(n)), 0.0, 1.0)  # noqa: E731
    return torch.stack([channel(5.0), channel(3.0), channel(1.0)], dim=axis)




def _fold_indices(index, size, fill_mode):
    """Integer positions -> positions inside [0, size) for the non-constant fill modes."""
    if fill_mode == "nearest":
        return index.clamp(0, size - 1)
    if fill_mode == "wrap":
        return torch.remainder(index, size)
    if fill_mode == "mirror":  # d c b | a b c d | c b a: the edge pixel is not repeated
        if size == 1:
            return torch.zeros_like(index)
        period = 2 * (size - 1)
        index = torch.remainder(index, period)
        return torch.where(index >= size, period - index, index)
    if fill_mode == "reflect":  # c b a | a b c | c b a: the edge pixel is repeated
        period = 2 * size
        index = torch.remainder(index, period)
        return torch.where(index >= size, period - 1 - index, index)
    raise ValueError(f"Unsupported fill_mode {fill_mode!r}; use constant, nearest, wrap, mirror or reflect.")


@keras_op
def map_coordinates(inputs, coordinates, order, fill_mode="constant", fill_value=0):
    """Sample `inputs` at fractional `coordinates` (one row per input axis), nearest (0) or linear (1)."""
    x = _t(inputs)
    coordinates = [_float_input(c) for c in (coordinates if isinstance(coordinates, (list, tuple)) else _t(coordinates))]
    if len(coordinates) != x.dim():
        raise ValueError(f"map_coordinates needs {x.dim()} coordinate arrays for an input of shape {tuple(x.shape)}.")
    if order not in (0, 1):
        raise ValueError(f"map_coordinates supports order 0 or 1; received {order}.")
    corners = []  # per axis: [(integer index, weight), ...]
    for c in coordinates:
        if order == 0:
            corners.append([(torch.round(c).to(torch.int64), torch.ones_like(c))])  # half to even, as Keras
        else:
            low = torch.floor(c)
            frac = c - low
            corners.append([(low.to(torch.int64), 1 - frac), (low.to(torch.int64) + 1, frac)])
    values = x if x.is_floating_point() else x.to(coordinates[0].dtype)
    out = torch.zeros_like(coordinates[0])
    fill = torch.tensor(fill_value, dtype=out.dtype, device=out.device)

    def accumulate(axis, indices, weight, valid):
        nonlocal out
        if axis == x.dim():
            sample = values[tuple(indices)].to(out.dtype)
            out = out + weight * (torch.where(valid, sample, fill) if fill_mode == "constant" else sample)
            return
        size = x.shape[axis]
        for index, corner_weight in corners[axis]:
            inside = (index >= 0) & (index < size)
            folded = index.clamp(0, size - 1) if fill_mode == "constant" else _fold_indices(index, size, fill_mode)
            accumulate(axis + 1, indices + [folded], weight * corner_weight, valid & inside)

    accumulate(0, [], torch.ones_like(out), torch.ones_like(out, dtype=torch.bool))
    return out if x.is_floating_point() else torch.round(out).to(x.dtype)


@keras_op
def affine_transform(images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0, data_format=None):
    """Warp images by transforms [a0, a1, a2, b0, b1, b2, c0, c1]: output (x, y) samples input
    (a0 x + a1 y + a2, b0 x + b1 y + b2)."""
    x, unbatched = _to_nchw(images, data_format)
    transform = _float_input(transform)
    if transform.dim() == 1:
        transform = transform[None]
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"affine_transform supports 'nearest' or 'bilinear'; received {interpolation!r}.")
    n, c, h, w = x.shape
    dtype = transform.dtype
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=x.device), torch.arange(w, dtype=dtype, device=x.device), indexing="ij")
    # Keras 3.15 on torch applies the affine part only; the projective terms c0, c1 are ignored there too.
    a0, a1, a2, b0, b1, b2 = (transform[:, i].reshape(-1, 1, 1) for i in range(6))
    source_x = a0 * xs + a1 * ys + a2
    source_y = b0 * xs + b1 * ys + b2
    order = 0 if interpolation == "nearest" else 1
    outputs = []
    for b in range(n):
        channels = []
        for ch in range(c):
            channels.append(map_coordinates(x[b, ch], [source_y[b % source_y.shape[0]], source_x[b % source_x.shape[0]]],
                                            order, fill_mode, fill_value))
        outputs.append(torch.stack(channels))
    return _from_nchw(torch.stack(outputs).to(x.dtype if x.is_floating_point() else dtype), unbatched, data_format)


__all__ = [n for n, v in list(globals().items()) if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == __name__]

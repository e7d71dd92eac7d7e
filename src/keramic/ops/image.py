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
    # ints, and the half floats that have no antialiasing kernel on the CPU, resize in float32
    x = x if x.dtype in (torch.float32, torch.float64) or (x.is_floating_point() and not antialias) else x.float()
    mode = {"bilinear": "bilinear", "nearest": "nearest-exact", "bicubic": "bicubic", "area": "area"}.get(interpolation)
    if mode is None:
        raise ValueError(f"ops.image.resize: unsupported interpolation {interpolation!r}.")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("ops.image.resize: only one of `crop_to_aspect_ratio` and `pad_to_aspect_ratio` can be True.")
    if crop_to_aspect_ratio:
        x = _center_crop_to_aspect(x, size)
    elif pad_to_aspect_ratio:
        x = _center_pad_to_aspect(x, size, fill_value)
    kwargs = {} if mode in ("nearest-exact", "area") else {"align_corners": False, "antialias": antialias}
    out = F.interpolate(x, size=tuple(size), mode=mode, **kwargs)
    if not dtype.is_floating_point:
        out = torch.round(out).clamp(torch.iinfo(dtype).min, torch.iinfo(dtype).max).to(dtype)
    return _from_nchw(out.to(dtype), unbatched, data_format)


def _center_crop_to_aspect(x, size):
    """The largest centred window of NCHW `x` with the aspect ratio of `size` (sizes truncated as Keras)."""
    height, width = x.shape[-2:]
    target_height, target_width = size
    crop_height = max(min(height, int(width * target_height / target_width)), 1)
    crop_width = max(min(width, int(height * target_width / target_height)), 1)
    top, left = int((height - crop_height) / 2), int((width - crop_width) / 2)
    return x[..., top:top + crop_height, left:left + crop_width]


def _center_pad_to_aspect(x, size, fill_value):
    """NCHW `x` padded with `fill_value` by the same amount on both sides of one axis, towards the
    aspect ratio of `size` (an odd shortfall leaves one row or column out, as Keras)."""
    height, width = x.shape[-2:]
    target_height, target_width = size
    top = int((max(height, int(width * target_height / target_width)) - height) / 2)
    left = int((max(width, int(height * target_width / target_height)) - width) / 2)
    return F.pad(x, (left, left, top, top), value=float(fill_value))


@keras_op
def rgb_to_grayscale(images, data_format=None):
    images = _t(images)
    x = _float_input(images)
    if x.dim() not in (3, 4):
        raise ValueError(
            f"Invalid images rank: expected rank 3 (single image) or rank 4 (batch of images). Received: images.shape={list(x.shape)}"
        )
    axis = -1 if _data_format(data_format) == "channels_last" else -3
    weights = torch.tensor([0.2989, 0.5870, 0.1140], dtype=x.dtype, device=x.device)
    shape = [1] * x.dim()
    shape[axis] = 3
    gray = torch.sum(x * weights.reshape(shape), dim=axis, keepdim=True)
    return gray if images.is_floating_point() else gray.to(images.dtype)  # ints truncate back, as Keras


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
    bottom, right = height - top - target_height, width - left - target_width
    _check_margins("cropping", top=top, left=left, bottom=bottom, right=right)
    return _from_nchw(x[..., top:top + target_height, left:left + target_width], unbatched, data_format)


@keras_op
def pad_images(images, top_padding=None, left_padding=None, bottom_padding=None, right_padding=None,
               target_height=None, target_width=None, data_format=None):
    x, unbatched = _to_nchw(images, data_format)
    height, width = x.shape[-2:]
    top, left = top_padding or 0, left_padding or 0
    bottom = bottom_padding if bottom_padding is not None else target_height - height - top
    right = right_padding if right_padding is not None else target_width - width - left
    _check_margins("padding", top=top, left=left, bottom=bottom, right=right)
    return _from_nchw(F.pad(x, (left, right, top, bottom)), unbatched, data_format)


def _check_margins(kind, **margins):
    """As Keras: a target size that needs a negative crop or pad (a crop larger than the image) is an error."""
    for side, value in margins.items():
        if value < 0:
            raise ValueError(f"{side}_{kind} must be >= 0. Received: {side}_{kind}={value}")


@keras_op
def extract_patches(images, size, strides=None, dilation_rate=1, padding="valid", data_format=None):
    if not isinstance(size, int) and len(size) == 3:  # Keras's one node class serves volumes too
        return _volume_patches(images, tuple(size), strides, dilation_rate, padding, data_format)
    x, unbatched = _to_nchw(images, data_format)
    dtype = x.dtype
    if not (dtype.is_floating_point or dtype.is_complex):  # im2col has no integer kernel; float64 holds them exactly
        x = x.to(torch.float64)
    size = (size, size) if isinstance(size, int) else tuple(size)
    strides = size if strides is None else ((strides, strides) if isinstance(strides, int) else tuple(strides))
    if padding == "same":
        from keramic.ops.nn import _pad_same

        x = _pad_same(x, size, strides, (dilation_rate, dilation_rate))
    patches = F.unfold(x, size, dilation=dilation_rate, stride=strides).to(dtype)  # (N, C*kh*kw, L)
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
    return out.to(x.dtype) if x.is_floating_point() else torch.round(out).to(x.dtype)


@keras_op
def affine_transform(images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0, data_format=None):
    """Warp images by transforms [a0, a1, a2, b0, b1, b2, c0, c1]: output (x, y) samples input
    (a0 x + a1 y + a2, b0 x + b1 y + b2)."""
    x, unbatched = _to_nchw(images, data_format)
    transform = _float_input(transform)
    if transform.dim() == 1:
        transform = transform[None]
    if transform.dim() != 2 or transform.shape[-1] != 8:
        raise ValueError(
            "affine_transform takes transforms of 8 values each ([a0, a1, a2, b0, b1, b2, c0, c1]), as a vector or "
            f"a batch of them. Received: transform.shape={tuple(transform.shape)}"
        )
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
    return _from_nchw(torch.stack(outputs).to(x.dtype), unbatched, data_format)  # int images stay int, as Keras



def _gaussian_1d(size, sigma, dtype, device):
    offsets = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def _depthwise(x, kernel, padding):
    """Filter every channel of an NCHW batch with one 2D kernel."""
    channels = x.shape[1]
    weight = kernel.to(x.dtype)[None, None].expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, padding=padding, groups=channels)


@keras_op
def gaussian_blur(images, kernel_size=(3, 3), sigma=(1.0, 1.0), data_format=None):
    """Blur with a separable Gaussian; as in Keras on torch, the rows of the kernel follow
    (kernel_size[1], sigma[1]), the columns (kernel_size[0], sigma[0]), zero padding of kernel_size[0] // 2."""
    x, unbatched = _to_nchw(images, data_format)
    _check_image_rank(x, unbatched)
    kernel_size, sigma = _pair(kernel_size), _pair(sigma)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    rows = _gaussian_1d(kernel_size[1], float(sigma[1]), dtype, x.device)
    columns = _gaussian_1d(kernel_size[0], float(sigma[0]), dtype, x.device)
    kernel = torch.outer(rows, columns).reshape(kernel_size[0], kernel_size[1])
    return _from_nchw(_depthwise(x, kernel, kernel_size[0] // 2), unbatched, data_format)


def _pair(value):
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    return (value, value) if isinstance(value, (int, float)) else tuple(value)


def _check_image_rank(x, unbatched):
    if x.dim() != 4:
        raise ValueError(f"Invalid images rank: expected rank 3 (single image) or rank 4 (batch of images); got shape {tuple(x.shape)}.")


@keras_op
def sobel_edges(images, data_format=None):
    """Vertical and horizontal Sobel gradients, zero-padded: (..., channels, 2) with [dy, dx] last."""
    x, unbatched = _to_nchw(images, data_format)
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    step = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype, device=x.device)
    dy = _depthwise(x, torch.outer(step, smooth), 1)
    dx = _depthwise(x, torch.outer(smooth, step), 1)
    edges = torch.stack([dy, dx], dim=-1)  # N, C, H, W, 2
    if _data_format(data_format) == "channels_last":
        edges = edges.permute(0, 2, 3, 1, 4)
    return edges[0] if unbatched else edges


@keras_op
def ssim(image1, image2, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03, data_format=None):
    """Structural similarity (Wang et al. 2004) with a Gaussian window over the valid region,
    averaged over positions and channels: one value per image."""
    a, unbatched = _to_nchw(image1, data_format)
    b, _ = _to_nchw(image2, data_format)
    _check_image_rank(a, unbatched)
    original_dtype = a.dtype
    dtype = a.dtype if a.is_floating_point() else torch.float32
    a, b = a.to(dtype), b.to(dtype)
    window = _gaussian_1d(filter_size, float(filter_sigma), dtype, a.device)
    kernel = torch.outer(window, window)

    def mean(x):
        return _depthwise(x, kernel, 0)

    mu_a, mu_b = mean(a), mean(b)
    var_a = mean(a * a) - mu_a * mu_a
    var_b = mean(b * b) - mu_b * mu_b
    covariance = mean(a * b) - mu_a * mu_b
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    index = ((2 * mu_a * mu_b + c1) * (2 * covariance + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
    result = index.mean(dim=(1, 2, 3))
    result = result[0] if unbatched else result
    return result if original_dtype.is_floating_point else result.to(original_dtype)


@keras_op
def extract_patches_3d(volumes, size, strides=None, dilation_rate=1, padding="valid", data_format=None):
    """3D patches, each flattened in (depth, height, width, channel) order (recorded, as in Keras,
    as an `ExtractPatches` node with a 3-element size)."""
    size = (size,) * 3 if isinstance(size, int) else tuple(size)
    if len(size) != 3:
        raise TypeError(f"Invalid `size` argument. Expected an int or a tuple of length 3. Received: size={size}")
    return extract_patches(volumes, size, strides, dilation_rate, padding, data_format)


def _volume_patches(volumes, size, strides, dilation_rate, padding, data_format):
    from keramic.ops.nn import conv

    strides = size if strides is None else ((strides,) * 3 if isinstance(strides, int) else tuple(strides))
    x = _t(volumes)
    unbatched = x.dim() == 4
    if unbatched:
        x = x[None]
    channels_last = _data_format(data_format) == "channels_last"
    channels = x.shape[-1] if channels_last else x.shape[1]
    features = size[0] * size[1] * size[2] * channels
    # An identity kernel: output feature k copies the input element at flattened patch position k.
    kernel = torch.eye(features, dtype=x.dtype, device=x.device).reshape(*size, channels, features)
    patches = conv(x, kernel, strides=strides, padding=padding, data_format=_data_format(data_format), dilation_rate=dilation_rate)
    return patches[0] if unbatched else patches


def _homographies(start_points, end_points, dtype):
    """The 8 projective coefficients mapping each end quadrilateral onto its start one."""
    start, end = start_points.to(torch.float64), end_points.to(torch.float64)
    rows, targets = [], []
    for i in range(4):
        ex, ey = end[:, i, 0], end[:, i, 1]
        sx, sy = start[:, i, 0], start[:, i, 1]
        one, zero = torch.ones_like(ex), torch.zeros_like(ex)
        rows += [torch.stack([ex, ey, one, zero, zero, zero, -sx * ex, -sx * ey], -1),
                 torch.stack([zero, zero, zero, ex, ey, one, -sy * ex, -sy * ey], -1)]
        targets += [sx, sy]
    return torch.linalg.solve(torch.stack(rows, 1), torch.stack(targets, 1)).to(dtype)


@keras_op
def perspective_transform(images, start_points, end_points, interpolation="bilinear", fill_value=0, data_format=None):
    """Warp so that the `start_points` quadrilateral lands on `end_points` (4 (x, y) corners each)."""
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"perspective_transform supports 'nearest' or 'bilinear'; received {interpolation!r}.")
    x, unbatched = _to_nchw(images, data_format)
    _check_image_rank(x, unbatched)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    start, end = _t(start_points).to(dtype), _t(end_points).to(dtype)
    if start.shape != end.shape or start.shape[-2:] != (4, 2) or start.dim() not in (2, 3):
        raise ValueError(f"start_points and end_points must both have shape (4, 2) or (N, 4, 2); got {tuple(start.shape)} and {tuple(end.shape)}.")
    start, end = (start[None], end[None]) if start.dim() == 2 else (start, end)
    coefficients = _homographies(start, end, dtype)
    n, c, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=x.device), torch.arange(w, dtype=dtype, device=x.device), indexing="ij")
    order = 0 if interpolation == "nearest" else 1
    outputs = []
    for index in range(n):
        a0, a1, a2, a3, a4, a5, a6, a7 = coefficients[index % coefficients.shape[0]]
        denominator = a6 * xs + a7 * ys + 1.0
        source_x = (a0 * xs + a1 * ys + a2) / denominator
        source_y = (a3 * xs + a4 * ys + a5) / denominator
        outputs.append(torch.stack([map_coordinates(x[index, ch].to(dtype), [source_y, source_x], order, "constant", fill_value)
                                    for ch in range(c)]))
    out = torch.stack(outputs)
    out = out if x.is_floating_point() else torch.round(out).to(x.dtype)  # int images stay int, as Keras
    return _from_nchw(out, unbatched, data_format)


@keras_op
def elastic_transform(images, alpha=20.0, sigma=5.0, interpolation="bilinear", fill_mode="reflect", fill_value=0.0, seed=None,
                      data_format=None):
    """Displace every pixel by Gaussian-smoothed noise times `alpha` (Simard et al. 2003).

    The two displacement fields are drawn from torch's global generator, in the order Keras on
    torch draws them, so the same `torch.manual_seed` gives Keras's result."""
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"elastic_transform supports 'nearest' or 'bilinear'; received {interpolation!r}.")
    if fill_mode not in ("constant", "nearest", "wrap", "mirror", "reflect"):
        raise ValueError(f"elastic_transform: unsupported fill_mode {fill_mode!r}.")
    x, unbatched = _to_nchw(images, data_format)
    _check_image_rank(x, unbatched)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    alpha, sigma = float(alpha), float(sigma)
    n, c, h, w = x.shape
    size = int(6 * sigma) | 1
    fields = []
    for _ in range(2):
        noise = torch.normal(0.0, 1.0, size=(n, h, w), dtype=dtype, device=x.device) * sigma
        fields.append(gaussian_blur(noise[:, None], (size, size), (sigma, sigma), "channels_first")[:, 0])
    dx, dy = fields
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=x.device), torch.arange(w, dtype=dtype, device=x.device), indexing="ij")
    order = 0 if interpolation == "nearest" else 1
    out = torch.stack([
        torch.stack([map_coordinates(x[index, ch].to(dtype), [ys + alpha * dy[index], xs + alpha * dx[index]], order, fill_mode, fill_value)
                     for ch in range(c)])
        for index in range(n)
    ])
    return _from_nchw(out.to(x.dtype), unbatched, data_format)


_RESAMPLING = {
    "linear": lambda d: torch.clamp(1 - d, min=0),
    "cubic": lambda d: torch.where(d < 1, (1.5 * d - 2.5) * d * d + 1, torch.where(d < 2, ((-0.5 * d + 2.5) * d - 4) * d + 2, 0.0)),
    "lanczos3": lambda d: _lanczos(d, 3.0),
    "lanczos5": lambda d: _lanczos(d, 5.0),
}
_METHOD_ALIASES = {"bilinear": "linear", "trilinear": "linear", "triangle": "linear", "bicubic": "cubic", "tricubic": "cubic"}


def _lanczos(d, radius):
    safe = torch.where(d > 1e-3, d, torch.ones_like(d))
    value = radius * torch.sin(torch.pi * safe) * torch.sin(torch.pi * safe / radius) / (torch.pi**2 * safe**2)
    return torch.where(d > radius, 0.0, torch.where(d > 1e-3, value, 1.0))


def _resampling_weights(input_size, output_size, scale, translation, kernel, antialias, dtype, device):
    """(input_size, output_size) weights: output sample j reads input i with kernel(|i - position_j|)."""
    inverse = 1.0 / scale
    stretch = torch.clamp(inverse, min=1.0) if antialias else torch.ones_like(inverse)
    positions = (torch.arange(output_size, dtype=dtype, device=device) + 0.5 - translation) * inverse - 0.5
    distance = (positions[None, :] - torch.arange(input_size, dtype=dtype, device=device)[:, None]).abs() / stretch
    weights = kernel(distance)
    totals = weights.sum(dim=0, keepdim=True)
    eps = 1000.0 * torch.finfo(torch.float32).eps
    weights = torch.where(totals.abs() > eps, weights / torch.where(totals != 0, totals, torch.ones_like(totals)), 0.0)
    inside = (positions >= -0.5) & (positions <= input_size - 0.5)
    return torch.where(inside[None, :], weights, 0.0)


@keras_op
def scale_and_translate(images, output_shape, scale, translation, spatial_dims, method, antialias=True):
    """Resample `spatial_dims` to `output_shape` with a scale and a translation per dimension, as
    `jax.image.scale_and_translate` defines them (separable kernels, antialiased when shrinking)."""
    method = _METHOD_ALIASES.get(method, method)
    if method not in _RESAMPLING:
        raise ValueError(f"scale_and_translate: unsupported method {method!r}.")
    x = _t(images)
    scale_t, translation_t = _t(scale), _t(translation)
    dtype = torch.promote_types(scale_t.dtype, translation_t.dtype)
    dtype = dtype if dtype.is_floating_point else torch.float32
    scale_t, translation_t = scale_t.to(dtype).reshape(-1), translation_t.to(dtype).reshape(-1)
    rounding = not (x.is_floating_point() or x.is_complex())
    out = x.to(torch.float32) if rounding else x
    for i, dim in enumerate(spatial_dims):
        dim %= x.dim()
        weights = _resampling_weights(x.shape[dim], int(output_shape[dim]), scale_t[i], translation_t[i], _RESAMPLING[method], antialias,
                                      dtype, x.device)
        out = torch.movedim(torch.tensordot(out, weights.to(out.dtype), dims=([dim], [0])), -1, dim)
    if rounding:
        out = torch.clamp(torch.round(out), x.min().item(), x.max().item()).to(x.dtype)
    return out


__all__ = [n for n, v in list(globals().items()) if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == __name__]
